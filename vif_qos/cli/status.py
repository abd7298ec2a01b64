"""``vif-qos status [--json]``: what vif-qos has applied, read back from the kernel.

Everything shown comes from the kernel (the nftables table ``bridge vif_qos``,
the HTB classes on the uplinks, the root qdiscs of the vifs), never from a file:
see :func:`vif_qos.kernel.status.status` and README.rst ("What vif-qos puts in the kernel").

Text output: one line per vif, then one per uplink (sizes in bytes ``B``,
packets ``p``, rates in bit/s; ``(gone)`` marks a vif whose netdev no longer
exists, left for ``vif-qos cleanup``; DOMAIN is the guest's name from xenstore,
``-`` when xenstore has none or cannot be read)::

    VIF     DOMAIN  UPLINK  CLASS     OUT RATE/CEIL  OUT QUEUE          OUT SENT      OUT DROP  IN RATE  IN SENT   IN DROP  FROM VIF      MARK
    vif1.0  web1    peth0   7a51:100  10M/20Mbit     bfifo 128kB 102ms  4.3MB 5.4kp  0         30Mbit   834B 10p  0        4.1MB 3.4kp  0x10000
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

Then one line per operator override in force (``vif-qos set``/``assign``: what
the running guests get beyond their own sources)::

    override domain:heavy1: pool=overage (by root at 2026-12-03T12:00:00Z, until 2026-12-03T20:00:00Z: backup)

Exit status 0; 1 when the kernel cannot be read (2: the overrides file is malformed).
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
        # fq_codel dumps 20 ms as 19999 us (1024 ns units): to the nearest ms.
        text += f" target {round(leaf['target_us'] / 1000)}ms"
    return text


def render(data: dict) -> str:
    """The text form of :func:`vif_qos.kernel.status.status`'s object."""
    if not data["vifs"]:
        return "vif-qos: no vif is shaped (table bridge vif_qos is empty or absent)"
    header = ("VIF", "DOMAIN", "UPLINK", "CLASS", "OUT RATE/CEIL", "OUT QUEUE", "OUT SENT",
              "OUT DROP",
              "IN RATE", "IN SENT", "IN DROP", "FROM VIF", "MARK")
    rows = [header]
    for v in data["vifs"]:
        out, inb = v["outbound"], v["inbound"]
        name = v["vif"] + ("" if v["netdev_present"] else " (gone)")
        rows.append((
            name, v.get("domain") or "-", v["uplink"] or "-", v["classid"] or "-",
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


def domain_names(vifs) -> dict:
    """Netdev name -> domain name of those of ``vifs`` (names) xenstore knows, named
    as their ``online`` named them; empty when xenstore cannot be read (status
    still shows the kernel's side)."""
    from vif_qos.errors import VifQosError
    from vif_qos.xen.inventory import running_vifs
    from vif_qos.xen.xenstore import Xenstore
    try:
        found, _skipped = running_vifs(Xenstore(), {name: 0 for name in vifs})
    except VifQosError:
        return {}
    return {rv.facts.vif: rv.facts.domain_name for rv in found if rv.facts.domain_name}


def render_overrides(items) -> str:
    """One line per operator override in force (``vif-qos overrides`` lists all)."""
    return "\n".join(
        f"override {o['target']}: {','.join(f'{k}={v}' for k, v in o['keys'].items())}"
        f" (by {o['set_by'] or '?'} at {o['set_at'] or '?'}, until "
        f"{o['expires'] or 'unset'}{': ' + o['reason'] if o['reason'] else ''})"
        for o in items)


def run(args) -> int:
    from vif_qos.config import overrides
    from vif_qos.kernel.status import status
    data = status()
    names = domain_names([v["vif"] for v in data["vifs"]]) if data["vifs"] else {}
    for v in data["vifs"]:
        v["domain"] = names.get(v["vif"])
    now = overrides.utc_now()
    data["overrides"] = [o.to_json(now) for o in overrides.load().items if o.active(now)]
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render(data))
        if data["overrides"]:
            print(render_overrides(data["overrides"]))
    return 0
