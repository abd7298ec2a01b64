"""Traffic control (tc) for vif-qos: HTB qdisc and classes, TBF, links, dumps.

The shaping objects in tc's terms (bits/s and bytes in, the kernel's bytes/s
and psched ticks on the wire). Messages are built and read by
:mod:`vif_qos.kernel.netlink` (our own HTB/TBF attribute layouts, because
pyroute2's tc plugins fall short on 64-bit rates); links are read through
pyroute2's ``IPRoute.link``/``get_links``. No ``tc`` subprocess.

Kernel facts relied on (``net/sched/sch_htb.c``, ``sch_tbf.c``, ``sch_api.c``,
``include/net/pkt_sched.h``):

- ``struct tc_ratespec.rate`` is a u32 of bytes/s; above 2**32-1 the full value
  goes in ``TCA_HTB_RATE64``/``TCA_HTB_CEIL64``/``TCA_TBF_RATE64``/
  ``TCA_TBF_PRATE64`` and the 32-bit field carries ``min(rate, 2**32-1)``
  (``psched_ratecfg_precompute`` takes ``max(conf->rate, rate64)``); the 32-bit
  field must not be 0 (HTB refuses a class with ``!hopt->rate.rate``).
- With ``linklayer = TC_LINKLAYER_ETHERNET`` the kernel needs no rate table
  (``qdisc_get_rtab`` is only used to guess the link layer when it is unset).
- HTB ``buffer``/``cbuffer`` and TBF ``buffer``/``mtu`` are in psched ticks of
  64 ns (``PSCHED_SHIFT`` = 6; ``/proc/net/psched`` shows ``000003e8 00000040``:
  1000 ns per us, 64 ns per tick). TBF also takes the bucket sizes in bytes
  (``TCA_TBF_BURST``, ``TCA_TBF_PBURST``) and then ignores the tick fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from vif_qos.constants import U32_MAX
from vif_qos.errors import EnvironmentProblem, KernelError
from vif_qos.kernel import netlink as nl
from vif_qos.kernel.netlink import (  # noqa: F401 - apply.py uses these through tc
    EEXIST, ENODEV, ENOENT, EINVAL, TC_H_ROOT, open_ipr)

#: psched ticks per second: one tick is 64 ns (PSCHED_SHIFT = 6).
TICKS_PER_S = 15_625_000


def handle_str(handle: int) -> str:
    """``0x7a510100`` -> ``"7a51:100"`` (tc's notation, hexadecimal)."""
    return f"{handle >> 16:x}:{handle & 0xFFFF:x}"


# --------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkInfo:
    """One netdev: ``index``, ``name``, ``master`` (ifindex of its bridge or 0),
    ``mtu_bytes`` (IFLA_MTU, 0 when the kernel did not say), ``address`` (its
    MAC, lower case, or None)."""

    index: int
    name: str
    master: int
    kind: Optional[str] = None
    mtu_bytes: int = 0
    address: Optional[str] = None


def _link_info(msg) -> LinkInfo:
    kind = None
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    if linkinfo is not None:
        kind = linkinfo.get_attr("IFLA_INFO_KIND")
    return LinkInfo(index=msg["index"], name=msg.get_attr("IFLA_IFNAME"),
                    master=msg.get_attr("IFLA_MASTER") or 0, kind=kind,
                    mtu_bytes=msg.get_attr("IFLA_MTU") or 0,
                    address=str(msg.get_attr("IFLA_ADDRESS") or "").lower() or None)


def get_link(ipr, name: str) -> Optional[LinkInfo]:
    """The netdev called ``name``, or None when there is none.

    :raises KernelError: any other netlink error, naming the link.
    """
    msgs = nl.call(f"link {name}", lambda: ipr.link("get", ifname=name),
                   {ENODEV: (), ENOENT: ()})
    return next((_link_info(msg) for msg in msgs), None)


def get_link_by_index(ipr, index: int) -> Optional[LinkInfo]:
    """The netdev with ifindex ``index``, or None when there is none.

    :raises KernelError: any other netlink error, naming the ifindex.
    """
    msgs = nl.call(f"link of ifindex {index}", lambda: ipr.link("get", index=index),
                   {ENODEV: (), ENOENT: ()})
    return next((_link_info(msg) for msg in msgs), None)


def bridge_ports(ipr, bridge_index: int) -> List[LinkInfo]:
    """The netdevs whose IFLA_MASTER is ``bridge_index``.

    :raises KernelError: the link dump failed.
    """
    links = nl.call(f"ports of bridge ifindex {bridge_index}", ipr.get_links)
    return [_link_info(m) for m in links
            if (m.get_attr("IFLA_MASTER") or 0) == bridge_index]


# --------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------

def rate_bytes(rate_bits_per_s: int, what: str) -> int:
    """Bits/s -> bytes/s for the kernel (truncating); refuses what rounds to 0."""
    value = int(rate_bits_per_s) // 8
    if value <= 0:
        raise KernelError(f"{what}: rate {rate_bits_per_s} bit/s is below 8 bit/s, "
                          "the kernel's unit is bytes/s")
    return value


def size_to_ticks(size_bytes: int, rate_bytes_per_s: int, what: str) -> int:
    """Bucket size -> psched ticks (64 ns), rounded up so it never shrinks or is 0.

    Mirrors iproute2's ``tc_calc_xmittime`` (tc/tc_core.c) without its truncation
    to whole microseconds. Raises KernelError when it does not fit the kernel's
    u32 (a bucket of more than about 274 s of traffic).
    """
    ticks = -(-int(size_bytes) * TICKS_PER_S // int(rate_bytes_per_s))
    ticks = max(ticks, 1)
    if ticks > U32_MAX:
        raise KernelError(f"{what}: burst of {size_bytes} bytes at {rate_bytes_per_s} "
                          "bytes/s is more than 274 s of traffic; the kernel's "
                          "32-bit tick field cannot hold it")
    return ticks


def ticks_to_size(ticks: int, rate_bytes_per_s: int) -> int:
    """psched ticks -> bytes at ``rate_bytes_per_s`` (rounded down)."""
    return int(ticks) * int(rate_bytes_per_s) // TICKS_PER_S


# --------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------

def add_htb_qdisc(ipr, index: int, handle: int, default_minor: int, what: str,
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
        (nl.TCA_HTB_INIT, nl.HTB_GLOB.pack(version=3, rate2quantum=10,
                                           defcls=default_minor)),
        (nl.TCA_HTB_DIRECT_QLEN, nl.u32(int(direct_qlen_packets)))])
    nl.tc_request(ipr, nl.RTM_NEWQDISC, nl.FLAGS_ADD, index=index, handle=handle,
                  parent=TC_H_ROOT, kind="htb", options=options, what=what)


def set_htb_class(ipr, index: int, classid: int, parent: int, *,
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
    parms = nl.HTB_PARMS.pack(**nl.ratespec("rate", rate), **nl.ratespec("ceil", ceil),
                              buffer=buffer_ticks, cbuffer=cbuffer_ticks,
                              quantum=int(quantum_bytes))
    attrs = [(nl.TCA_HTB_PARMS, parms)]
    if rate > U32_MAX:
        attrs.append((nl.TCA_HTB_RATE64, nl.u64(rate)))
    if ceil > U32_MAX:
        attrs.append((nl.TCA_HTB_CEIL64, nl.u64(ceil)))
    flags = nl.FLAGS_ADD if mode == "add" else nl.FLAGS_CHANGE
    nl.tc_request(ipr, nl.RTM_NEWTCLASS, flags, index=index, handle=classid,
                  parent=parent, kind="htb", options=nl.encode_attrs(attrs), what=what)


def check_tbf(*, rate_bits_per_s: int, limit_bytes: int,
              peak_bits_per_s: Optional[int], minburst_bytes: Optional[int],
              what: str) -> None:
    """Refuse, with a clear KernelError, TBF parameters the kernel would refuse
    with a bare EINVAL or would accept and then drop everything with."""
    rate = rate_bytes(rate_bits_per_s, what)
    if int(limit_bytes) <= 0:
        # net/sched/sch_tbf.c creates no child queue for limit 0: every packet
        # would be dropped.
        raise KernelError(f"{what}: a TBF needs a queue limit above 0 bytes "
                          f"(got {limit_bytes})")
    if peak_bits_per_s and not minburst_bytes:
        # sch_tbf.c refuses a peak bucket of 0 bytes (EINVAL), tc asks for mtu.
        raise KernelError(f"{what}: a peakrate needs a minburst (the peak bucket, "
                          "at least the MTU plus the link header)")
    if peak_bits_per_s and peak_bits_per_s // 8 <= rate:
        raise KernelError(f"{what}: peakrate {peak_bits_per_s} bit/s must be above "
                          f"the rate {rate_bits_per_s} bit/s (net/sched/sch_tbf.c)")


def replace_tbf(ipr, index: int, handle: int, *, rate_bits_per_s: int,
                burst_bytes: int, limit_bytes: int, peak_bits_per_s: Optional[int],
                minburst_bytes: Optional[int], what: str, mode: str = "replace") -> None:
    """Create or replace the root qdisc of ``index`` with a TBF ``handle``.

    rate/peakrate in bits/s, burst/minburst/limit in bytes (``TCA_TBF_BURST``,
    ``TCA_TBF_PBURST`` carry the byte sizes; the tick fields are filled too).
    ``mode="change"``: see :func:`change_tbf`.
    """
    rate = rate_bytes(rate_bits_per_s, what)
    check_tbf(rate_bits_per_s=rate_bits_per_s, limit_bytes=limit_bytes,
              peak_bits_per_s=peak_bits_per_s, minburst_bytes=minburst_bytes,
              what=what)
    parms = nl.ratespec("rate", rate)
    if peak_bits_per_s:
        peak = rate_bytes(peak_bits_per_s, what + " peakrate")
        parms.update(nl.ratespec("peak", peak))
        mtu_ticks = size_to_ticks(minburst_bytes or 0, peak, what + " minburst")
    else:  # no peak bucket: the peak ratespec stays all 0
        peak = 0
        mtu_ticks = 0
    attrs = [(nl.TCA_TBF_PARMS, nl.TBF_PARMS.pack(
        **parms, limit=int(limit_bytes), mtu=mtu_ticks,
        buffer=size_to_ticks(burst_bytes, rate, what + " burst")))]
    if rate > U32_MAX:
        attrs.append((nl.TCA_TBF_RATE64, nl.u64(rate)))
    if peak > U32_MAX:
        attrs.append((nl.TCA_TBF_PRATE64, nl.u64(peak)))
    attrs.append((nl.TCA_TBF_BURST, nl.u32(burst_bytes)))
    if peak:
        attrs.append((nl.TCA_TBF_PBURST, nl.u32(minburst_bytes or 0)))
    flags = nl.FLAGS_CHANGE if mode == "change" else nl.FLAGS_REPLACE
    nl.tc_request(ipr, nl.RTM_NEWQDISC, flags, index=index, handle=handle,
                  parent=TC_H_ROOT, kind="tbf", options=nl.encode_attrs(attrs), what=what)


#: A delete finding the object (or its netdev) gone already: removal is idempotent.
_GONE_IS_FALSE = {code: False for code in nl.GONE}


def del_class(ipr, index: int, classid: int, what: str) -> bool:
    """Delete one class by exact classid; False when it (or the netdev) is gone.

    :raises KernelError: any other refusal.
    """
    return nl.tc_request(ipr, nl.RTM_DELTCLASS, nl.FLAGS_DEL, index=index,
                         handle=classid, what=what, tolerate=_GONE_IS_FALSE) is not False


def del_root_qdisc(ipr, index: int, handle: int, what: str) -> bool:
    """Delete the root qdisc ``handle`` of ``index``; False when already gone.

    :raises KernelError: any other refusal.
    """
    return nl.tc_request(ipr, nl.RTM_DELQDISC, nl.FLAGS_DEL, index=index, handle=handle,
                         parent=TC_H_ROOT, what=what, tolerate=_GONE_IS_FALSE) is not False


# --------------------------------------------------------------------------
# Leaf qdiscs (the queue under an HTB leaf class)
# --------------------------------------------------------------------------

#: ``TCA_FQ_CODEL_*`` attribute numbers (include/uapi/linux/pkt_sched.h).
TCA_FQ_CODEL_TARGET, TCA_FQ_CODEL_LIMIT, TCA_FQ_CODEL_INTERVAL = 1, 2, 3
TCA_FQ_CODEL_FLOWS, TCA_FQ_CODEL_QUANTUM = 5, 6


#: codel keeps times in units of 2**CODEL_SHIFT ns (include/net/codel.h: CODEL_SHIFT
#: 10, ``us_to_codel``, ``codel_time_to_us``); fq_codel dumps them converted back.
CODEL_SHIFT = 10


def codel_us_as_dumped(us: int) -> int:
    """The microseconds fq_codel dumps for a target or interval set to ``us``: it
    stores ``us * 1000 >> CODEL_SHIFT`` and dumps ``stored << CODEL_SHIFT // 1000``,
    so 20000 comes back as 19999 (sch_fq_codel.c ``fq_codel_change`` and
    ``fq_codel_dump``). Pure; ``us`` >= 0."""
    return ((int(us) * 1000) >> CODEL_SHIFT << CODEL_SHIFT) // 1000


def leaf_qdisc_options(kind: str, *, limit_bytes: int = 0, target_us: int = 0,
                       interval_us: int = 0, quantum_bytes: int = 0) -> bytes:
    """The ``TCA_OPTIONS`` payload of a leaf qdisc. Pure.

    ``bfifo``: ``struct tc_fifo_qopt { __u32 limit; }`` in bytes
    (include/uapi/linux/pkt_sched.h). ``fq_codel``: nested ``TCA_FQ_CODEL_TARGET``
    and ``TCA_FQ_CODEL_INTERVAL`` in microseconds, ``TCA_FQ_CODEL_QUANTUM`` in bytes
    (sch_fq_codel.c ``fq_codel_change``); ``limit_bytes`` is not sent (fq_codel's
    limit is in packets and its memory_limit in truesize: kernel defaults kept).

    :raises KernelError: another kind, or a bfifo limit outside 1..2**32-1.
    """
    if kind == "bfifo":
        if not 0 < int(limit_bytes) <= U32_MAX:
            raise KernelError(f"bfifo limit {limit_bytes} bytes is outside 1..{U32_MAX}")
        return nl.u32(int(limit_bytes))
    if kind == "fq_codel":
        return nl.encode_attrs([(TCA_FQ_CODEL_TARGET, nl.u32(int(target_us))),
                                (TCA_FQ_CODEL_INTERVAL, nl.u32(int(interval_us))),
                                (TCA_FQ_CODEL_QUANTUM, nl.u32(int(quantum_bytes)))])
    raise KernelError(f"leaf qdisc kind {kind!r}: vif-qos makes bfifo or fq_codel")


def leaf_qdisc_msg(index: int, parent: int, kind: str, **params: int) -> bytes:
    """The whole RTM_NEWQDISC message (header, ``struct tcmsg``, TCA_KIND,
    TCA_OPTIONS) that :func:`replace_leaf_qdisc` sends, sequence 0. Pure.

    The handle is 0: the kernel picks a free one (``qdisc_alloc_handle``,
    net/sched/sch_api.c); the qdisc is found again by its parent. ``params``: see
    :func:`leaf_qdisc_options`.
    """
    fixed = nl.TCMSG.pack(family=0, pad1=0, pad2=0, index=index, handle=0,
                          parent=parent, info=0)
    return nl.encode_message(nl.RTM_NEWQDISC, nl.FLAGS_REPLACE, 0, fixed, [
        (nl.TCA_KIND, nl.asciiz(kind)),
        (nl.TCA_OPTIONS, leaf_qdisc_options(kind, **params))])


def replace_leaf_qdisc(ipr, index: int, parent: int, kind: str, what: str,
                       **params: int) -> None:
    """Create the leaf qdisc under HTB class ``parent``, replacing the one there
    (the class's default pfifo, or ours): NLM_F_CREATE | NLM_F_REPLACE. Deleting
    the class deletes it too (sch_htb.c ``htb_destroy_class``). ``params``: see
    :func:`leaf_qdisc_options`.

    :raises KernelError: the kernel refused (ENOENT "Specified qdisc kind is
        unknown" when it has no such kind).
    """
    nl.tc_request(ipr, nl.RTM_NEWQDISC, nl.FLAGS_REPLACE, index=index, handle=0,
                  parent=parent, kind=kind, options=leaf_qdisc_options(kind, **params),
                  what=what)


def del_leaf_qdisc(ipr, index: int, parent: int, what: str) -> bool:
    """Delete the qdisc under class ``parent`` (the class gets its built-in
    pfifo back, sch_htb.c ``htb_graft``); False when none or gone."""
    for item in dump_qdiscs(ipr, index):
        if item.parent == parent:
            return nl.tc_request(ipr, nl.RTM_DELQDISC, nl.FLAGS_DEL, index=index,
                                 handle=item.handle, parent=parent, what=what,
                                 tolerate=_GONE_IS_FALSE) is not False
    return False


def kernel_has_fq_codel(ipr, lo_index: int) -> Optional[bool]:
    """Whether the kernel knows the fq_codel qdisc, asked without creating one.

    Sends an fq_codel root qdisc for netdev ``lo_index`` with
    ``TCA_FQ_CODEL_FLOWS`` 0, which ``fq_codel_change`` refuses (EINVAL, "flows
    must be 1..65536") after the kind was found; an unknown kind fails earlier
    with ENOENT (sch_api.c ``qdisc_create``, after trying to load the module).
    Nothing is created either way. ``None`` when the answer says neither
    (another root qdisc holds the place: EEXIST).
    """
    answer = nl.tc_request(ipr, nl.RTM_NEWQDISC, nl.FLAGS_ADD, index=lo_index,
                           parent=TC_H_ROOT, kind="fq_codel",
                           options=nl.encode_attrs([(TCA_FQ_CODEL_FLOWS, nl.u32(0))]),
                           what=f"fq_codel probe on ifindex {lo_index}",
                           tolerate={EINVAL: True, ENOENT: False, EEXIST: None})
    return answer if isinstance(answer, bool) or answer is None else None


# --------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------

def _stats(msg: nl.Message) -> Dict[str, int]:
    """bytes, packets, drops, overlimits from ``TCA_STATS2`` (0 when absent)."""
    out = {"bytes": 0, "packets": 0, "drops": 0, "overlimits": 0}
    stats = msg.nested(nl.TCA_STATS2)
    basic = stats.get(nl.TCA_STATS_BASIC)
    if basic and len(basic) >= nl.GNET_STATS_BASIC.size:
        out.update(nl.GNET_STATS_BASIC.unpack(basic))
    packets64 = nl.attr_u64(stats, nl.TCA_STATS_PKT64)
    if packets64 is not None:
        out["packets"] = packets64
    queue = stats.get(nl.TCA_STATS_QUEUE)
    if queue and len(queue) >= nl.GNET_STATS_QUEUE.size:
        q = nl.GNET_STATS_QUEUE.unpack(queue)
        out["drops"], out["overlimits"] = q["drops"], q["overlimits"]
    return out


@dataclass(frozen=True)
class QdiscInfo:
    """A qdisc as read back. Rates in bytes/s as the kernel holds them."""

    index: int
    kind: str
    handle: int
    parent: int
    # HTB
    default_minor: Optional[int] = None
    direct_packets: Optional[int] = None
    # TBF
    rate_bytes_per_s: Optional[int] = None
    peak_bytes_per_s: Optional[int] = None
    limit_bytes: Optional[int] = None
    buffer_ticks: Optional[int] = None
    mtu_ticks: Optional[int] = None
    # fq_codel
    target_us: Optional[int] = None
    interval_us: Optional[int] = None
    bytes: int = 0
    packets: int = 0
    drops: int = 0


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


def _qdisc_info(msg: nl.Message) -> QdiscInfo:
    kind = msg.attr_str(nl.TCA_KIND) or ""
    extra = {}
    attrs = msg.nested(nl.TCA_OPTIONS)
    if kind == "htb" and nl.TCA_HTB_INIT in attrs:
        glob = nl.HTB_GLOB.unpack(attrs[nl.TCA_HTB_INIT])
        extra = {"default_minor": glob["defcls"], "direct_packets": glob["direct_pkts"]}
    elif kind == "tbf" and nl.TCA_TBF_PARMS in attrs:
        q = nl.TBF_PARMS.unpack(attrs[nl.TCA_TBF_PARMS])
        rate = nl.attr_u64(attrs, nl.TCA_TBF_RATE64) or q["rate_rate"]
        peak = nl.attr_u64(attrs, nl.TCA_TBF_PRATE64) or q["peak_rate"]
        extra = {"rate_bytes_per_s": rate, "peak_bytes_per_s": peak or None,
                 "limit_bytes": q["limit"], "buffer_ticks": q["buffer"],
                 "mtu_ticks": q["mtu"]}
    elif kind == "bfifo":
        raw = msg.attrs.get(nl.TCA_OPTIONS)
        if raw and len(raw) >= 4:
            extra = {"limit_bytes": nl.attr_u32(msg.attrs, nl.TCA_OPTIONS)}
    elif kind == "fq_codel":
        extra = {"target_us": nl.attr_u32(attrs, TCA_FQ_CODEL_TARGET),
                 "interval_us": nl.attr_u32(attrs, TCA_FQ_CODEL_INTERVAL)}
    st = _stats(msg)
    return QdiscInfo(index=msg.get("index"), kind=kind, handle=msg.get("handle"),
                     parent=msg.get("parent"), bytes=st["bytes"],
                     packets=st["packets"], drops=st["drops"], **extra)


def dump_qdiscs(ipr, index: Optional[int] = None) -> List[QdiscInfo]:
    """Every qdisc (of ``index`` when given; the kernel dumps all netdevs, we
    filter), with its parameters and counters.

    :raises KernelError: the dump failed.
    """
    reply = nl.tc_request(ipr, nl.RTM_GETQDISC, nl.FLAGS_DUMP, index=index or 0,
                          what="qdisc dump")
    return [_qdisc_info(item) for item in reply
            if item.type == nl.RTM_NEWQDISC
            and (index is None or item.get("index") == index)]


def get_root_qdisc(ipr, index: int) -> Optional[QdiscInfo]:
    """The root qdisc of ``index``, or None when the kernel shows none (a
    default ``noqueue``) or the netdev is gone. A kernel default (``mq``,
    ``pfifo_fast``, ``fq_codel`` ...) has handle 0.

    One RTM_GETQDISC for ``parent TC_H_ROOT`` (not a dump of every netdev's
    qdiscs), with :data:`~vif_qos.kernel.netlink.FLAGS_GET_ONE`.

    :raises KernelError: any refusal but "gone" or "nothing to show".
    """
    # EINVAL: qdisc_get_notify has nothing it may show (a built-in qdisc).
    reply = nl.tc_request(ipr, nl.RTM_GETQDISC, nl.FLAGS_GET_ONE, index=index,
                          parent=TC_H_ROOT, what=f"root qdisc of ifindex {index}",
                          tolerate={ENOENT: (), ENODEV: (), EINVAL: ()})
    return next((_qdisc_info(item) for item in reply
                 if item.type == nl.RTM_NEWQDISC and item.get("index") == index), None)


def _class_info(item: nl.Message, index: int) -> Optional[ClassInfo]:
    if item.type != nl.RTM_NEWTCLASS or item.get("index") != index:
        return None
    if item.attr_str(nl.TCA_KIND) != "htb":
        return None
    attrs = item.nested(nl.TCA_OPTIONS)
    if nl.TCA_HTB_PARMS not in attrs:
        return None
    o = nl.HTB_PARMS.unpack(attrs[nl.TCA_HTB_PARMS])
    st = _stats(item)
    return ClassInfo(index=index, classid=item.get("handle"), parent=item.get("parent"),
                     rate_bytes_per_s=nl.attr_u64(attrs, nl.TCA_HTB_RATE64) or o["rate_rate"],
                     ceil_bytes_per_s=nl.attr_u64(attrs, nl.TCA_HTB_CEIL64) or o["ceil_rate"],
                     buffer_ticks=o["buffer"], cbuffer_ticks=o["cbuffer"],
                     quantum_bytes=o["quantum"], level=o["level"], bytes=st["bytes"],
                     packets=st["packets"], drops=st["drops"])


def get_class(ipr, index: int, classid: int) -> Optional[ClassInfo]:
    """One HTB class by exact classid, or None when it does not exist.

    A single RTM_GETTCLASS with NLM_F_ECHO (see :func:`get_root_qdisc`).
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


_PROBE_HANDLE = 0x7A5F0000
#: A probe's answers: an unknown kind (ENOENT; EOPNOTSUPP from a module that
#: cannot load), a known one refusing the missing options (EINVAL; EEXIST when
#: the root qdisc of lo is taken already).
_PROBE_ANSWERS = {ENOENT: "missing", nl.EOPNOTSUPP: "missing",
                  EINVAL: "known", EEXIST: "known"}


def probe_qdisc_kinds(kinds) -> List[str]:
    """The qdisc kinds among ``kinds`` the kernel does not know.

    Asks the kernel to create each one as the root qdisc of ``lo`` WITHOUT
    options: a known kind fails in its init with EINVAL (``htb_init`` and
    ``tbf_init`` refuse a missing TCA_OPTIONS), an unknown kind with ENOENT
    ("Specified qdisc kind is unknown", net/sched/sch_api.c). Nothing is created
    either way.

    :raises KernelError: the kernel refused a probe for another reason.
    """
    missing = []
    ipr = open_ipr()
    try:
        lo = get_link(ipr, "lo")
        if lo is None:  # pragma: no cover
            raise EnvironmentProblem("no loopback netdev to probe qdisc kinds on")
        for kind in kinds:
            answer = nl.tc_request(ipr, nl.RTM_NEWQDISC, nl.FLAGS_ADD, index=lo.index,
                                   handle=_PROBE_HANDLE, parent=TC_H_ROOT, kind=kind,
                                   what=f"probe qdisc {kind}", tolerate=_PROBE_ANSWERS)
            if answer == "missing":
                missing.append(kind)
            elif answer != "known":
                # Created after all (a kind that accepts no options): take it away.
                del_root_qdisc(ipr, lo.index, _PROBE_HANDLE, f"probe qdisc {kind}")
    finally:
        ipr.close()
    return missing


# --------------------------------------------------------------------------
# Changing in place, and reading what reload needs
# --------------------------------------------------------------------------

def change_tbf(ipr, index: int, handle: int, *, rate_bits_per_s: int,
               burst_bytes: int, limit_bytes: int, peak_bits_per_s: Optional[int],
               minburst_bytes: Optional[int], what: str) -> None:
    """Change the existing TBF root qdisc ``handle`` of ``index`` in place.

    RTM_NEWQDISC without NLM_F_CREATE: ``tc_modify_qdisc`` finds the root qdisc by
    its handle and calls ``tbf_change`` (net/sched/sch_api.c, sch_tbf.c), which
    swaps the parameters under the qdisc's lock and keeps the queue (its bfifo is
    resized, not replaced, when only the limit changes); the qdisc is never
    deleted, so no frame passes unshaped. Never creates one: the kernel refuses
    (ENOENT/EINVAL) when the TBF is gone. Units as :func:`replace_tbf`.
    """
    replace_tbf(ipr, index, handle, rate_bits_per_s=rate_bits_per_s,
                burst_bytes=burst_bytes, limit_bytes=limit_bytes,
                peak_bits_per_s=peak_bits_per_s, minburst_bytes=minburst_bytes,
                what=what, mode="change")


def change_htb_class(ipr, index: int, classid: int, parent: int, *, rate_bits_per_s: int,
                     ceil_bits_per_s: int, burst_bytes: int, cburst_bytes: int,
                     quantum_bytes: int, what: str) -> None:
    """Change an existing HTB class in place (``htb_change_class`` updates rate,
    ceil, buffers and quantum of the live class; its queue and counters stay).
    ``parent`` must be the class's parent: HTB cannot move a class. Units as
    :func:`set_htb_class`."""
    set_htb_class(ipr, index, classid, parent, rate_bits_per_s=rate_bits_per_s,
                  ceil_bits_per_s=ceil_bits_per_s, burst_bytes=burst_bytes,
                  cburst_bytes=cburst_bytes, quantum_bytes=quantum_bytes,
                  mode="change", what=what)


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


def list_links(ipr) -> List[LinkInfo]:
    """Every netdev of the current network namespace (one dump)."""
    return [_link_info(m) for m in ipr.get_links()]
