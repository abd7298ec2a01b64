"""HTB (``sch_htb``) over rtnetlink: the root qdisc, its classes, and reading
them back. Bits/s and bytes in, the kernel's bytes/s and psched ticks on the
wire; the layouts beside their attribute numbers (``include/uapi/linux/pkt_sched.h``).

Kernel facts relied on (``net/sched/sch_htb.c``, ``include/net/pkt_sched.h``):

- a rate above 2**32-1 bytes/s goes in ``TCA_HTB_RATE64``/``TCA_HTB_CEIL64`` and
  the 32-bit ``tc_ratespec.rate`` carries ``min(rate, 2**32-1)``
  (``psched_ratecfg_precompute`` takes ``max(conf->rate, rate64)``); the 32-bit
  field must not be 0 (HTB refuses a class with ``!hopt->rate.rate``);
- with ``linklayer = TC_LINKLAYER_ETHERNET`` the kernel needs no rate table
  (``qdisc_get_rtab`` is only used to guess the link layer when it is unset);
- ``buffer``/``cbuffer`` are psched ticks (:data:`vif_qos.kernel.tc.TICKS_PER_S`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from vif_qos.constants import U32_MAX
from vif_qos.kernel import netlink as nl
from vif_qos.kernel.netlink import ENODEV, ENOENT, TC_H_ROOT, Layout, ratespec_layout
from vif_qos.kernel.tc import handle_str, rate_bytes, read_stats, size_to_ticks, ticks_to_size

#: ``TCA_HTB_*`` attribute numbers (pkt_sched.h).
TCA_HTB_PARMS, TCA_HTB_INIT, TCA_HTB_DIRECT_QLEN = 1, 2, 5
TCA_HTB_RATE64, TCA_HTB_CEIL64 = 6, 7

#: ``struct tc_htb_opt`` (``TCA_HTB_PARMS``).
HTB_PARMS = Layout(*ratespec_layout("rate"), *ratespec_layout("ceil"), ("buffer", "I"),
                   ("cbuffer", "I"), ("quantum", "I"), ("level", "I"), ("prio", "I"))
#: ``struct tc_htb_glob`` (``TCA_HTB_INIT``).
HTB_GLOB = Layout(("version", "I"), ("rate2quantum", "I"), ("defcls", "I"),
                  ("debug", "I"), ("direct_pkts", "I"))


# --------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------

def add_qdisc(ipr, index: int, handle: int, default_minor: int, what: str,
              direct_qlen_packets: int = 0) -> None:
    """Add an HTB root qdisc ``handle`` (``major<<16``) with ``default default_minor``.

    Uses NLM_F_EXCL: the kernel itself refuses if a non-default root qdisc exists.
    ``r2q`` 10 and version 3 as tc sets them (tc/q_htb.c).

    ``direct_qlen_packets``: how many frames that find no class (no default class
    yet) may wait to be sent *direct*, unshaped; beyond it they are dropped
    (``net/sched/sch_htb.c: htb_classify`` returns ``HTB_DIRECT``, ``htb_enqueue``
    queues it while ``direct_queue.qlen < direct_qlen``). 0 drops them all.
    """
    options = nl.encode_attrs([
        (TCA_HTB_INIT, HTB_GLOB.pack(version=3, rate2quantum=10, defcls=default_minor)),
        (TCA_HTB_DIRECT_QLEN, nl.u32(int(direct_qlen_packets)))])
    nl.tc_request(ipr, nl.RTM_NEWQDISC, nl.FLAGS_ADD, index=index, handle=handle,
                  parent=TC_H_ROOT, kind="htb", options=options, what=what)


def set_class(ipr, index: int, classid: int, parent: int, *,
              rate_bits_per_s: int, ceil_bits_per_s: int, burst_bytes: int,
              cburst_bytes: int, quantum_bytes: int, mode: str, what: str,
              buffer_ticks: Optional[int] = None,
              cbuffer_ticks: Optional[int] = None) -> None:
    """Add (``mode="add"``) or change (``"change"``) an HTB class.

    Rates in bits/s (sent as bytes/s, 64-bit attributes above 2**32-1 bytes/s);
    burst/cburst in bytes (sent as ticks, rounded up), or given directly as ticks
    (to restore a class exactly as it was read). quantum in bytes, sent as given.
    """
    rate = rate_bytes(rate_bits_per_s, what)
    ceil = rate_bytes(ceil_bits_per_s, what)
    if buffer_ticks is None:
        buffer_ticks = size_to_ticks(burst_bytes, rate, what + " burst")
    if cbuffer_ticks is None:
        cbuffer_ticks = size_to_ticks(cburst_bytes, ceil, what + " cburst")
    parms = HTB_PARMS.pack(**nl.ratespec("rate", rate), **nl.ratespec("ceil", ceil),
                           buffer=buffer_ticks, cbuffer=cbuffer_ticks,
                           quantum=int(quantum_bytes))
    attrs = [(TCA_HTB_PARMS, parms)]
    if rate > U32_MAX:
        attrs.append((TCA_HTB_RATE64, nl.u64(rate)))
    if ceil > U32_MAX:
        attrs.append((TCA_HTB_CEIL64, nl.u64(ceil)))
    flags = nl.FLAGS_ADD if mode == "add" else nl.FLAGS_CHANGE
    nl.tc_request(ipr, nl.RTM_NEWTCLASS, flags, index=index, handle=classid,
                  parent=parent, kind="htb", options=nl.encode_attrs(attrs), what=what)


def change_class(ipr, index: int, classid: int, parent: int, *, rate_bits_per_s: int,
                 ceil_bits_per_s: int, burst_bytes: int, cburst_bytes: int,
                 quantum_bytes: int, what: str) -> None:
    """Change an existing HTB class in place (``htb_change_class`` updates rate,
    ceil, buffers and quantum of the live class; its queue and counters stay).
    ``parent`` must be the class's parent: HTB cannot move a class. Units as
    :func:`set_class`."""
    set_class(ipr, index, classid, parent, rate_bits_per_s=rate_bits_per_s,
              ceil_bits_per_s=ceil_bits_per_s, burst_bytes=burst_bytes,
              cburst_bytes=cburst_bytes, quantum_bytes=quantum_bytes,
              mode="change", what=what)


# --------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------

def qdisc_fields(msg: nl.Message) -> dict:
    """The :class:`~vif_qos.kernel.qdisc.QdiscInfo` fields of an HTB qdisc:
    ``default_minor`` and ``direct_packets`` (``TCA_HTB_INIT``), or none."""
    attrs = msg.nested(nl.TCA_OPTIONS)
    if TCA_HTB_INIT not in attrs:
        return {}
    glob = HTB_GLOB.unpack(attrs[TCA_HTB_INIT])
    return {"default_minor": glob["defcls"], "direct_packets": glob["direct_pkts"]}


@dataclass(frozen=True)
class ClassInfo:
    """An HTB class as read back. Rates in bytes/s, buffers in psched ticks."""

    index: int
    classid: int
    parent: int
    rate_bytes_per_s: int
    ceil_bytes_per_s: int
    buffer_ticks: int
    cbuffer_ticks: int
    quantum_bytes: int
    level: int
    bytes: int = 0
    packets: int = 0
    drops: int = 0

    @property
    def burst_bytes(self) -> int:
        return ticks_to_size(self.buffer_ticks, self.rate_bytes_per_s)

    @property
    def cburst_bytes(self) -> int:
        return ticks_to_size(self.cbuffer_ticks, self.ceil_bytes_per_s)


def _class_info(item: nl.Message, index: int) -> Optional[ClassInfo]:
    if item.type != nl.RTM_NEWTCLASS or item.get("index") != index:
        return None
    if item.attr_str(nl.TCA_KIND) != "htb":
        return None
    attrs = item.nested(nl.TCA_OPTIONS)
    if TCA_HTB_PARMS not in attrs:
        return None
    o = HTB_PARMS.unpack(attrs[TCA_HTB_PARMS])
    st = read_stats(item)
    return ClassInfo(index=index, classid=item.get("handle"), parent=item.get("parent"),
                     rate_bytes_per_s=nl.attr_u64(attrs, TCA_HTB_RATE64) or o["rate_rate"],
                     ceil_bytes_per_s=nl.attr_u64(attrs, TCA_HTB_CEIL64) or o["ceil_rate"],
                     buffer_ticks=o["buffer"], cbuffer_ticks=o["cbuffer"],
                     quantum_bytes=o["quantum"], level=o["level"], bytes=st["bytes"],
                     packets=st["packets"], drops=st["drops"])


def get_class(ipr, index: int, classid: int) -> Optional[ClassInfo]:
    """One HTB class by exact classid, or None when it does not exist.

    A single RTM_GETTCLASS with :data:`~vif_qos.kernel.netlink.FLAGS_GET_ONE`
    (NLM_F_ECHO), not a dump of the netdev's classes.
    """
    reply = nl.tc_request(ipr, nl.RTM_GETTCLASS, nl.FLAGS_GET_ONE, index=index,
                          handle=classid,
                          what=f"class {handle_str(classid)} of ifindex {index}",
                          tolerate={ENOENT: (), ENODEV: ()})
    infos = (_class_info(item, index) for item in reply)
    return next((info for info in infos if info is not None and info.classid == classid),
                None)


def dump_classes(ipr, index: int) -> List[ClassInfo]:
    """Every HTB class of ``index`` with its parameters and counters."""
    reply = nl.tc_request(ipr, nl.RTM_GETTCLASS, nl.FLAGS_DUMP, index=index,
                          what=f"classes of ifindex {index}",
                          tolerate={ENOENT: (), ENODEV: ()})
    infos = (_class_info(item, index) for item in reply)
    return [info for info in infos if info is not None]


def class_backlog(ipr, index: int, classid: int) -> Optional[Tuple[int, int]]:
    """``(packets, bytes)`` queued in HTB class ``classid`` of ``index`` now
    (``TCA_STATS_QUEUE`` of ``htb_dump_class_stats``: the leaf's qdisc), or None
    when the class is gone."""
    reply = nl.tc_request(ipr, nl.RTM_GETTCLASS, nl.FLAGS_GET_ONE, index=index,
                          handle=classid,
                          what=f"class {handle_str(classid)} of ifindex {index}",
                          tolerate={ENOENT: None, ENODEV: None})
    for item in reply or ():
        if (item.type != nl.RTM_NEWTCLASS or item.get("index") != index
                or item.get("handle") != classid):
            continue
        queue = item.nested(nl.TCA_STATS2).get(nl.TCA_STATS_QUEUE)
        if queue and len(queue) >= nl.GNET_STATS_QUEUE.size:
            q = nl.GNET_STATS_QUEUE.unpack(queue)
            return q["qlen"], q["backlog"]
        return 0, 0
    return None
