"""Traffic control (tc) through pyroute2: HTB qdisc and classes, TBF, links, dumps.

This module is the only place that speaks rtnetlink. It builds its own ``tcmsg``
attribute layouts for HTB and TBF instead of going through ``IPRoute.tc()``,
because the stock pyroute2 plugins fall short on rates above 2**32-1 bytes/s
(0.9.7 fails on a 40 Gbit/s TBF, 0.7.2 has no ``TCA_HTB_RATE64`` at all) and
left ``cburst`` at 0 when none was given. Everything is still sent through
pyroute2's ``IPRoute.nlm_request`` (no ``tc`` subprocess).

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

import importlib
import importlib.util
import socket
import struct
import sys
import types
from dataclasses import dataclass
from typing import Dict, List, Optional

from vif_qos.errors import EnvironmentProblem, KernelError

#: ``TC_H_ROOT`` (include/uapi/linux/pkt_sched.h).
TC_H_ROOT = 0xFFFFFFFF
#: ``TC_LINKLAYER_ETHERNET`` (include/uapi/linux/pkt_sched.h).
TC_LINKLAYER_ETHERNET = 1
#: Largest value of the 32-bit rate fields, in bytes/s.
U32_MAX = 2 ** 32 - 1
#: psched ticks per second: one tick is 64 ns (PSCHED_SHIFT = 6).
TICKS_PER_S = 15_625_000

RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTCLASS, RTM_DELTCLASS, RTM_GETTCLASS = 40, 41, 42
NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO = 1, 4, 8
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400

FLAGS_ADD = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
FLAGS_CHANGE = NLM_F_REQUEST | NLM_F_ACK
FLAGS_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
FLAGS_DEL = NLM_F_REQUEST | NLM_F_ACK

ENOENT, EEXIST, ENODEV, EINVAL = 2, 17, 19, 22


def handle_str(handle: int) -> str:
    """``0x7a510100`` -> ``"7a51:100"`` (tc's notation, hexadecimal)."""
    return f"{handle >> 16:x}:{handle & 0xFFFF:x}"


# --------------------------------------------------------------------------
# Importing pyroute2 narrowly
# --------------------------------------------------------------------------

_MSG_CLASSES: Dict[str, type] = {}
_COMPILED_FLAG = "_nlmsg_base__compiled_nla"


def _import_pyroute2():
    """Import only the parts of pyroute2 we use.

    ``import pyroute2`` runs the package ``__init__``, which imports every
    subsystem (about 120 ms here). When nobody imported pyroute2 yet, we put a
    bare package module in ``sys.modules`` whose ``__getattr__`` runs the real
    ``__init__`` on first use of a top-level name, so other code that does
    ``from pyroute2 import X`` later still works; we import only
    ``pyroute2.iproute.linux`` and ``pyroute2.netlink.rtnl.tcmsg``.
    """
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None:
            raise EnvironmentProblem("pyroute2 is not installed (python3-pyroute2)")
        stub = types.ModuleType("pyroute2")
        stub.__path__ = list(spec.submodule_search_locations or [])
        stub.__spec__ = spec
        stub.__file__ = spec.origin
        stub.__loader__ = spec.loader

        def _full(name, _stub=stub, _spec=spec):
            if name.startswith("__") and name not in ("__version__", "__all__"):
                raise AttributeError(name)
            try:  # a submodule: import just that one
                if importlib.util.find_spec(f"pyroute2.{name}") is not None:
                    return importlib.import_module(f"pyroute2.{name}")
            except ImportError:
                pass
            del _stub.__getattr__
            _spec.loader.exec_module(_stub)
            return getattr(_stub, name)

        stub.__getattr__ = _full
        sys.modules["pyroute2"] = stub
    linux = importlib.import_module("pyroute2.iproute.linux")
    tcmod = importlib.import_module("pyroute2.netlink.rtnl.tcmsg")
    netlink = importlib.import_module("pyroute2.netlink")
    exc = importlib.import_module("pyroute2.netlink.exceptions")
    return linux.IPRoute, tcmod.tcmsg, netlink.nla, exc.NetlinkError


def open_ipr():
    """An ``IPRoute`` socket in the calling thread's current network namespace."""
    IPRoute, _tcmsg, _nla, _err = _import_pyroute2()
    try:
        return IPRoute(ext_ack=True)
    except OSError as err:  # pragma: no cover - no netlink at all
        raise EnvironmentProblem(f"cannot open rtnetlink: {err}") from err


def netlink_error_class():
    return _import_pyroute2()[3]


def _msg_classes() -> Dict[str, type]:
    """tcmsg subclasses carrying our own HTB and TBF option layouts."""
    if _MSG_CLASSES:
        return _MSG_CLASSES
    _IPRoute, tcmsg, nla, _err = _import_pyroute2()

    ratespec = (
        ("cell_log", "B"), ("linklayer", "B"), ("overhead", "H"),
        ("cell_align", "h"), ("mpu", "H"), ("rate", "I"),
    )

    def prefixed(prefix):
        return tuple((f"{prefix}_{name}", fmt) for name, fmt in ratespec)

    class htb_options(nla):
        nla_map = (
            ("TCA_HTB_UNSPEC", "none"),
            ("TCA_HTB_PARMS", "htb_parms"),
            ("TCA_HTB_INIT", "htb_glob"),
            ("TCA_HTB_CTAB", "cdata"),
            ("TCA_HTB_RTAB", "cdata"),
            ("TCA_HTB_DIRECT_QLEN", "uint32"),
            ("TCA_HTB_RATE64", "uint64"),
            ("TCA_HTB_CEIL64", "uint64"),
        )

        class htb_glob(nla):
            fields = (
                ("version", "I"), ("rate2quantum", "I"), ("defcls", "I"),
                ("debug", "I"), ("direct_pkts", "I"),
            )

        class htb_parms(nla):
            fields = prefixed("rate") + prefixed("ceil") + (
                ("buffer", "I"), ("cbuffer", "I"), ("quantum", "I"),
                ("level", "I"), ("prio", "I"),
            )

    class tbf_options(nla):
        nla_map = (
            ("TCA_TBF_UNSPEC", "none"),
            ("TCA_TBF_PARMS", "tbf_parms"),
            ("TCA_TBF_RTAB", "cdata"),
            ("TCA_TBF_PTAB", "cdata"),
            ("TCA_TBF_RATE64", "uint64"),
            ("TCA_TBF_PRATE64", "uint64"),
            ("TCA_TBF_BURST", "uint32"),
            ("TCA_TBF_PBURST", "uint32"),
        )

        class tbf_parms(nla):
            fields = prefixed("rate") + prefixed("peak") + (
                ("limit", "I"), ("buffer", "I"), ("mtu", "I"),
            )

    for cls in (htb_options, htb_options.htb_glob, htb_options.htb_parms,
                tbf_options, tbf_options.tbf_parms):
        setattr(cls, _COMPILED_FLAG, False)

    def msg_class(name, options_class):
        return type(name, (tcmsg,), {
            "nla_map": (
                ("TCA_UNSPEC", "none"),
                ("TCA_KIND", "asciiz"),
                ("TCA_OPTIONS", "our_options"),
            ),
            "our_options": options_class,
            # pyroute2 keeps "this class's nla_map is compiled" and the compiled
            # maps in class attributes (nlmsg_base.__compiled_nla, name-mangled):
            # a subclass inherits them from tcmsg once tcmsg has decoded a
            # message, and would then encode with tcmsg's maps (the stock
            # plugins). Give our classes their own.
            _COMPILED_FLAG: False,
            "_nlmsg_base__t_nla_map": None,
            "_nlmsg_base__r_nla_map": None,
        })

    _MSG_CLASSES["htb"] = msg_class("vif_qos_htb_msg", htb_options)
    _MSG_CLASSES["tbf"] = msg_class("vif_qos_tbf_msg", tbf_options)
    _MSG_CLASSES["plain"] = msg_class("vif_qos_plain_msg", htb_options)
    return _MSG_CLASSES


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def _errno(err) -> Optional[int]:
    code = getattr(err, "code", None)
    if code is None and isinstance(err, OSError):
        code = err.errno
    return code


def kernel_error(what: str, err: Exception) -> KernelError:
    """A KernelError naming the object and the kernel's message."""
    code = _errno(err)
    text = " ".join(str(getattr(err, "args", [None, None])[-1] or err).split())
    if code:
        import os
        text = f"{os.strerror(code)} (errno {code})" + (
            f": {text}" if text and os.strerror(code) not in text else "")
    error = KernelError(f"{what}: the kernel refused: {text}")
    error.errno = code
    return error


def _nlm(ipr, msg, msg_type: int, flags: int):
    """``IPRoute.nlm_request`` as a tuple, on pyroute2 0.7 and 0.9.

    pyroute2 0.9.7's synchronous ``nlm_request`` looks up
    ``status['nlm_generator']``, which its ``IPRoute`` never sets (KeyError);
    we set it to False (return a tuple) first.
    """
    if hasattr(ipr, "asyncore"):
        try:
            ipr.status["nlm_generator"]
        except KeyError:
            ipr.status["nlm_generator"] = False
    return tuple(ipr.nlm_request(msg, msg_type=msg_type, msg_flags=flags))


def _request(ipr, msg, msg_type: int, flags: int, what: str):
    try:
        return _nlm(ipr, msg, msg_type, flags)
    except Exception as err:
        if _errno(err) is None:
            raise
        raise kernel_error(what, err) from err


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
    """The netdev called ``name``, or None when there is none (netlink only)."""
    try:
        msgs = ipr.link("get", ifname=name)
    except Exception as err:
        if _errno(err) in (ENODEV, ENOENT):
            return None
        if _errno(err) is None:
            raise
        raise kernel_error(f"link {name}", err) from err
    for msg in msgs:
        return _link_info(msg)
    return None


def get_link_by_index(ipr, index: int) -> Optional[LinkInfo]:
    try:
        msgs = ipr.link("get", index=index)
    except Exception as err:
        if _errno(err) in (ENODEV, ENOENT):
            return None
        raise
    for msg in msgs:
        return _link_info(msg)
    return None


def bridge_ports(ipr, bridge_index: int) -> List[LinkInfo]:
    """The netdevs whose IFLA_MASTER is ``bridge_index``."""
    return [_link_info(m) for m in ipr.get_links()
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


def _ratespec(prefix: str, rate_bytes_per_s: int) -> dict:
    return {
        f"{prefix}_cell_log": 0, f"{prefix}_linklayer": TC_LINKLAYER_ETHERNET,
        f"{prefix}_overhead": 0, f"{prefix}_cell_align": 0, f"{prefix}_mpu": 0,
        f"{prefix}_rate": min(rate_bytes_per_s, U32_MAX),
    }


# --------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------

def _tcmsg(kind: str, index: int, handle: int, parent: int, options: Optional[dict]):
    cls = _msg_classes()[kind if kind in ("htb", "tbf") else "plain"]
    msg = cls()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["handle"] = handle
    msg["parent"] = parent
    attrs = [["TCA_KIND", kind]] if kind else []
    if options is not None:
        attrs.append(["TCA_OPTIONS", options])
    msg["attrs"] = attrs
    return msg


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
    opts = {"attrs": [["TCA_HTB_INIT", {
        "version": 3, "rate2quantum": 10, "defcls": default_minor,
        "debug": 0, "direct_pkts": 0}],
        ["TCA_HTB_DIRECT_QLEN", int(direct_qlen_packets)]]}
    msg = _tcmsg("htb", index, handle, TC_H_ROOT, opts)
    _request(ipr, msg, RTM_NEWQDISC, FLAGS_ADD, what)


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
    parms = {}
    parms.update(_ratespec("rate", rate))
    parms.update(_ratespec("ceil", ceil))
    parms.update({"buffer": buffer_ticks, "cbuffer": cbuffer_ticks,
                  "quantum": int(quantum_bytes), "level": 0, "prio": 0})
    attrs = [["TCA_HTB_PARMS", parms]]
    if rate > U32_MAX:
        attrs.append(["TCA_HTB_RATE64", rate])
    if ceil > U32_MAX:
        attrs.append(["TCA_HTB_CEIL64", ceil])
    msg = _tcmsg("htb", index, classid, parent, {"attrs": attrs})
    flags = FLAGS_ADD if mode == "add" else FLAGS_CHANGE
    _request(ipr, msg, RTM_NEWTCLASS, flags, what)


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
                minburst_bytes: Optional[int], what: str) -> None:
    """Create or replace the root qdisc of ``index`` with a TBF ``handle``.

    rate/peakrate in bits/s, burst/minburst/limit in bytes (``TCA_TBF_BURST``,
    ``TCA_TBF_PBURST`` carry the byte sizes; the tick fields are filled too).
    """
    rate = rate_bytes(rate_bits_per_s, what)
    check_tbf(rate_bits_per_s=rate_bits_per_s, limit_bytes=limit_bytes,
              peak_bits_per_s=peak_bits_per_s, minburst_bytes=minburst_bytes,
              what=what)
    parms = {}
    parms.update(_ratespec("rate", rate))
    attrs = []
    if peak_bits_per_s:
        peak = rate_bytes(peak_bits_per_s, what + " peakrate")
        parms.update(_ratespec("peak", peak))
        mtu_ticks = size_to_ticks(minburst_bytes or 0, peak, what + " minburst")
    else:
        peak = 0
        parms.update({"peak_cell_log": 0, "peak_linklayer": 0, "peak_overhead": 0,
                      "peak_cell_align": 0, "peak_mpu": 0, "peak_rate": 0})
        mtu_ticks = 0
    parms.update({"limit": int(limit_bytes),
                  "buffer": size_to_ticks(burst_bytes, rate, what + " burst"),
                  "mtu": mtu_ticks})
    attrs.append(["TCA_TBF_PARMS", parms])
    if rate > U32_MAX:
        attrs.append(["TCA_TBF_RATE64", rate])
    if peak > U32_MAX:
        attrs.append(["TCA_TBF_PRATE64", peak])
    attrs.append(["TCA_TBF_BURST", int(burst_bytes)])
    if peak:
        attrs.append(["TCA_TBF_PBURST", int(minburst_bytes or 0)])
    msg = _tcmsg("tbf", index, handle, TC_H_ROOT, {"attrs": attrs})
    _request(ipr, msg, RTM_NEWQDISC, FLAGS_REPLACE, what)


def _delete(ipr, msg, msg_type: int, what: str) -> bool:
    """Send one delete request; False when the object (or its netdev) is gone
    already (ENOENT/ENODEV), so removal is idempotent. Other errors: KernelError."""
    try:
        _nlm(ipr, msg, msg_type, FLAGS_DEL)
    except Exception as err:
        if _errno(err) in (ENOENT, ENODEV):
            return False
        if _errno(err) is None:
            raise
        raise kernel_error(what, err) from err
    return True


def del_class(ipr, index: int, classid: int, what: str) -> bool:
    """Delete one class by exact classid; False when it (or the netdev) is gone."""
    return _delete(ipr, _tcmsg("", index, classid, 0, None), RTM_DELTCLASS, what)


def del_root_qdisc(ipr, index: int, handle: int, what: str) -> bool:
    """Delete the root qdisc ``handle`` of ``index``; False when already gone."""
    return _delete(ipr, _tcmsg("", index, handle, TC_H_ROOT, None), RTM_DELQDISC, what)


# --------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------

_RATESPEC = "BBHhHI"
_HTB_OPT = struct.Struct("=" + _RATESPEC + _RATESPEC + "IIIII")
_HTB_GLOB = struct.Struct("=IIIII")
_TBF_QOPT = struct.Struct("=" + _RATESPEC + _RATESPEC + "III")


def _nlas(data: bytes) -> Dict[int, bytes]:
    """Parse a run of netlink attributes: type -> payload (last one wins)."""
    out: Dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        length, atype = struct.unpack_from("=HH", data, pos)
        if length < 4:
            break
        out[atype & 0x3FFF] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return out


def _raw_attr(msg, name: str) -> Optional[bytes]:
    nla_obj = msg.get_attr(name)
    if nla_obj is None:
        return None
    data = nla_obj.data
    return bytes(data[nla_obj.offset + 4:nla_obj.offset + nla_obj.length])


def _u64(data: Optional[bytes]) -> Optional[int]:
    return struct.unpack("=Q", data[:8])[0] if data else None


def _stats(msg) -> Dict[str, int]:
    raw = _raw_attr(msg, "TCA_STATS2")
    out = {"bytes": 0, "packets": 0, "drops": 0, "overlimits": 0}
    if not raw:
        return out
    attrs = _nlas(raw)
    basic = attrs.get(1)
    if basic and len(basic) >= 12:
        out["bytes"], out["packets"] = struct.unpack_from("=QI", basic)
    pkt64 = attrs.get(8)
    if pkt64:
        out["packets"] = _u64(pkt64)
    queue = attrs.get(3)
    if queue and len(queue) >= 20:
        _qlen, _backlog, drops, _requeues, overlimits = struct.unpack_from("=IIIII", queue)
        out["drops"], out["overlimits"] = drops, overlimits
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


def _qdisc_info(msg) -> QdiscInfo:
    kind = msg.get_attr("TCA_KIND") or ""
    extra = {}
    raw = _raw_attr(msg, "TCA_OPTIONS")
    attrs = _nlas(raw) if raw else {}
    if kind == "htb" and 2 in attrs:
        _v, _r2q, defcls, _dbg, direct = _HTB_GLOB.unpack_from(attrs[2])
        extra = {"default_minor": defcls, "direct_packets": direct}
    elif kind == "tbf" and 1 in attrs:
        q = _TBF_QOPT.unpack_from(attrs[1])
        rate, peak, limit, buffer, mtu = q[5], q[11], q[12], q[13], q[14]
        rate = _u64(attrs.get(4)) or rate
        peak = _u64(attrs.get(5)) or peak
        extra = {"rate_bytes_per_s": rate, "peak_bytes_per_s": peak or None,
                 "limit_bytes": limit, "buffer_ticks": buffer, "mtu_ticks": mtu}
    st = _stats(msg)
    return QdiscInfo(index=msg["index"], kind=kind, handle=msg["handle"],
                     parent=msg["parent"], bytes=st["bytes"],
                     packets=st["packets"], drops=st["drops"], **extra)


def dump_qdiscs(ipr, index: Optional[int] = None) -> List[QdiscInfo]:
    """Every qdisc (of ``index`` when given; the kernel dumps all netdevs, we
    filter), with its parameters and counters."""
    msg = _tcmsg("", index or 0, 0, 0, None)
    try:
        reply = _nlm(ipr, msg, RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP)
    except Exception as err:
        if _errno(err) is None:
            raise
        raise kernel_error("qdisc dump", err) from err
    return [_qdisc_info(item) for item in reply
            if item["header"]["type"] == RTM_NEWQDISC
            and (index is None or item["index"] == index)]


def get_root_qdisc(ipr, index: int) -> Optional[QdiscInfo]:
    """The root qdisc of ``index``, or None when the kernel shows none (a
    default ``noqueue``) or the netdev is gone. A kernel default (``mq``,
    ``pfifo_fast``, ``fq_codel`` ...) has handle 0.

    One RTM_GETQDISC for ``parent TC_H_ROOT`` (not a dump of every netdev's
    qdiscs). ``tc_get_qdisc`` answers through ``rtnetlink_send``, which
    unicasts to the asker only with NLM_F_ECHO (net/sched/sch_api.c); NLM_F_ACK
    makes the kernel end the exchange even when it has nothing to show.
    """
    msg = _tcmsg("", index, 0, TC_H_ROOT, None)
    try:
        reply = _nlm(ipr, msg, RTM_GETQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO)
    except Exception as err:
        # EINVAL: qdisc_get_notify has nothing it may show (a built-in qdisc).
        if _errno(err) in (ENOENT, ENODEV, EINVAL):
            return None
        if _errno(err) is None:
            raise
        raise kernel_error(f"root qdisc of ifindex {index}", err) from err
    for item in reply:
        if item["header"]["type"] == RTM_NEWQDISC and item["index"] == index:
            return _qdisc_info(item)
    return None


def _class_info(item, index: int) -> Optional[ClassInfo]:
    if item["header"]["type"] != RTM_NEWTCLASS or item["index"] != index:
        return None
    if item.get_attr("TCA_KIND") != "htb":
        return None
    raw = _raw_attr(item, "TCA_OPTIONS")
    attrs = _nlas(raw) if raw else {}
    if 1 not in attrs:
        return None
    o = _HTB_OPT.unpack_from(attrs[1])
    rate = _u64(attrs.get(6)) or o[5]
    ceil = _u64(attrs.get(7)) or o[11]
    st = _stats(item)
    return ClassInfo(index=index, classid=item["handle"], parent=item["parent"],
                     rate_bytes_per_s=rate, ceil_bytes_per_s=ceil,
                     buffer_ticks=o[12], cbuffer_ticks=o[13], quantum_bytes=o[14],
                     level=o[15], bytes=st["bytes"], packets=st["packets"],
                     drops=st["drops"])


def get_class(ipr, index: int, classid: int) -> Optional[ClassInfo]:
    """One HTB class by exact classid, or None when it does not exist.

    A single RTM_GETTCLASS with NLM_F_ECHO (see :func:`get_root_qdisc`).
    """
    msg = _tcmsg("", index, classid, 0, None)
    try:
        reply = _nlm(ipr, msg, RTM_GETTCLASS, NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO)
    except Exception as err:
        if _errno(err) in (ENOENT, ENODEV):
            return None
        if _errno(err) is None:
            raise
        raise kernel_error(f"class {handle_str(classid)} of ifindex {index}", err) from err
    for item in reply:
        info = _class_info(item, index)
        if info is not None and info.classid == classid:
            return info
    return None


def dump_classes(ipr, index: int) -> List[ClassInfo]:
    """Every HTB class of ``index`` with its parameters and counters."""
    msg = _tcmsg("", index, 0, 0, None)
    try:
        reply = _nlm(ipr, msg, RTM_GETTCLASS, NLM_F_REQUEST | NLM_F_DUMP)
    except Exception as err:
        if _errno(err) in (ENOENT, ENODEV):
            return []
        if _errno(err) is None:
            raise
        raise kernel_error(f"classes of ifindex {index}", err) from err
    out = []
    for item in reply:
        info = _class_info(item, index)
        if info is not None:
            out.append(info)
    return out


def probe_qdisc_kinds(kinds) -> List[str]:
    """The qdisc kinds among ``kinds`` the kernel does not know.

    Asks the kernel to create each one as the root qdisc of ``lo`` WITHOUT
    options: a known kind fails in its init with EINVAL (``htb_init`` and
    ``tbf_init`` refuse a missing TCA_OPTIONS), an unknown kind with ENOENT
    ("Specified qdisc kind is unknown", net/sched/sch_api.c). Nothing is created
    either way.
    """
    missing = []
    ipr = open_ipr()
    try:
        lo = get_link(ipr, "lo")
        if lo is None:  # pragma: no cover
            raise EnvironmentProblem("no loopback netdev to probe qdisc kinds on")
        for kind in kinds:
            msg = _tcmsg(kind, lo.index, 0x7A5F0000, TC_H_ROOT, None)
            try:
                _nlm(ipr, msg, RTM_NEWQDISC, FLAGS_ADD)
            except Exception as err:
                if _errno(err) in (ENOENT, 95):  # 95: EOPNOTSUPP
                    missing.append(kind)
                elif _errno(err) is None:
                    raise
                continue
            # Created after all (a kind that accepts no options): take it away.
            del_root_qdisc(ipr, lo.index, 0x7A5F0000, f"probe qdisc {kind}")
    finally:
        ipr.close()
    return missing
