"""rtnetlink for vif-qos: message layouts, one reply decoder, one errno triage.

The one place that knows how tc, link and nfnetlink messages look on the wire:

- :data:`TCMSG`, :data:`GNET_STATS_BASIC`, :data:`GNET_STATS_QUEUE`,
  :data:`IFINFOMSG`, :data:`LINK_STATS64`: the C structures as :class:`Layout`
  objects that both pack (requests) and unpack (replies), with the attribute
  numbers beside them (``include/uapi/linux/rtnetlink.h``, ``pkt_sched.h``,
  ``gen_stats.h``, ``if_link.h``). Each qdisc kind's options are declared the
  same way in its own module (:mod:`vif_qos.kernel.sched_htb`, ``sched_tbf``,
  ``sched_bfifo``, ``sched_fq_codel``, with :func:`ratespec_layout`): we declare
  them ourselves because pyroute2's tc plugins fall short on rates above
  2**32-1 bytes/s (0.9.7 fails on a 40 Gbit/s TBF, 0.7.2 has no
  ``TCA_HTB_RATE64`` at all).
- :func:`decode`: every reply, from pyroute2's socket (:func:`decode_pyroute2`)
  or a plain one (the simulation's counter reads; ``vif-qos serve``'s
  notifications, :func:`decode_all`, nfnetlink's too: :data:`NFGENMSG`), becomes
  a :class:`Message` with its fixed header and its attributes as bytes by number.
- :func:`call`: runs one netlink call, tolerates exactly the errnos the caller
  expects (each mapped to the value to return) and turns every other netlink
  error into a :class:`~vif_qos.errors.KernelError` naming the object (the
  pattern of os-vif's ``_ip_link``).
- :func:`tc_request`: one tc request (``struct tcmsg`` + ``TCA_KIND`` +
  ``TCA_OPTIONS`` as our own bytes) sent through pyroute2's public
  ``IPRoute.nlm_request``, its replies decoded.

Only pyroute2's public API is used: ``IPRoute``, ``nlm_request``, ``link``,
``get_links``, ``get_attr``, the ``nlmsg`` base class and a message's
``data``/``offset``/``length``. No ``tc`` subprocess.
"""

from __future__ import annotations

import errno
import functools
import importlib
import importlib.util
import os
import socket
import struct
import sys
import types
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar

from vif_qos.constants import U32_MAX
from vif_qos.errors import EnvironmentProblem, KernelError

T = TypeVar("T")

# --------------------------------------------------------------------------
# Numbers (include/uapi/linux/netlink.h, rtnetlink.h, pkt_sched.h, gen_stats.h,
# if_link.h, netfilter/nfnetlink.h, netfilter/nf_tables.h, netfilter.h)
# --------------------------------------------------------------------------

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
#: Multicast groups: rtnetlink's tc changes (a bit mask), nfnetlink's nftables group.
RTMGRP_TC = 0x8
NFNLGRP_NFTABLES = 7
NLMSG_ERROR = 2
#: Types below this are netlink's own (noop, error, done, overrun).
NLMSG_MIN_TYPE = 0x10
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTCLASS, RTM_DELTCLASS, RTM_GETTCLASS = 40, 41, 42

NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO = 1, 4, 8
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
FLAGS_ADD = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
FLAGS_CHANGE = NLM_F_REQUEST | NLM_F_ACK
FLAGS_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
FLAGS_DEL = NLM_F_REQUEST | NLM_F_ACK
#: A get of one object answered to the asker: ``tc_get_qdisc``/``tc_ctl_tclass``
#: reply through ``rtnetlink_send``, which unicasts only with NLM_F_ECHO
#: (net/sched/sch_api.c); NLM_F_ACK ends the exchange even when nothing is shown.
FLAGS_GET_ONE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO
FLAGS_DUMP = NLM_F_REQUEST | NLM_F_DUMP

#: ``TC_H_ROOT`` (pkt_sched.h).
TC_H_ROOT = 0xFFFFFFFF
#: ``TC_LINKLAYER_ETHERNET`` (pkt_sched.h).
TC_LINKLAYER_ETHERNET = 1

TCA_KIND, TCA_OPTIONS, TCA_STATS2 = 1, 2, 7
TCA_STATS_BASIC, TCA_STATS_QUEUE, TCA_STATS_PKT64 = 1, 3, 8
IFLA_IFNAME, IFLA_OPERSTATE, IFLA_STATS64 = 3, 16, 23
#: ``IF_OPER_UP`` (RFC 2863, if.h).
IF_OPER_UP = 6
#: nfnetlink: a message's type is ``subsystem << 8 | message``.
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_DELTABLE = 2
NFTA_TABLE_NAME = 1
NFPROTO_BRIDGE = 7

ENOENT, EEXIST, ENODEV, EINVAL = errno.ENOENT, errno.EEXIST, errno.ENODEV, errno.EINVAL
EOPNOTSUPP = errno.EOPNOTSUPP
#: The object or its netdev is not there.
GONE = (ENOENT, ENODEV)


# --------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------

class Layout:
    """A C structure: named fields in ``struct`` notation, native byte order.

    ``pack(**values)`` (a field not given is 0) and ``unpack(data)`` -> dict.
    """

    def __init__(self, *fields: Tuple[str, str]):
        self.names = tuple(name for name, _fmt in fields)
        self.struct = struct.Struct("=" + "".join(fmt for _name, fmt in fields))
        self.size = self.struct.size

    def pack(self, **values: int) -> bytes:
        unknown = set(values) - set(self.names)
        if unknown:
            raise TypeError(f"unknown fields {sorted(unknown)}")
        return self.struct.pack(*(int(values.get(name, 0)) for name in self.names))

    def unpack(self, data: bytes, offset: int = 0) -> Dict[str, int]:
        return dict(zip(self.names, self.struct.unpack_from(data, offset)))


def ratespec_layout(prefix: str) -> Tuple[Tuple[str, str], ...]:
    """``struct tc_ratespec`` (pkt_sched.h) as :class:`Layout` fields, names
    prefixed (a qdisc's options hold one per rate: ``rate_*``, ``ceil_*``)."""
    return tuple((f"{prefix}_{name}", fmt) for name, fmt in (
        ("cell_log", "B"), ("linklayer", "B"), ("overhead", "H"),
        ("cell_align", "h"), ("mpu", "H"), ("rate", "I")))


NLMSGHDR = Layout(("length", "I"), ("type", "H"), ("flags", "H"), ("seq", "I"),
                  ("pid", "I"))
#: ``struct tcmsg`` (rtnetlink.h).
TCMSG = Layout(("family", "B"), ("pad1", "B"), ("pad2", "H"), ("index", "i"),
               ("handle", "I"), ("parent", "I"), ("info", "I"))
#: ``struct ifinfomsg`` (rtnetlink.h).
IFINFOMSG = Layout(("family", "B"), ("pad", "B"), ("type", "H"), ("index", "i"),
                   ("flags", "I"), ("change", "I"))
#: ``struct gnet_stats_basic`` (``TCA_STATS_BASIC``, gen_stats.h).
GNET_STATS_BASIC = Layout(("bytes", "Q"), ("packets", "I"))
#: ``struct gnet_stats_queue`` (``TCA_STATS_QUEUE``).
GNET_STATS_QUEUE = Layout(("qlen", "I"), ("backlog", "I"), ("drops", "I"),
                          ("requeues", "I"), ("overlimits", "I"))
#: The first four counters of ``struct rtnl_link_stats64`` (``IFLA_STATS64``).
LINK_STATS64 = Layout(("rx_packets", "Q"), ("tx_packets", "Q"), ("rx_bytes", "Q"),
                      ("tx_bytes", "Q"))
#: ``struct nfgenmsg`` (nfnetlink.h): the fixed header of every nfnetlink message
#: (``res_id`` is big-endian on the wire; unused here).
NFGENMSG = Layout(("family", "B"), ("version", "B"), ("res_id", "H"))

_FIXED_HEADER = {
    RTM_NEWQDISC: TCMSG, RTM_DELQDISC: TCMSG, RTM_GETQDISC: TCMSG,
    RTM_NEWTCLASS: TCMSG, RTM_DELTCLASS: TCMSG, RTM_GETTCLASS: TCMSG,
    RTM_NEWLINK: IFINFOMSG, RTM_GETLINK: IFINFOMSG,
}


def ratespec(prefix: str, rate_bytes_per_s: int) -> Dict[str, int]:
    """The ``tc_ratespec`` fields for ``rate_bytes_per_s`` with the Ethernet link
    layer (no rate table needed); the u32 ``rate`` carries at most 2**32-1, the
    full value goes in the 64-bit attribute (``psched_ratecfg_precompute``)."""
    return {f"{prefix}_linklayer": TC_LINKLAYER_ETHERNET,
            f"{prefix}_rate": min(int(rate_bytes_per_s), U32_MAX)}


# --------------------------------------------------------------------------
# Encoding and decoding
# --------------------------------------------------------------------------

def encode_attrs(attrs: Iterable[Tuple[int, bytes]]) -> bytes:
    """Netlink attributes (type, payload) -> bytes, each padded to 4 bytes."""
    out = b""
    for atype, payload in attrs:
        out += struct.pack("=HH", 4 + len(payload), atype) + payload
        out += b"\0" * (-len(out) % 4)
    return out


def u32(value: int) -> bytes:
    return struct.pack("=I", int(value))


def u64(value: int) -> bytes:
    return struct.pack("=Q", int(value))


def asciiz(text: str) -> bytes:
    return text.encode() + b"\0"


def encode_message(msg_type: int, flags: int, seq: int, fixed: bytes,
                   attrs: Iterable[Tuple[int, bytes]] = ()) -> bytes:
    """One whole netlink message (header, fixed part, attributes)."""
    body = fixed + encode_attrs(attrs)
    return NLMSGHDR.pack(length=NLMSGHDR.size + len(body), type=msg_type,
                         flags=flags, seq=seq) + body


def decode_attrs(data: bytes) -> Dict[int, bytes]:
    """A run of netlink attributes -> {type: payload} (nested/byte-order flags
    masked off; the last of a repeated type wins)."""
    out: Dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        length, atype = struct.unpack_from("=HH", data, pos)
        if length < 4:
            break
        out[atype & 0x3FFF] = bytes(data[pos + 4:pos + length])
        pos += (length + 3) & ~3
    return out


@dataclass(frozen=True)
class Message:
    """One decoded netlink message.

    ``fixed`` is the family header (``struct tcmsg`` or ``struct ifinfomsg``) as a
    dict, empty for other types; ``attrs`` the top-level attributes by number;
    ``error`` the positive errno of an ``NLMSG_ERROR`` (0: an ack), else None.
    """

    type: int
    flags: int
    fixed: Dict[str, int]
    attrs: Dict[int, bytes]
    error: Optional[int] = None

    def get(self, key: str) -> int:
        return self.fixed[key]

    def attr_u64(self, atype: int) -> Optional[int]:
        return attr_u64(self.attrs, atype)

    def attr_str(self, atype: int) -> Optional[str]:
        data = self.attrs.get(atype)
        return data.split(b"\0", 1)[0].decode() if data is not None else None

    def nested(self, atype: int) -> Dict[int, bytes]:
        data = self.attrs.get(atype)
        return decode_attrs(data) if data else {}


def attr_u64(attrs: Mapping[int, bytes], atype: int) -> Optional[int]:
    data = attrs.get(atype)
    return struct.unpack_from("=Q", data)[0] if data and len(data) >= 8 else None


def attr_u32(attrs: Mapping[int, bytes], atype: int) -> Optional[int]:
    data = attrs.get(atype)
    return struct.unpack_from("=I", data)[0] if data and len(data) >= 4 else None


def decode(data: bytes, offset: int = 0, proto: int = NETLINK_ROUTE) -> Message:
    """The netlink message at ``offset`` of ``data`` -> :class:`Message`.

    :param proto: the socket's protocol: :data:`NETLINK_ROUTE` (tc and link
        messages) or :data:`NETLINK_NETFILTER` (:data:`NFGENMSG` headers). A body
        too short for its fixed header decodes with none (``fixed`` empty).
    """
    hdr = NLMSGHDR.unpack(data, offset)
    end = offset + hdr["length"]
    pos = offset + NLMSGHDR.size
    if hdr["type"] == NLMSG_ERROR:
        code = -struct.unpack_from("=i", data, pos)[0]
        return Message(hdr["type"], hdr["flags"], {}, {}, error=code)
    if proto == NETLINK_NETFILTER:
        layout = NFGENMSG if hdr["type"] >= NLMSG_MIN_TYPE else None
    else:
        layout = _FIXED_HEADER.get(hdr["type"])
    if layout is None or end - pos < layout.size:
        return Message(hdr["type"], hdr["flags"], {}, {})
    fixed = layout.unpack(data, pos)
    return Message(hdr["type"], hdr["flags"], fixed,
                   decode_attrs(data[pos + layout.size:end]))


def decode_all(data: bytes, proto: int = NETLINK_ROUTE) -> List[Message]:
    """Every message of one ``recv`` (a batch of notifications), in order.

    :raises ValueError: a message's length does not fit ``data`` (not understood).
    """
    out: List[Message] = []
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length = NLMSGHDR.unpack(data, offset)["length"]
        if length < NLMSGHDR.size or offset + length > len(data):
            raise ValueError(f"netlink message of {length} bytes at offset {offset} of "
                             f"{len(data)}")
        out.append(decode(data, offset, proto))
        offset += (length + 3) & ~3
    return out


def decode_pyroute2(msg) -> Message:
    """A message pyroute2 received -> :class:`Message`, from its own bytes
    (``data``/``offset``/``length``), not pyroute2's plugins' reading of them."""
    return decode(bytes(msg.data[msg.offset:msg.offset + msg.length]))


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def errno_of(err: BaseException) -> Optional[int]:
    """The errno of a netlink error (pyroute2's ``NetlinkError.code``) or an
    OSError; None for anything else."""
    code = getattr(err, "code", None)
    if code is None and isinstance(err, OSError):
        code = err.errno
    return code if isinstance(code, int) else None


def kernel_error(what: str, err: BaseException) -> KernelError:
    """A KernelError "``what``: the kernel refused: <strerror> (errno N): <the
    kernel's extended-ack message>", carrying the errno."""
    code = errno_of(err)
    text = " ".join(str(getattr(err, "args", [None, None])[-1] or err).split())
    if code:
        reason = os.strerror(code)
        text = f"{reason} (errno {code})" + (
            f": {text}" if text and reason not in text else "")
    return KernelError(f"{what}: the kernel refused: {text}", errno=code)


def call(what: str, fn: Callable[[], T], tolerate: Optional[Mapping[int, T]] = None) -> T:
    """``fn()``; when it fails with an errno in ``tolerate``, that errno's value.

    :param what: the object, for the error ("link vif3.0", "class 7a51:100 of
        ifindex 4").
    :param tolerate: errno -> what to return instead (e.g. ``{ENOENT: None}``).
    :raises KernelError: any other netlink/OS error, naming ``what`` and the
        kernel's reason. An exception without an errno is not ours to translate
        and goes up unchanged.
    """
    try:
        return fn()
    except Exception as err:
        code = errno_of(err)
        if code is None:
            raise
        if tolerate and code in tolerate:
            return tolerate[code]
        raise kernel_error(what, err) from err


# --------------------------------------------------------------------------
# pyroute2: imported narrowly, one request path
# --------------------------------------------------------------------------

def _import_pyroute2():
    """``(IPRoute, nlmsg)``, importing only the parts of pyroute2 we use.

    ``import pyroute2`` runs the package ``__init__``, which imports every
    subsystem (about 120 ms here). When nobody imported pyroute2 yet, we put a
    bare package module in ``sys.modules`` whose ``__getattr__`` runs the real
    ``__init__`` on first use of a top-level name, so other code that does
    ``from pyroute2 import X`` later still works; we import only
    ``pyroute2.iproute.linux`` and ``pyroute2.netlink``.
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
    netlink = importlib.import_module("pyroute2.netlink")
    return linux.IPRoute, netlink.nlmsg


def preload() -> None:
    """Import the parts of pyroute2 a request uses and build our tc message class
    now (a resident process does it once, so a forked request imports nothing)."""
    _import_pyroute2()
    _tc_message_class()


def open_ipr():
    """An ``IPRoute`` socket in the calling thread's current network namespace.

    :raises EnvironmentProblem: pyroute2 missing or no rtnetlink.
    """
    ipr_class, _nlmsg = _import_pyroute2()
    try:
        return ipr_class(ext_ack=True)
    except OSError as err:  # pragma: no cover - no netlink at all
        raise EnvironmentProblem(f"cannot open rtnetlink: {err}") from err


@functools.lru_cache(maxsize=None)
def _tc_message_class():
    """A pyroute2 message: ``struct tcmsg``, ``TCA_KIND``, ``TCA_OPTIONS`` as bytes.

    A direct subclass of pyroute2's ``nlmsg`` (whose own attribute map is empty),
    so it compiles its own map and never shares tcmsg's plugins.
    """
    _ipr, nlmsg = _import_pyroute2()
    return type("vif_qos_tc_request", (nlmsg,), {
        "fields": tuple(zip(TCMSG.names, ("B", "B", "H", "i", "I", "I", "I"))),
        "nla_map": (("TCA_UNSPEC", "none"), ("TCA_KIND", "asciiz"),
                    ("TCA_OPTIONS", "cdata")),
    })


def _nlm_request(ipr, msg, msg_type: int, flags: int):
    """``IPRoute.nlm_request`` as a tuple, on pyroute2 0.7 and 0.9.

    pyroute2 0.9.7's synchronous ``nlm_request`` looks up
    ``status['nlm_generator']``, which its ``IPRoute`` never sets (KeyError);
    we set it to False (return a tuple) first.
    """
    if hasattr(ipr, "asyncore"):
        ipr.status.setdefault("nlm_generator", False)
    return tuple(ipr.nlm_request(msg, msg_type=msg_type, msg_flags=flags))


def tc_request(ipr, msg_type: int, flags: int, *, index: int, handle: int = 0,
               parent: int = 0, kind: str = "", options: Optional[bytes] = None,
               what: str, tolerate: Optional[Mapping[int, object]] = None):
    """Send one tc request; its replies as :class:`Message` objects (a list), or
    the value ``tolerate`` gives for the errno the kernel answered.

    :param options: the ``TCA_OPTIONS`` payload (attributes encoded with
        :func:`encode_attrs`), or None for none.
    :raises KernelError: any other netlink error, naming ``what``.
    """
    msg = _tc_message_class()()
    msg.update({"family": socket.AF_UNSPEC, "index": index, "handle": handle,
                "parent": parent})
    attrs = [["TCA_KIND", kind]] if kind else []
    if options is not None:
        attrs.append(["TCA_OPTIONS", options])
    msg["attrs"] = attrs
    return call(what, lambda: [decode_pyroute2(m) for m in
                               _nlm_request(ipr, msg, msg_type, flags)], tolerate)
