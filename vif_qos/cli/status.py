"""``vif-qos status [--json]``: what vif-qos has applied, read back from the kernel.

Everything shown comes from the kernel (the nftables table ``bridge vif_qos``,
the HTB classes on the uplinks, the root qdiscs of the vifs), never from a file:
see :func:`vif_qos.kernel.apply.status` and README.rst ("What vif-qos puts in the kernel").

Text output: one line per vif, then one per uplink (sizes in bytes ``B``,
packets ``p``, rates in bit/s; ``(gone)`` marks a vif whose netdev no longer
exists, left for ``vif-qos cleanup``)::

    VIF     UPLINK  CLASS     OUT RATE/CEIL  OUT QUEUE            OUT SENT   OUT DROP  IN RATE  IN SENT     IN DROP  FROM VIF     MARK
    vif1.0  peth0   7a51:100  10M/20Mbit     bfifo 128kB 102ms  4.3MB 5.4kp  0         30Mbit   834B 10p    0        4.1MB 3.4kp  0x10000
    uplink peth0: root qdisc htb 7a51:0, direct_packets_stat 0, default class queue bfifo 1.3MB 105ms

The three byte counters count different things, and with GSO (a guest's TSO
frames reach dom0 as packets of up to 64 KiB) they disagree:

- OUT SENT (the vif's HTB leaf on the uplink) and IN SENT (the TBF on the vif)
  count what the wire carries and what the rate is enforced on: every GSO
  segment is one packet with its own Ethernet + IP + TCP headers (tc's
  ``qdisc_pkt_len``, net/core/dev.c). Use these for what a guest sent/received.
- FROM VIF (the nftables counter of the guest's entry) counts what the guest
  handed dom0, before segmentation: one packet per GSO packet, from the IP header
  up, headers once, to any destination (dom0 and other guests too). Lower in
  bytes and packets than OUT SENT for the same TCP traffic.

OUT QUEUE is the leaf qdisc under the vif's HTB leaf: its kind, its limit and the
time that limit holds at the class's rate (the outbound latency bound); ``pfifo``
there means the kernel's default queue (a leaf made before vif-qos planned leaf
qdiscs, until the guest's next online).

Exit status 0; 1 when the kernel cannot be read.
"""

from __future__ import annotations

import json


def configure(parser, name) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the status as one JSON object")


def _si(value, unit="") -> str:
    if value is None:
        return "-"
    for factor, prefix in ((10 ** 9, "G"), (10 ** 6, "M"), (10 ** 3, "k")):
        if value >= factor:
            number = value / factor
            text = f"{number:.1f}".rstrip("0").rstrip(".")
            return f"{text}{prefix}{unit}"
    return f"{value}{unit}"


def _queue(leaf) -> str:
    """``bfifo 128kB 102ms``: a leaf qdisc's kind, limit and time bound."""
    if not leaf:
        return "-"
    if not leaf.get("handle"):
        return "pfifo (kernel default)"
    text = leaf["kind"]
    if leaf.get("limit_bytes"):
        text += f" {_si(leaf['limit_bytes'], 'B')}"
    if leaf.get("bound_us"):
        text += f" {leaf['bound_us'] // 1000}ms"
    if leaf.get("target_us"):
        text += f" target {leaf['target_us'] // 1000}ms"
    return text


def render(data: dict) -> str:
    """The text form of :func:`vif_qos.kernel.apply.status`'s object."""
    if not data["vifs"]:
        return "vif-qos: no vif is shaped (table bridge vif_qos is empty or absent)"
    header = ("VIF", "UPLINK", "CLASS", "OUT RATE/CEIL", "OUT QUEUE", "OUT SENT", "OUT DROP",
              "IN RATE", "IN SENT", "IN DROP", "FROM VIF", "MARK")
    rows = [header]
    for v in data["vifs"]:
        out, inb = v["outbound"], v["inbound"]
        name = v["vif"] + ("" if v["netdev_present"] else " (gone)")
        rows.append((
            name, v["uplink"] or "-", v["classid"] or "-",
            f"{_si(out['rate_bits_per_s'])}/{_si(out['ceil_bits_per_s'])}bit" if out else "-",
            _queue(out.get("leaf_qdisc")) if out else "-",
            f"{_si(out['sent_bytes'], 'B')} {_si(out['sent_packets'], 'p')}" if out else "-",
            str(out["drops"]) if out else "-",
            f"{_si(inb['rate_bits_per_s'])}bit" if inb and inb["rate_bits_per_s"] else "-",
            f"{_si(inb['sent_bytes'], 'B')} {_si(inb['sent_packets'], 'p')}" if inb else "-",
            str(inb["drops"]) if inb else "-",
            f"{_si(v['classified']['bytes'], 'B')} {_si(v['classified']['packets'], 'p')}",
            v["mark"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    for u in data["uplinks"]:
        lines.append(f"uplink {u['device']}: root qdisc {u['qdisc'] or 'none'}, "
                     f"direct_packets_stat {u['direct_packets']}, default class queue "
                     f"{_queue(u.get('default_leaf_qdisc'))}")
    return "\n".join(lines)


def run(args) -> int:
    from vif_qos.kernel.apply import status
    data = status()
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render(data))
    return 0
