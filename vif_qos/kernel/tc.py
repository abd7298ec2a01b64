"""Traffic control (tc) for vif-qos: links, and what every qdisc kind shares.

- links: :class:`LinkInfo` read through pyroute2's ``IPRoute.link``/``get_links``
  (:func:`get_link`, :func:`get_link_by_index`, :func:`bridge_ports`,
  :func:`list_links`);
- the shared helpers of the qdisc kinds (:mod:`vif_qos.kernel.sched_htb`,
  :mod:`~vif_qos.kernel.sched_tbf`, :mod:`~vif_qos.kernel.sched_bfifo`,
  :mod:`~vif_qos.kernel.sched_fq_codel`; read back through
  :mod:`vif_qos.kernel.qdisc`): tc's handle notation, bits/s to the kernel's
  bytes/s, bucket sizes to psched ticks, the ``TCA_STATS2`` counters, and the
  deletes by exact handle.

Messages are built and read by :mod:`vif_qos.kernel.netlink`. No ``tc`` subprocess.

Kernel facts relied on (``net/sched/sch_api.c``, ``include/net/pkt_sched.h``):

- ``struct tc_ratespec.rate`` is a u32 of bytes/s (a kind with 64-bit rates
  carries the full value in its own attribute, see its module).
- Bucket sizes travel as psched ticks of 64 ns (``PSCHED_SHIFT`` = 6;
  ``/proc/net/psched`` shows ``000003e8 00000040``: 1000 ns per us, 64 ns per
  tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from vif_qos.constants import U32_MAX
from vif_qos.errors import KernelError
from vif_qos.kernel import netlink as nl
from vif_qos.kernel.netlink import ENODEV, ENOENT, TC_H_ROOT

#: An rtnetlink socket for the functions here and in the ``sched_*`` modules
#: (:func:`vif_qos.kernel.netlink.open_ipr`).
open_ipr = nl.open_ipr

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


def list_links(ipr) -> List[LinkInfo]:
    """Every netdev of the current network namespace (one dump)."""
    return [_link_info(m) for m in ipr.get_links()]


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
# Counters, and deletes by exact handle
# --------------------------------------------------------------------------

def read_stats(msg: nl.Message) -> Dict[str, int]:
    """bytes, packets, drops, overlimits of a qdisc or class from its
    ``TCA_STATS2`` (0 when absent)."""
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


#: A delete finding the object (or its netdev) gone already: removal is idempotent.
GONE_IS_FALSE = {code: False for code in nl.GONE}


def del_class(ipr, index: int, classid: int, what: str) -> bool:
    """Delete one class by exact classid; False when it (or the netdev) is gone.

    :raises KernelError: any other refusal.
    """
    return nl.tc_request(ipr, nl.RTM_DELTCLASS, nl.FLAGS_DEL, index=index,
                         handle=classid, what=what, tolerate=GONE_IS_FALSE) is not False


def del_root_qdisc(ipr, index: int, handle: int, what: str) -> bool:
    """Delete the root qdisc ``handle`` of ``index``; False when already gone.

    :raises KernelError: any other refusal.
    """
    return nl.tc_request(ipr, nl.RTM_DELQDISC, nl.FLAGS_DEL, index=index, handle=handle,
                         parent=TC_H_ROOT, what=what, tolerate=GONE_IS_FALSE) is not False
