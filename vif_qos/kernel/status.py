"""What vif-qos holds, read back from the kernel with its counters: the object
``vif-qos status`` prints (vif_qos/cli/status.py). A reader: takes no lock and
changes nothing, in the calling thread's network namespace.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

from vif_qos.constants import DEFAULT_MINOR
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import qdisc, sched_htb
from vif_qos.kernel import tc as tcadapter
from vif_qos.kernel.leaf import leaf_qdisc_of


def status() -> dict:
    """What vif-qos holds, read back from the kernel, with counters.

    Returns ``{"vifs": [...], "uplinks": [...]}`` (the ``vif-qos status --json``
    object, see README.rst, "What vif-qos puts in the kernel"). Per vif: the nftables entry
    (``classified`` packets/bytes from the vif), its HTB leaf on the uplink
    (rates in bits/s, sent bytes/packets, drops) and the vif's root qdisc (a TBF
    when inbound is shaped). Per uplink: our HTB root qdisc and its
    ``direct_packets`` (must not grow once the tree is built). Takes no
    lock: a reader.

    :raises KernelError, EnvironmentProblem: the kernel could not be read.
    """
    state = nftadapter.read_table(full=True)
    vifs, uplinks = [], {}
    ipr = tcadapter.open_ipr()
    try:
        links: Dict[str, Optional[tcadapter.LinkInfo]] = {}

        def link(name: str) -> Optional[tcadapter.LinkInfo]:
            if name not in links:
                links[name] = tcadapter.get_link(ipr, name)
            return links[name]

        for name in sorted(state.entries):
            e = state.entries[name]
            vifs.append(_vif_status(ipr, e, link))
            up = link(e.uplink) if e.uplink else None
            if e.classid is not None and up is not None and e.uplink not in uplinks:
                uplinks[e.uplink] = _uplink_status(ipr, up)
    finally:
        ipr.close()
    return {"vifs": vifs, "uplinks": [uplinks[k] for k in sorted(uplinks)]}


def _vif_status(ipr, e: nftadapter.Entry,
                link: Callable[[str], Optional[tcadapter.LinkInfo]]) -> dict:
    """One vif's item: its entry, its TBF (``inbound``) and its HTB leaf
    (``outbound``) as read back, None where the kernel holds none."""
    vif_link = link(e.vif)
    item = {"vif": e.vif, "bridge": e.bridge, "uplink": e.uplink,
            "classid": tcadapter.handle_str(e.classid) if e.classid is not None else None,
            "mark": f"{e.mark:#x}" if e.mark is not None else None,
            "netdev_present": vif_link is not None,
            "classified": {"packets": e.packets, "bytes": e.bytes},
            "inbound": None, "outbound": None}
    if e.inbound and vif_link is not None:
        q = qdisc.get_root_qdisc(ipr, vif_link.index)
        if q is not None:
            item["inbound"] = {
                "qdisc": f"{q.kind} {tcadapter.handle_str(q.handle)}",
                "rate_bits_per_s": (q.rate_bytes_per_s or 0) * 8 or None,
                "sent_bytes": q.bytes, "sent_packets": q.packets,
                "drops": q.drops}
    up = link(e.uplink) if e.uplink else None
    if e.classid is not None and up is not None:
        c = sched_htb.get_class(ipr, up.index, e.classid)
        if c is not None:
            item["outbound"] = {
                "class": tcadapter.handle_str(c.classid),
                "parent": tcadapter.handle_str(c.parent),
                "rate_bits_per_s": c.rate_bytes_per_s * 8,
                "ceil_bits_per_s": c.ceil_bytes_per_s * 8,
                "sent_bytes": c.bytes, "sent_packets": c.packets,
                "drops": c.drops,
                "leaf_qdisc": _leaf_status(ipr, up.index, c)}
    return item


def _uplink_status(ipr, up: tcadapter.LinkInfo) -> dict:
    """One uplink's item: its root qdisc, ``direct_packets`` and the leaf qdisc of
    its default class."""
    q = qdisc.get_root_qdisc(ipr, up.index)
    default = None
    if q is not None and q.kind == "htb":
        default = sched_htb.get_class(ipr, up.index, q.handle | DEFAULT_MINOR)
    return {"device": up.name,
            "qdisc": f"{q.kind} {tcadapter.handle_str(q.handle)}" if q else None,
            "direct_packets": q.direct_packets if q else None,
            "default_leaf_qdisc": (_leaf_status(ipr, up.index, default)
                                   if default is not None else None)}


def _leaf_status(ipr, index: int, cls: sched_htb.ClassInfo) -> dict:
    """The leaf qdisc under ``cls`` as read back: kind, handle, limit and the time
    it holds at the class's rate; ``source`` says it was read from the kernel."""
    q = leaf_qdisc_of(ipr, index, cls.classid)
    if q is None:
        return {"kind": "pfifo (the kernel's default: no time bound)", "handle": None,
                "limit_bytes": None, "bound_us": None, "source": "kernel default"}
    bound = None
    if q.limit_bytes and cls.rate_bytes_per_s:
        bound = q.limit_bytes * 1_000_000 // cls.rate_bytes_per_s
    return {"kind": q.kind, "handle": tcadapter.handle_str(q.handle),
            "limit_bytes": q.limit_bytes, "bound_us": bound,
            "target_us": q.target_us, "interval_us": q.interval_us,
            "drops": q.drops, "source": "read back from the kernel"}
