"""A simulated Xen dom0 network in network namespaces, and iperf3 measurement.

This is simulation code, used by the kernel tests, the benchmarks and
``vif-qos simulate``; it is not on the hotplug path. It may run ``ip``,
``sysctl`` and ``iperf3`` as subprocesses (house rule: only ``vif_qos/sim/``).

The topology (every name below lives only inside namespaces made here)::

    "internet" ns             dom0 ns                          guest ns (one per guest)
    eth0 ------------------ peth0 (bridge port)
    198.18.0.2/16           xenbr0 198.18.0.1/16
    fd7a:5100:0:1::2/64            fd7a:5100:0:1::1/64
                            vif<domid>.<devid> (bridge port) -- eth0 198.18.N.M/16
                            vif<domid>.<devid>-emu (HVM only) -- emu0 (down, no address)

* The uplink veth ``peth0`` plays the physical NIC: its peer in the "internet"
  namespace has an address in the guests' subnet, so guests and the internet host
  talk directly across the bridge (dom0 does no routing or forwarding).
* A guest's dom0-side netdev is named as netback names it, ``vif<domid>.<devid>``
  (``drivers/net/xen-netback/interface.c``: ``xenvif_alloc``), or the ``vifname``
  given; its MAC is ``fe:ff:ff:ff:ff:ff`` as netback sets it. An HVM guest also gets
  the emulated NIC's tap twin ``<vif>-emu`` (libxl's ``libxl__device_nic_devname``
  with ``LIBXL_NIC_TYPE_VIF_IOEMU``).
* ``attach=False`` leaves the dom0 end down and outside the bridge, as netback leaves
  a new vif before the hotplug script runs: Xen's ``vif-bridge`` (``online``/``add``)
  brings it up and adds it to the bridge. ``attach=True`` does that here instead.
* Addresses: IPv4 from 198.18.0.0/16 (RFC 2544's benchmarking range) and IPv6 from
  the ULA prefix ``fd7a:5100:0:1::/64``. Duplicate address detection is switched off
  in every namespace made here (``accept_dad=0`` and ``nodad``), so addresses are
  usable at once.
* Offloads: every interface keeps its defaults, GSO on, as in production: netback
  hands dom0 a guest's TSO frames whole, and a veth does the same. A TCP sender
  here passes GSO packets of up to 64 KiB to the bridge, and tc shapes them as
  the segments they will become (``qdisc_pkt_len``: headers once per segment).
  ``sender_gso=False`` caps the endpoints at one segment per packet
  (``gso_max_segs 1``), for comparison only.

Measurement (:meth:`SimHost.measure`, :meth:`SimHost.measure_many`): iperf3 over
TCP between a guest and the internet host. The iperf3 *client* runs in the
receiving namespace with ``-R`` (the server sends), so its per-interval JSON figures
are the receiver's. The wire rate is read in dom0 on the shaped interface (the
vif's tx for *inbound*, where the TBF sits; the uplink's tx for *outbound*,
where the HTB sits), after a warm-up and at the end of the window, timestamped
with ``time.monotonic()``. With GSO a netdev counts a GSO packet once
(``skb->len``: headers once), while the wire carries one header per segment, so
the wire figure is (see :func:`gso_wire_bytes`)::

    wire bytes = interface tx bytes
                 + (root qdisc's packets - interface tx packets) x header bytes

where the root qdisc (TBF or HTB) counts segments (``gso_segs``, net/sched
``bstats_update``) and the interface counts packets, and ``header bytes`` is one
Ethernet + IP + TCP-with-timestamps header (66 bytes IPv4, 86 IPv6). Goodput is
the sum of iperf3's receiver intervals that fall inside the same window (see
:class:`Measurement`). :meth:`SimHost.rtt_under_load` pings a guest while many
TCP flows saturate one direction.

Usage::

    with SimHost() as host:
        g = host.add_guest(domid=3)                 # vif3.0 in xenbr0
        with host.in_dom0():
            ...                                     # netlink/nft calls act in dom0
        m = host.measure(g, "inbound", family=6)
        print(m.wire_bits_per_s, m.goodput_bits_per_s)

Errors: :class:`vif_qos.errors.EnvironmentProblem` when not root, when ``ip`` or
``iperf3`` is missing, or when a namespace command or a measurement fails.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from vif_qos.errors import EnvironmentProblem
from vif_qos.kernel import netlink as nl

#: Default namespace name prefix; every namespace made here starts with it.
DEFAULT_PREFIX = "vqs-"

#: Bridge and uplink names inside the simulated dom0 (Debian's usual names).
DEFAULT_BRIDGE = "xenbr0"
DEFAULT_UPLINK = "peth0"

#: Addressing (inside the namespaces only).
SUBNET4_PREFIXLEN = 16
DOM0_IPV4 = "198.18.0.1"
INTERNET_IPV4 = "198.18.0.2"
SUBNET6_PREFIX = "fd7a:5100:0:1::"
SUBNET6_PREFIXLEN = 64
DOM0_IPV6 = SUBNET6_PREFIX + "1"
INTERNET_IPV6 = SUBNET6_PREFIX + "2"

#: The MAC netback gives every vif (drivers/net/xen-netback/interface.c).
NETBACK_VIF_MAC = "fe:ff:ff:ff:ff:ff"

#: Interval between wire counter samples inside a measured window, seconds.
WIRE_SAMPLE_S = 0.1

#: One Ethernet + IP + TCP (with timestamps) header per family: what each further
#: segment of a GSO packet adds on the wire.
SEGMENT_HEADER_BYTES = {4: 14 + 20 + 32, 6: 14 + 40 + 32}

INBOUND = "inbound"    # toward the guest: shaped by the TBF on the vif
OUTBOUND = "outbound"  # from the guest: shaped by the HTB on the uplink

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------
# namespace plumbing

@contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Move the calling thread into network namespace ``ns`` for the block.

    Sockets (netlink, nftables handles) opened inside the block stay bound to
    ``ns`` after it ends. Only this thread moves (``setns(2)`` acts per thread).
    sysfs is not remounted: learn about links through netlink only.

    :raises EnvironmentProblem: ``ns`` does not exist or setns failed.
    """
    try:
        target = open(f"/run/netns/{ns}")
    except OSError as exc:
        raise EnvironmentProblem(f"no network namespace {ns!r}: {exc.strerror}") from exc
    with open("/proc/thread-self/ns/net") as orig, target:
        if _libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise EnvironmentProblem(f"setns({ns}): {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(orig.fileno(), _CLONE_NEWNET) != 0:  # pragma: no cover
                err = ctypes.get_errno()
                raise EnvironmentProblem(f"setns back from {ns}: {os.strerror(err)}")


def run(*args: str, ns: Optional[str] = None, check: bool = True,
        input: Optional[str] = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command, inside namespace ``ns`` when given (``ip netns exec``).

    :raises EnvironmentProblem: the command failed (``check``) or timed out; the
        message names the command and quotes its stderr.
    """
    cmd: List[str] = list(args)
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns] + cmd
    try:
        res = subprocess.run(cmd, text=True, capture_output=True, input=input,
                             timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentProblem(f"simnet: {' '.join(cmd)} timed out after {timeout} s") \
            from exc
    if check and res.returncode != 0:
        raise EnvironmentProblem(
            f"simnet: {' '.join(cmd)} failed: {res.stderr.strip() or res.returncode}")
    return res


def ip_batch(ns: str, lines: Sequence[str], timeout: float = 300) -> None:
    """Run many ``ip`` commands in one process (``ip -n NS -batch -``); fast for
    hundreds of links. Each line is an ``ip`` command without the leading ``ip``.

    :raises EnvironmentProblem: any line failed.
    """
    if lines:
        run("ip", "-n", ns, "-batch", "-", input="\n".join(lines) + "\n", timeout=timeout)


def make_namespace(name: str) -> str:
    """Make network namespace ``name`` with ``lo`` up and IPv6 duplicate address
    detection off; returns ``name``. The caller deletes it (:func:`delete_namespace`).

    :raises EnvironmentProblem: ``ip``/``sysctl`` failed (the name is taken, not root).
    """
    run("ip", "netns", "add", name)
    try:
        run("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0", ns=name)
        run("ip", "-n", name, "link", "set", "lo", "up")
    except BaseException:
        delete_namespace(name)
        raise
    return name


def _kill_ns_processes(ns: str) -> None:
    pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def delete_namespace(name: str) -> None:
    """Kill every process in namespace ``name``, then delete it (and with it every
    netdev, qdisc and nft table in it). Never raises for one already gone."""
    _kill_ns_processes(name)
    run("ip", "netns", "del", name, check=False)


class Namespaces:
    """Bare namespaces (no dom0 in them) named ``<prefix><token>-<role>``, made by
    :meth:`make` and all deleted by :meth:`close`: for kernel tests that need an
    empty namespace, e.g. to probe what the kernel accepts."""

    def __init__(self, prefix: str = DEFAULT_PREFIX):
        self.prefix = prefix
        self.token = uuid.uuid4().hex[:6]
        self.names: List[str] = []

    def make(self, role: str = "ns") -> str:
        name = make_namespace(f"{self.prefix}{self.token}-{role}")
        self.names.append(name)
        return name

    def close(self) -> None:
        for name in reversed(self.names):
            delete_namespace(name)
        self.names.clear()


def tc_json(ns: str, *args: str):
    """``tc -j ARGS`` inside ``ns``, parsed (``[]`` for no output): kernel state as
    iproute2 reads it, independent of vif-qos's own netlink decoding."""
    out = run("tc", "-j", *args, ns=ns).stdout
    return json.loads(out) if out.strip() else []


def nft_json(ns: str, *args: str):
    """``nft -j ARGS`` inside ``ns``, parsed (the ``nftables`` list)."""
    out = run("nft", "-j", *args, ns=ns).stdout
    return json.loads(out)["nftables"] if out.strip() else []


class LinkCounters:
    """Interface counters of one namespace, read over rtnetlink (``RTM_GETLINK``).

    Reading is in-process (no subprocess), so each sample's ``time.monotonic()``
    timestamp is within a fraction of a millisecond of the kernel's counter read.
    Uses a plain ``AF_NETLINK`` socket opened inside the namespace; the request and
    the reply (``IFLA_STATS64``, ``struct rtnl_link_stats64``) go through
    :mod:`vif_qos.kernel.netlink`'s encoder and decoder, so it behaves the same
    with every pyroute2 version.
    """

    def __init__(self, ns: str):
        self.ns = ns
        with in_netns(ns):
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                       socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0
        self._lock = threading.Lock()
        self._ipr = None

    def close(self) -> None:
        self._sock.close()
        if self._ipr is not None:
            self._ipr.close()

    def _getlink(self, ifname: str) -> Tuple[float, nl.Message]:
        """(monotonic_s, the decoded RTM_NEWLINK reply) of ``ifname``."""
        with self._lock:
            self._seq += 1
            request = nl.encode_message(nl.RTM_GETLINK, nl.NLM_F_REQUEST, self._seq,
                                        nl.IFINFOMSG.pack(family=socket.AF_UNSPEC),
                                        [(nl.IFLA_IFNAME, nl.asciiz(ifname))])
            t_before = time.monotonic()
            self._sock.send(request)
            data = self._sock.recv(65536)
            t_after = time.monotonic()
        reply = nl.decode(data)
        if reply.error:
            raise EnvironmentProblem(
                f"simnet: no interface {ifname!r} in {self.ns}: {os.strerror(reply.error)}")
        return (t_before + t_after) / 2, reply

    def read(self, ifname: str) -> Tuple[float, Dict[str, int]]:
        """``(monotonic_s, counters)`` for ``ifname``; counters has ``rx_packets``,
        ``tx_packets``, ``rx_bytes``, ``tx_bytes`` (bytes as the netdev counts them:
        ``skb->len``, link header included, no FCS).

        :raises EnvironmentProblem: no such interface in the namespace.
        """
        t, reply = self._getlink(ifname)
        stats = reply.attrs.get(nl.IFLA_STATS64)
        if not stats or len(stats) < nl.LINK_STATS64.size:
            raise EnvironmentProblem(f"simnet: no IFLA_STATS64 for {ifname!r} in {self.ns}")
        return t, nl.LINK_STATS64.unpack(stats)

    def read_with_segments(self, ifname: str) -> Tuple[float, Dict[str, int]]:
        """:meth:`read` plus ``segments``: the packets (GSO segments) of the
        netdev's root qdisc (``vif_qos.kernel.qdisc``), 0 when it has none of ours."""
        from vif_qos.kernel import qdisc
        from vif_qos.kernel import tc as tcadapter

        t, counters = self.read(ifname)
        if self._ipr is None:
            with in_netns(self.ns):
                self._ipr = tcadapter.open_ipr()
        link = tcadapter.get_link(self._ipr, ifname)
        root = qdisc.get_root_qdisc(self._ipr, link.index) if link else None
        counters["segments"] = root.packets if root is not None else 0
        return t, counters

    def read_qdisc_bytes(self, ifname: str) -> Tuple[float, int]:
        """``(monotonic time, bytes)`` of ``ifname``'s root qdisc: what it sent,
        each GSO packet counted as its segments with their headers (the wire's
        figure, one counter, one read); 0 without a root qdisc."""
        from vif_qos.kernel import qdisc
        from vif_qos.kernel import tc as tcadapter

        if self._ipr is None:
            with in_netns(self.ns):
                self._ipr = tcadapter.open_ipr()
        link = tcadapter.get_link(self._ipr, ifname)
        root = qdisc.get_root_qdisc(self._ipr, link.index) if link else None
        return time.monotonic(), (root.bytes if root is not None else 0)

    def is_up(self, ifname: str) -> bool:
        """True when ``ifname``'s operstate is UP (``IF_OPER_UP``, RFC 2863).

        The kernel sets it from its linkwatch worker, the same step that swaps a
        device's ``noop`` qdisc (which drops everything) for its real one once
        the carrier is on (net/core/link_watch.c, ``dev_activate``); that worker
        is rate-limited and runs late on a busy machine, so a just-created veth
        can drop the first packets for a second or more.
        """
        _t, reply = self._getlink(ifname)
        state = reply.attrs.get(nl.IFLA_OPERSTATE)
        return bool(state) and state[0] == nl.IF_OPER_UP


#: Longest counter read :meth:`SimHost.running_flow` keeps, seconds.
MAX_SAMPLE_READ_S = 0.005

# --------------------------------------------------------------------------
# topology

@dataclass(frozen=True)
class SimGuest:
    """One simulated guest (domU).

    ``vif`` is the dom0-side netdev name (``vif<domid>.<devid>`` or the vifname),
    ``emu`` the HVM emulated NIC's dom0-side twin (``<vif>-emu``) or ``None``; ``ns``
    the guest's namespace, where its end is ``eth0`` (and ``emu0`` for the twin).
    """

    name: str
    domid: int
    devid: int
    ns: str
    vif: str
    emu: Optional[str]
    mac: str
    ipv4: str
    ipv6: str

    def address(self, family: int) -> str:
        """The guest's address for IP ``family`` (4 or 6)."""
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True)
class Flow:
    """One iperf3 TCP transfer to measure: ``direction`` is ``"inbound"`` (toward
    the guest) or ``"outbound"`` (from the guest); ``family`` 4 or 6."""

    guest: SimGuest
    direction: str
    family: int = 4


@dataclass(frozen=True)
class Measurement:
    """The result of one measured flow.

    * ``wire_bits_per_s``: the least-squares slope of the cumulative wire bits
      (:func:`gso_wire_bytes` of ``wire_interface``: the vif for inbound, the uplink
      for outbound) over samples taken in dom0 every :data:`WIRE_SAMPLE_S` from
      ``warmup_s`` to ``warmup_s + window_s`` after the flows' data connections are
      established, on the monotonic clock. A shaper
      passes GSO packets of up to 64 KiB whole (0.5 s at 1 Mbit/s), so the
      cumulative count is a staircase: two end points alone would be off by up to
      a packet at each edge, the slope over all samples much less.
      ``wire_bytes`` is the count between the first and last sample,
      ``window_s`` their distance.
      ``interface_bytes`` is the netdev's own tx byte delta (headers once per GSO
      packet), ``segments`` the root qdisc's packet delta (GSO segments) and
      ``interface_packets`` the netdev's tx packet delta.
      On the uplink the counter counts every flow leaving it: with several outbound
      flows at once it is their sum (the same figure in each Measurement).
    * ``goodput_bits_per_s``: TCP payload bytes the receiver got per second, summed
      over iperf3's receiver intervals inside the same window, an interval that
      straddles an edge counted in proportion to its overlap (iperf3's interval
      clock starts when its test starts, within a few ms of the counter clock's
      origin; both windows lie in the steady state, so the rates compare). ``goodput_window_s``
      is the length of those intervals; ``full_run_goodput_bits_per_s`` is iperf3's
      whole-run receiver figure (includes slow start).
    * ``retransmits``: the sender's TCP retransmissions over the whole run (iperf3's
      ``sum_sent.retransmits``), ``None`` if iperf3 did not report it.
    """

    guest: str
    vif: str
    direction: str
    family: int
    wire_interface: str
    wire_bytes: int
    window_s: float
    wire_bits_per_s: float
    goodput_bits_per_s: float
    goodput_window_s: float
    full_run_goodput_bits_per_s: float
    retransmits: Optional[int]
    interface_bytes: int = 0
    interface_packets: int = 0
    segments: int = 0

    def wire_ratio(self, configured_bits_per_s: int) -> float:
        """Measured wire rate / configured rate."""
        return self.wire_bits_per_s / configured_bits_per_s

    def goodput_ratio(self, configured_bits_per_s: int) -> float:
        """Measured TCP goodput / configured rate."""
        return self.goodput_bits_per_s / configured_bits_per_s


@dataclass(frozen=True)
class RttMeasurement:
    """Ping RTTs to a guest, idle (``direction`` None) or while ``flows`` parallel
    TCP flows saturate ``direction``.

    ``rtts_ms`` are the replies' round-trip times (ping's ``time=``), ``sent`` the
    echo requests sent; ``load_bits_per_s`` the load on the shaped netdev while the
    ping ran (the vif's tx bytes inbound, the uplink's outbound, as the netdev
    counts them; 0 when idle). The ping goes from the
    internet host to the guest: the request crosses the vif's TBF (inbound), the
    reply the uplink's HTB leaf (outbound), so either direction's queue shows.
    """

    guest: str
    direction: Optional[str]
    family: int
    flows: int
    rtts_ms: Tuple[float, ...]
    sent: int
    load_bits_per_s: float

    @property
    def median_ms(self) -> float:
        """Median RTT in ms (``inf`` when no reply came back)."""
        values = sorted(self.rtts_ms)
        if not values:
            return math.inf
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


class SimHost:
    """A simulated dom0 with its bridge, uplink, "internet" host and guests.

    :param prefix: namespace name prefix (``vqs-`` by default; tests may pass their
        own so leftovers are recognisable). Names are ``<prefix><token>-<role>``
        with a random token per host, so hosts can coexist.
    :param bridge: the bridge name in dom0 (``xenbr0``).
    :param uplink: the dom0 end of the physical-uplink veth (``peth0``).
    :param sender_gso: keep GSO on the endpoints' interfaces (see module doc).

    Use as a context manager or call :meth:`close`; on any error during
    construction everything made so far is deleted again. An ``atexit`` hook
    closes hosts that were not closed.

    :raises EnvironmentProblem: not root, ``ip`` missing, a command failed.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, bridge: str = DEFAULT_BRIDGE,
                 uplink: str = DEFAULT_UPLINK, sender_gso: bool = True):
        if os.geteuid() != 0:
            raise EnvironmentProblem("the simulated dom0 needs root (network namespaces)")
        if shutil.which("ip") is None:
            raise EnvironmentProblem("the simulated dom0 needs the ip tool (iproute2)")
        self.token = uuid.uuid4().hex[:6]
        self.prefix = prefix
        self.bridge = bridge
        self.uplink = uplink
        self.sender_gso = sender_gso
        self.namespaces: List[str] = []
        self.guests: Dict[str, SimGuest] = {}
        self._procs: List[subprocess.Popen] = []
        self._counters: Dict[str, LinkCounters] = {}
        self._next_port = 5201
        self._next_guest_index = 1
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)
        try:
            self.dom0 = self._make_ns("dom0")
            self.internet = self._make_ns("inet")
            ip_batch(self.dom0, [
                f"link add {bridge} type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
                f"addr add {DOM0_IPV4}/{SUBNET4_PREFIXLEN} dev {bridge}",
                f"addr add {DOM0_IPV6}/{SUBNET6_PREFIXLEN} dev {bridge} nodad",
                f"link set {bridge} up",
                f"link add {uplink} type veth peer name eth0 netns {self.internet}",
                f"link set {uplink} master {bridge} up",
            ])
            ip_batch(self.internet, [
                f"addr add {INTERNET_IPV4}/{SUBNET4_PREFIXLEN} dev eth0",
                f"addr add {INTERNET_IPV6}/{SUBNET6_PREFIXLEN} dev eth0 nodad",
                "link set eth0 up",
            ] + self._gso_lines("eth0"))
        except BaseException:
            self.close()
            raise

    # -- context manager ---------------------------------------------------
    def __enter__(self) -> "SimHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- building ----------------------------------------------------------
    def make_namespace(self, role: str) -> str:
        """Make one more namespace ``<prefix><token>-<role>`` (lo up, DAD off),
        deleted by :meth:`close` like the others; returns its name."""
        return self._make_ns(role)

    def _make_ns(self, role: str) -> str:
        name = make_namespace(f"{self.prefix}{self.token}-{role}")
        self.namespaces.append(name)
        return name

    def _gso_lines(self, dev: str) -> List[str]:
        return [] if self.sender_gso else [f"link set {dev} gso_max_segs 1"]

    def add_guest(self, domid: int, devid: int = 0, name: Optional[str] = None,
                  vifname: Optional[str] = None, hvm: bool = False,
                  attach: bool = True) -> SimGuest:
        """Make a guest namespace joined to dom0 by a vif-named veth.

        :param domid: the guest's domain id (1..32751 in Xen; any int here).
        :param devid: the vif's device id (``handle``).
        :param name: the domain name (default ``guest<domid>``).
        :param vifname: rename the dom0 end (xl's ``vifname=``); the HVM twin is
            then ``<vifname>-emu``. At most 11 characters with ``hvm`` (15 without).
        :param hvm: also make the emulated NIC's twin ``<vif>-emu``.
        :param attach: bring the dom0 end(s) up in the bridge now; ``False`` leaves
            them down and unbridged for a hotplug script (``vif-bridge``) to do it.
        :raises EnvironmentProblem: the name is too long or taken, or ``ip`` failed.
        """
        vif = vifname or f"vif{domid}.{devid}"
        emu = f"{vif}-emu" if hvm else None
        for dev in (vif, emu):
            if dev is not None and len(dev) > 15:
                raise EnvironmentProblem(f"simnet: netdev name {dev!r} longer than 15 bytes")
        with self._lock:
            if vif in self.guests:
                raise EnvironmentProblem(f"simnet: a guest with vif {vif!r} exists")
            index = self._next_guest_index
            self._next_guest_index += 1
        if index > 250 * 250:
            raise EnvironmentProblem("simnet: too many guests for the test subnet")
        ns = self._make_ns(f"g{domid}-{devid}")
        ipv4 = f"198.18.{1 + (index - 1) // 250}.{1 + (index - 1) % 250}"
        ipv6 = f"{SUBNET6_PREFIX}1:{index:x}"
        mac = "00:16:3e:%02x:%02x:%02x" % ((index >> 16) & 0x7F, (index >> 8) & 0xFF,
                                           index & 0xFF)
        lines = [f"link add {vif} address {NETBACK_VIF_MAC} type veth "
                 f"peer name eth0 address {mac} netns {ns}"]
        if emu:
            lines.append(f"link add {emu} address {NETBACK_VIF_MAC} type veth "
                         f"peer name emu0 netns {ns}")
        ip_batch(self.dom0, lines)
        ip_batch(ns, [
            f"addr add {ipv4}/{SUBNET4_PREFIXLEN} dev eth0",
            f"addr add {ipv6}/{SUBNET6_PREFIXLEN} dev eth0 nodad",
            "link set eth0 up",
        ] + self._gso_lines("eth0"))
        guest = SimGuest(name=name or f"guest{domid}", domid=domid, devid=devid, ns=ns,
                         vif=vif, emu=emu, mac=mac, ipv4=ipv4, ipv6=ipv6)
        with self._lock:
            self.guests[vif] = guest
        if attach:
            self.attach(vif)
            if emu:
                self.attach(emu)
        return guest

    def attach(self, dev: str) -> None:
        """Bring dom0 netdev ``dev`` up as a port of the bridge (what ``vif-bridge``
        does on ``online``/``add``)."""
        ip_batch(self.dom0, [f"link set {dev} master {self.bridge} up"])

    def remove_guest(self, guest: SimGuest) -> None:
        """Destroy the guest: its namespace goes, and with it both ends of its veths
        (so the vif netdev vanishes from dom0, as when netback frees it).

        The veths are deleted explicitly first: a namespace's own teardown runs
        later in a kernel workqueue, and the vif must be gone when this returns."""
        ip_batch(self.dom0, [f"link del {dev}" for dev in (guest.vif, guest.emu)
                             if dev and dev in self.link_names()])
        delete_namespace(guest.ns)
        with self._lock:
            if guest.ns in self.namespaces:
                self.namespaces.remove(guest.ns)
            self.guests.pop(guest.vif, None)

    def in_dom0(self):
        """Context manager: this thread inside the dom0 namespace (see
        :func:`in_netns`), e.g. around ``vif_qos.kernel.apply.apply_vif``."""
        return in_netns(self.dom0)

    def link_names(self, ns: Optional[str] = None) -> List[str]:
        """Names of the netdevs in ``ns`` (dom0 by default), from ``ip -j link``."""
        out = run("ip", "-j", "-n", ns or self.dom0, "link", "show").stdout
        return [link["ifname"] for link in json.loads(out or "[]")]

    def counters(self, ns: Optional[str] = None) -> LinkCounters:
        """The (cached) :class:`LinkCounters` reader of ``ns`` (dom0 by default)."""
        ns = ns or self.dom0
        with self._lock:
            if ns not in self._counters:
                self._counters[ns] = LinkCounters(ns)
            return self._counters[ns]

    def wait_up(self, links: Sequence[Tuple[str, str]], timeout_s: float = 15.0) -> None:
        """Wait until every ``(namespace, ifname)`` in ``links`` is operationally up
        (see :meth:`LinkCounters.is_up`).

        :raises EnvironmentProblem: one is still not up after ``timeout_s``
            (a vif left down and unbridged, ``attach=False``, stays down until a
            hotplug script brings it up).
        """
        deadline = time.monotonic() + timeout_s
        for ns, ifname in links:
            while not self.counters(ns).is_up(ifname):
                if time.monotonic() > deadline:
                    raise EnvironmentProblem(
                        f"simnet: {ifname} in {ns} is not up after {timeout_s:g} s "
                        "(is the vif up and in the bridge?)")
                time.sleep(0.02)

    # -- measuring ---------------------------------------------------------
    def _port(self) -> int:
        with self._lock:
            port = self._next_port
            self._next_port += 1
            return port

    def _endpoints(self, flow: Flow) -> Tuple[str, str, str, str]:
        """(sender ns, receiver ns, address the receiver connects to, wire iface)."""
        guest = flow.guest
        inet_addr = INTERNET_IPV4 if flow.family == 4 else INTERNET_IPV6
        if flow.direction == INBOUND:
            return self.internet, guest.ns, inet_addr, guest.vif
        if flow.direction == OUTBOUND:
            return guest.ns, self.internet, guest.address(flow.family), self.uplink
        raise EnvironmentProblem("simnet: direction must be inbound or outbound",
                                 token=str(flow.direction))

    def _spawn(self, ns: str, args: Sequence[str]) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns] + list(args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        with self._lock:
            self._procs.append(proc)
        return proc

    @staticmethod
    def _listening(pid: int, port: int) -> bool:
        """True when process ``pid`` is iperf3 and its namespace has a TCP listener
        on ``port`` (read from /proc/PID/net/tcp*, which shows that process's netns)."""
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "iperf3":
                    return False
            for table in ("tcp6", "tcp"):
                with open(f"/proc/{pid}/net/{table}") as f:
                    for line in f.readlines()[1:]:
                        fields = line.split()
                        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                            return True
        except (OSError, ValueError, IndexError):
            return False
        return False

    @staticmethod
    def _established(pid: int, port: int) -> int:
        """Established TCP connections on local ``port`` in process ``pid``'s
        namespace (/proc/PID/net/tcp*, state 01); the iperf3 server's control
        connection counts too."""
        count = 0
        for table in ("tcp6", "tcp"):
            try:
                with open(f"/proc/{pid}/net/{table}") as f:
                    for line in f.readlines()[1:]:
                        fields = line.split()
                        if fields[3] == "01" and \
                                int(fields[1].rsplit(":", 1)[1], 16) == port:
                            count += 1
            except (OSError, ValueError, IndexError):
                pass
        return count

    def _wait_connected(self, pairs: Sequence[Tuple[subprocess.Popen, subprocess.Popen,
                                                    "_FlowRun"]],
                        flows: int, timeout_s: float = 15.0) -> None:
        """Wait until each ``(server, client, run)`` of ``pairs`` has its control
        connection and ``flows`` data connections established.

        :raises EnvironmentProblem: a client exited, or not all were connected
            within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        for server, client, run in pairs:
            while self._established(server.pid, run.port) < flows + 1:
                exited = client.poll() is not None
                if exited or time.monotonic() > deadline:
                    why = (f"exited {client.returncode}: {client.stderr.read().strip()[:200]}"
                           if exited else f"not within {timeout_s:g} s")
                    raise EnvironmentProblem(
                        f"simnet: iperf3 -P {flows} {run.flow.direction} of "
                        f"{run.flow.guest.name} did not connect all its flows ({why})")
                time.sleep(0.02)

    def measure(self, guest: SimGuest, direction: str, family: int = 4,
                window_s: float = 2.0, warmup_s: float = 0.75,
                connections: int = 1) -> Measurement:
        """Measure one TCP flow; see :meth:`measure_many`."""
        return self.measure_many([Flow(guest, direction, family)], window_s, warmup_s,
                                 connections=connections)[0]

    def measure_many(self, flows: Sequence[Flow], window_s: float = 2.0,
                     warmup_s: float = 0.75, interval_s: float = 0.25,
                     connections: int = 1) -> List[Measurement]:
        """Run the iperf3 TCP ``flows`` at the same time and measure each, each
        flow ``connections`` parallel TCP connections (iperf3 ``-P``; its figures
        are their sum).

        Each flow gets its own iperf3 server (in the sending namespace, own port) and
        client (in the receiving namespace, ``-R``, ``--json``, ``-4``/``-6``), run for
        ``warmup_s + window_s + 0.25`` s rounded up to whole seconds (iperf3 takes
        ``-t`` in whole seconds), so ``warmup_s + window_s`` = 2.75 or 3.75 wastes
        nothing. The wire counters are sampled from ``warmup_s`` to
        ``warmup_s + window_s`` after every flow's data connection is established
        (see :class:`Measurement`), iperf3's intervals over the same span of its own
        clock, which starts there too;
        ``interval_s`` is iperf3's report interval (>= 0.1 s), intervals straddling
        the window's edges are pro-rated. Every process is bounded in time and
        killed on error.

        Do not put both directions of one guest in one call: each transfer's TCP
        acknowledgements would queue behind the other's data. Outbound flows share
        the uplink's counter (their wire figure is the total).

        Waits first until every netdev on the flows' paths is up (:meth:`wait_up`).
        ``window_s`` > 0 and ``warmup_s`` >= 0 are seconds.

        :raises EnvironmentProblem: iperf3 missing, a link on the path not up, a
            server did not start within 10 s, a client did not connect within 15 s,
            failed, or its JSON lacks the receiver figures.
        """
        _need_tool("iperf3", "measuring")
        # iperf3 3.12 reads -t as whole seconds (atoi); keep >= 0.25 s of traffic
        # after the last counter sample.
        run_s = math.ceil(warmup_s + window_s + 0.25)
        runs = [self._flow_run(flow) for flow in flows]
        self._wait_paths([flow.guest for flow in flows])
        servers: List[subprocess.Popen] = []
        clients: List[subprocess.Popen] = []
        try:
            self._start_servers(runs, servers)
            clients += [self._iperf3_client(run, run_s, "-i", f"{interval_s:g}", "--json",
                                            "-P", str(connections)) for run in runs]
            # The warm-up counts from when every flow's data connection is up,
            # which is also when iperf3's own interval clock starts (starting
            # iperf3 through `ip netns exec` takes 10-300 ms, more when busy).
            self._wait_connected(list(zip(servers, clients, runs)), connections)
            start = time.monotonic()
            samples = self._sample_wires(sorted({run.wire for run in runs}),
                                         start + warmup_s, start + warmup_s + window_s)
            outputs = [self._client_output(proc, run, run_s)
                       for proc, run in zip(clients, runs)]
            self._end_servers(servers)
        finally:
            self._reap(servers + clients)
        return [_measurement(run, samples[run.wire],
                             _iperf3_receiver(out, err, rc, run.receiver, warmup_s,
                                              warmup_s + window_s))
                for run, (out, err, rc) in zip(runs, outputs)]

    def _flow_run(self, flow: Flow) -> "_FlowRun":
        """``flow``'s namespaces, address, wire netdev and a port of its own."""
        return _FlowRun(flow, *self._endpoints(flow), port=self._port())

    def _wait_paths(self, guests: Sequence[SimGuest]) -> None:
        """Wait until every netdev between ``guests`` and the internet host is up:
        the uplink and the internet host's end, each guest's vif and its eth0."""
        needed = [(self.dom0, self.uplink), (self.internet, "eth0")]
        for guest in guests:
            needed += [(self.dom0, guest.vif), (guest.ns, "eth0")]
        self.wait_up(list(dict.fromkeys(needed)))

    def _iperf3_client(self, run: "_FlowRun", seconds: int,
                       *options: str) -> subprocess.Popen:
        """Start ``run``'s iperf3 client (the receiver, ``-R``) for ``seconds``
        whole seconds, with the further iperf3 ``options``."""
        return self._spawn(run.receiver, [
            "iperf3", "-c", run.address, "-p", str(run.port), f"-{run.flow.family}",
            "-R", "-t", str(seconds), *options, "--connect-timeout", "10000"])

    def _sample_wires(self, wires: Sequence[str], first_s: float, last_s: float
                      ) -> Dict[str, List[Tuple[float, Dict[str, int]]]]:
        """Sample each dom0 netdev of ``wires`` (:meth:`LinkCounters.read_with_segments`)
        at monotonic ``first_s``, every :data:`WIRE_SAMPLE_S` after it, and at
        ``last_s``; returns the samples per netdev."""
        samples: Dict[str, List[Tuple[float, Dict[str, int]]]] = {wire: [] for wire in wires}
        next_at = first_s
        while True:
            _sleep_until(next_at)
            for wire in wires:
                samples[wire].append(self.counters(self.dom0).read_with_segments(wire))
            if next_at >= last_s:
                return samples
            next_at = min(last_s, next_at + WIRE_SAMPLE_S)

    def _start_servers(self, runs: Sequence["_FlowRun"],
                       servers: List[subprocess.Popen]) -> None:
        """One ``iperf3 -s -1`` per run in its sender's namespace (appended to
        ``servers`` as started, so the caller reaps them on any failure), each
        listening within 10 s."""
        for run in runs:
            servers.append(self._spawn(run.sender, ["iperf3", "-s", "-1", "-p",
                                                    str(run.port)]))
        deadline = time.monotonic() + 10
        for proc, run in zip(servers, runs):
            while not self._listening(proc.pid, run.port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise EnvironmentProblem(
                        f"simnet: iperf3 server in {run.sender} did not start: "
                        f"{(proc.stderr.read() if proc.poll() is not None else '')}")
                time.sleep(0.01)

    @staticmethod
    def _end_servers(servers: Sequence[subprocess.Popen]) -> None:
        """Let each iperf3 server finish its report (5 s at most), else kill it."""
        for proc in servers:
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

    @staticmethod
    def _client_output(proc: subprocess.Popen, run: "_FlowRun",
                       run_s: int) -> Tuple[str, str, int]:
        """(stdout, stderr, exit status) of an iperf3 client, killed when it hangs."""
        try:
            out, err = proc.communicate(timeout=run_s + 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise EnvironmentProblem(f"simnet: iperf3 client in {run.receiver} hung")
        return out, err, proc.returncode

    def _reap(self, procs: Sequence[subprocess.Popen]) -> None:
        """Kill what still runs of ``procs``, close their pipes, forget them all."""
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            with self._lock:
                if proc in self._procs:
                    self._procs.remove(proc)

    @contextmanager
    def running_flow(self, flow: Flow, seconds: int, sample_s: float = 0.1,
                     connections: int = 1) -> Iterator[List[Tuple[float, int]]]:
        """Run one iperf3 TCP ``flow`` of ``connections`` parallel TCP connections
        (iperf3 ``-P``; at most ``seconds``, whole seconds) while the block runs,
        from when all are connected, sampling the shaped interface's tx byte
        counter in dom0 every ``sample_s`` (a sample whose read took over
        ``MAX_SAMPLE_READ_S`` is dropped: its time is uncertain); yields the list of
        ``(monotonic time, wire bytes)`` samples (the shaped interface's root
        qdisc's byte counter: ``qdisc_pkt_len`` counts a GSO packet as the segments
        the wire carries, headers included), which grows while the block runs (the
        block may change the shaping meanwhile). Leaving the block stops sampling
        and kills the flow.

        :raises EnvironmentProblem: iperf3 missing, a server that did not start, a
            client that did not connect within 15 s.
        """
        _need_tool("iperf3", "measuring")
        run = self._flow_run(flow)
        self._wait_paths([flow.guest])
        samples: List[Tuple[float, int]] = []
        stop = threading.Event()
        thread = threading.Thread(target=self._sample_qdisc_bytes,
                                  args=(run.wire, samples, stop, sample_s), daemon=True)
        procs: List[subprocess.Popen] = []
        try:
            self._start_servers([run], procs)
            procs.append(self._iperf3_client(run, seconds, "-P", str(connections)))
            self._wait_connected([(procs[0], procs[1], run)], connections)
            thread.start()
            yield samples
        finally:
            stop.set()
            if thread.is_alive():
                thread.join(timeout=5)
            self._reap(procs)

    def _sample_qdisc_bytes(self, wire: str, samples: List[Tuple[float, int]],
                            stop: threading.Event, sample_s: float) -> None:
        """Append ``(monotonic time, root qdisc bytes)`` of dom0's ``wire`` to
        ``samples`` every ``sample_s`` until ``stop`` is set (a thread's body)."""
        reader = LinkCounters(self.dom0)
        last_bytes = 0
        try:
            while not stop.is_set():
                before = time.monotonic()
                t, wire_bytes = reader.read_qdisc_bytes(wire)
                # A read the scheduler interrupted (a loaded machine) has a
                # timestamp up to its length away from the counter's: dropped.
                # So is one that did not grow (a missed or stale reply): it
                # would read as a burst in the window after it.
                if time.monotonic() - before <= MAX_SAMPLE_READ_S and wire_bytes > last_bytes:
                    last_bytes = wire_bytes
                    samples.append((t, wire_bytes))
                stop.wait(sample_s)
        finally:
            reader.close()

    def rtt_under_load(self, guest: SimGuest, direction: Optional[str], family: int = 4,
                       flows: int = 32, warmup_s: float = 1.5, ping_s: float = 3.0,
                       ping_interval_s: float = 0.05) -> RttMeasurement:
        """Ping ``guest`` from the internet host for ``ping_s`` seconds (one echo
        request every ``ping_interval_s``, >= 0.002 as root), idle when
        ``direction`` is None, else after ``warmup_s`` of ``flows`` parallel TCP
        flows (one iperf3 ``-P``) in ``direction``, counted from when all are
        connected, that keep running until the last reply is due.

        :raises EnvironmentProblem: iperf3 or ping missing, the load failed.
        """
        for tool in ("iperf3", "ping"):
            _need_tool(tool, "measuring RTT")
        self._wait_paths([guest])
        count = max(1, int(ping_s / ping_interval_s))
        ping_args = ["ping", f"-{family}", "-n", "-i", f"{ping_interval_s:g}",
                     "-c", str(count), "-W", "3", guest.address(family)]
        load = 0.0
        procs: List[subprocess.Popen] = []
        try:
            if direction is None:
                res = self._ping(ping_args, ping_s)
            else:
                res, load = self._ping_under_load(Flow(guest, direction, family), flows,
                                                  warmup_s, ping_s, ping_args, procs)
        finally:
            self._reap(procs)
        rtts = tuple(float(v) for v in _PING_TIME.findall(res.stdout))
        return RttMeasurement(guest=guest.name, direction=direction, family=family,
                              flows=flows if direction else 0, rtts_ms=rtts, sent=count,
                              load_bits_per_s=load)

    def _ping(self, ping_args: Sequence[str], ping_s: float) -> subprocess.CompletedProcess:
        """Run ``ping_args`` in the internet host, bounded well past ``ping_s``."""
        return run(*ping_args, ns=self.internet, check=False, timeout=ping_s * 3 + 15)

    def _ping_under_load(self, flow: Flow, flows: int, warmup_s: float, ping_s: float,
                         ping_args: Sequence[str], procs: List[subprocess.Popen]
                         ) -> Tuple[subprocess.CompletedProcess, float]:
        """Ping (``ping_args``) after ``warmup_s`` of ``flows`` parallel TCP flows in
        ``flow``'s direction; returns the ping's result and the load on the shaped
        netdev while it ran (bits/s, the netdev's tx bytes). The iperf3 processes
        are appended to ``procs`` for the caller to reap."""
        run_ = self._flow_run(flow)
        self._start_servers([run_], procs)
        # Long enough to outlast the ping even on a busy machine; killed when the
        # ping is done.
        client = self._iperf3_client(run_, math.ceil(warmup_s + ping_s * 3 + 15),
                                     "-P", str(flows), "--json")
        procs.append(client)
        # The warm-up counts from when every flow is connected (on a busy machine
        # iperf3 takes a while to open 32 connections).
        self._wait_connected([(procs[0], client, run_)], flows)
        time.sleep(warmup_s)
        t0, c0 = self.counters(self.dom0).read(run_.wire)
        res = self._ping(ping_args, ping_s)
        t1, c1 = self.counters(self.dom0).read(run_.wire)
        # The load is measured: iperf3's own end (its report over a control
        # connection queued behind a full shaper; iperf3 3.12 can hang there) is
        # not waited for.
        if client.poll() is not None and client.returncode != 0:
            raise EnvironmentProblem(
                f"simnet: iperf3 -P {flows} toward {flow.guest.name} exited "
                f"{client.returncode} before the ping ended: "
                f"{client.stderr.read().strip()[:200]}")
        return res, (c1["tx_bytes"] - c0["tx_bytes"]) * 8 / (t1 - t0)

    # -- teardown ----------------------------------------------------------
    def close(self) -> None:
        """Kill every process started here or still running in our namespaces and
        delete every namespace (and so every netdev, qdisc and nft table in them).
        Idempotent; never raises for things already gone."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for proc in list(self._procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._procs.clear()
        for reader in self._counters.values():
            reader.close()
        self._counters.clear()
        for ns in reversed(self.namespaces):
            delete_namespace(ns)
        self.namespaces.clear()
        self.guests.clear()


def gso_wire_bytes(interface_bytes: int, interface_packets: int, segments: int,
                   family: int) -> int:
    """Bytes on the wire (Ethernet frames, no FCS) from a netdev's tx counters and
    its root qdisc's segment count.

    A GSO packet of n segments counts once in the netdev (``skb->len``, one
    header) and n times in the qdisc (``gso_segs``); its n - 1 further segments
    each carry one more Ethernet + IP + TCP header (:data:`SEGMENT_HEADER_BYTES`
    of ``family``). Packets that are not GSO add nothing. Without a qdisc of ours
    (``segments`` 0, or fewer than the packets) the interface bytes are returned.
    """
    extra_segments = max(0, segments - interface_packets)
    return interface_bytes + extra_segments * SEGMENT_HEADER_BYTES[family]


def _need_tool(tool: str, purpose: str) -> None:
    """:raises EnvironmentProblem: ``tool`` is not on PATH (``purpose`` needs it)."""
    if shutil.which(tool) is None:
        raise EnvironmentProblem(f"{purpose} needs {tool} (apt-get install "
                                 f"{'iputils-ping' if tool == 'ping' else tool})")


def _measurement(run: "_FlowRun", series: Sequence[Tuple[float, Dict[str, int]]],
                 got: "ReceiverFigures") -> Measurement:
    """The :class:`Measurement` of ``run`` from its wire netdev's counter samples
    (``series``, :meth:`LinkCounters.read_with_segments`) and its receiver's
    figures ``got``: the wire rate is the slope of the cumulative wire bits."""
    family = run.flow.family
    (t0, c0), (t1, c1) = series[0], series[-1]

    def wire_bytes_since_first(c: Dict[str, int]) -> int:
        return gso_wire_bytes(c["tx_bytes"] - c0["tx_bytes"],
                              c["tx_packets"] - c0["tx_packets"],
                              c["segments"] - c0["segments"], family)

    delta = {key: c1[key] - c0[key] for key in c1}
    wire_rate = _slope([t - t0 for t, _c in series],
                       [wire_bytes_since_first(c) * 8 for _t, c in series])
    return Measurement(
        guest=run.flow.guest.name, vif=run.flow.guest.vif, direction=run.flow.direction,
        family=family, wire_interface=run.wire, wire_bytes=wire_bytes_since_first(c1),
        window_s=t1 - t0, wire_bits_per_s=wire_rate,
        goodput_bits_per_s=got.goodput_bits_per_s, goodput_window_s=got.window_s,
        full_run_goodput_bits_per_s=got.full_run_bits_per_s, retransmits=got.retransmits,
        interface_bytes=delta["tx_bytes"], interface_packets=delta["tx_packets"],
        segments=delta["segments"])


_PING_TIME = re.compile(r"time=([0-9.]+) ms")


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (two points: their difference
    quotient)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


@dataclass(frozen=True)
class _FlowRun:
    """One flow being measured: its namespaces (iperf3 server in ``sender``, client
    in ``receiver``), the address the client connects to, the dom0 netdev whose tx
    counter is the wire figure, and the server's port."""

    flow: Flow
    sender: str
    receiver: str
    address: str
    wire: str
    port: int


class ReceiverFigures(NamedTuple):
    """What an iperf3 receiver reported: goodput in the window (bits/s), the window's
    covered length (s), the whole run's goodput (bits/s), the sender's retransmits."""

    goodput_bits_per_s: float
    window_s: float
    full_run_bits_per_s: float
    retransmits: Optional[int]


def _iperf3_receiver(out: str, err: str, rc: int, ns: str, start_s: float,
                     end_s: float) -> ReceiverFigures:
    """The receiver's figures for the window [start_s, end_s] from an iperf3
    ``-R --json`` client's output (the client is the receiver)."""
    try:
        doc = json.loads(out)
    except ValueError:
        raise EnvironmentProblem(
            f"simnet: iperf3 client in {ns} gave no JSON (exit {rc}): {err.strip()[:200]}")
    if doc.get("error"):
        raise EnvironmentProblem(f"simnet: iperf3 client in {ns}: {doc['error']}")
    # Each interval's bytes count in proportion to its overlap with the window:
    # under load iperf3's interval timer fires late and boundaries drift.
    total_bytes, total_s = 0.0, 0.0
    for interval in doc.get("intervals", []):
        s = interval["sum"]
        overlap = min(s["end"], end_s) - max(s["start"], start_s)
        if overlap > 0 and s["end"] > s["start"]:
            total_bytes += s["bytes"] * overlap / (s["end"] - s["start"])
            total_s += overlap
    end = doc.get("end", {})
    received = end.get("sum_received", {})
    if not total_s or "bits_per_second" not in received:
        raise EnvironmentProblem(f"simnet: iperf3 client in {ns} reported no receiver "
                                 f"intervals in {start_s}..{end_s} s")
    retrans = end.get("sum_sent", {}).get("retransmits")
    return ReceiverFigures(total_bytes * 8 / total_s, total_s,
                           float(received["bits_per_second"]), retrans)
