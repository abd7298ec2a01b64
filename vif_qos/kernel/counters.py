"""Traffic counters read from the kernel over rtnetlink, for ``vif-qos record`` and
``vif-qos metrics``. A reader: takes no lock and changes nothing.

- netdevs: ``IFLA_STATS64`` (``struct rtnl_link_stats64``, include/uapi/linux/if_link.h):
  64-bit byte and packet counters per direction, counted by the netdev (``skb->len``:
  link header included, no FCS). One ``RTM_GETLINK`` dump reads every netdev.
- shapers: a qdisc's or class's ``TCA_STATS2``/``TCA_STATS_QUEUE`` (``struct
  gnet_stats_queue``, include/uapi/linux/gen_stats.h): ``drops`` and ``overlimits``,
  32-bit in the kernel (they wrap at 2**32; readers treat a decrease as a restart).

All in the calling thread's current network namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from vif_qos.kernel import qdisc, sched_htb


@dataclass(frozen=True)
class NetdevCounters:
    """One netdev's counters: ``rx_*`` what it received, ``tx_*`` what it sent.

    For a guest's vif in dom0, ``tx`` is toward the guest (the guest's *in*) and
    ``rx`` from the guest (*out*); for an uplink, ``rx`` comes in from the wire.
    """

    name: str
    index: int
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int


@dataclass(frozen=True)
class ShaperCounters:
    """A qdisc's or class's ``drops`` and ``overlimits`` (packets; 32-bit kernel
    counters) and its configured rate in bits/s (TBF rate, HTB rate; None when
    the kind has none) and ceil (HTB only)."""

    drops: int
    overlimits: int
    rate_bits_per_s: Optional[int] = None
    ceil_bits_per_s: Optional[int] = None


def read_netdevs(ipr) -> Dict[str, NetdevCounters]:
    """Every netdev's 64-bit counters, by name (one link dump)."""
    out: Dict[str, NetdevCounters] = {}
    for msg in ipr.get_links():
        name = msg.get_attr("IFLA_IFNAME")
        st = msg.get_attr("IFLA_STATS64")
        if not name or st is None:
            continue
        out[name] = NetdevCounters(name=name, index=msg["index"],
                                   rx_bytes=int(st["rx_bytes"]), tx_bytes=int(st["tx_bytes"]),
                                   rx_packets=int(st["rx_packets"]),
                                   tx_packets=int(st["tx_packets"]))
    return out


def _queue_stats(msg) -> Dict[str, int]:
    stats2 = msg.get_attr("TCA_STATS2")
    queue = stats2.get_attr("TCA_STATS_QUEUE") if stats2 is not None else None
    if queue is not None:
        return {"drops": int(queue["drops"]), "overlimits": int(queue["overlimits"])}
    legacy = msg.get_attr("TCA_STATS") or {}
    return {"drops": int(legacy.get("drop", 0)), "overlimits": int(legacy.get("overlimits", 0))}


#: The parent of a root qdisc (include/uapi/linux/pkt_sched.h: TC_H_ROOT).
TC_H_ROOT = 0xFFFFFFFF


def read_root_qdiscs(ipr) -> Dict[int, ShaperCounters]:
    """The root qdisc of every netdev that has one of its own (a vif's TBF), by
    ifindex (two qdisc dumps: parameters and queue counters)."""
    rates = {q.index: q for q in qdisc.dump_qdiscs(ipr) if q.parent == TC_H_ROOT}
    out: Dict[int, ShaperCounters] = {}
    for msg in ipr.get_qdiscs():
        info = rates.get(msg["index"])
        if info is None or msg["parent"] != TC_H_ROOT or msg["handle"] != info.handle:
            continue
        q = _queue_stats(msg)
        rate = info.rate_bytes_per_s * 8 if info.rate_bytes_per_s else None
        out[msg["index"]] = ShaperCounters(q["drops"], q["overlimits"], rate_bits_per_s=rate)
    return out


def read_classes(ipr, index: int) -> Dict[int, ShaperCounters]:
    """Every HTB class of netdev ``index`` (an uplink's leaves), by classid."""
    info = {c.classid: c for c in sched_htb.dump_classes(ipr, index)}
    out: Dict[int, ShaperCounters] = {}
    for msg in ipr.get_classes(index=index):
        c = info.get(msg["handle"])
        if c is None or msg["index"] != index:
            continue
        q = _queue_stats(msg)
        out[c.classid] = ShaperCounters(q["drops"], q["overlimits"],
                                        rate_bits_per_s=c.rate_bytes_per_s * 8,
                                        ceil_bits_per_s=c.ceil_bytes_per_s * 8)
    return out
