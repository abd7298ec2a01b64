"""Helpers shared by the kernel tests: oracles that read kernel state with iproute2
(independent of vif-qos's own netlink decoding), traffic without a ping binary, and
hand-made plans for the simulated dom0 (``vif_qos.sim.net.SimHost``: bridge
``xenbr0``, uplink ``peth0``). Fixtures live in conftest.py.
"""

from __future__ import annotations

import re
import sys
from typing import Optional, Tuple

from vif_qos.model import (ClassPlan, HostSettings, InboundPlan, OutboundPlan,
                           UplinkPlan, VifPlan)
from vif_qos.sim.net import DEFAULT_BRIDGE, DEFAULT_UPLINK, nft_json, run, tc_json

BRIDGE = DEFAULT_BRIDGE
UPLINK = DEFAULT_UPLINK


# --------------------------------------------------------------------------
# oracles

#: The head of the policies the simulated-dom0 tests write: a guest whose online
#: fails is refused, and xenbr0's uplink is peth0 at 1 Gbit/s.
UPLINK_1GBIT = "[bridges]\nuplink = peth0\nrate = 1gbit\n"
DOM0_POLICY_HEAD = "[host]\non_failure = refuse\n" + UPLINK_1GBIT


def htb_classes(ns: str, dev: str) -> dict:
    """``tc class show`` parsed: classid -> {parent, rate, ceil, burst, cburst}.

    (iproute2 6.1's ``tc -j class show`` prints text for HTB, so we parse text.)
    """
    out = run("tc", "class", "show", "dev", dev, ns=ns).stdout
    classes = {}
    for line in out.splitlines():
        m = re.match(r"class htb (\S+) (root|parent (\S+)) .*?rate (\S+) ceil (\S+) "
                     r"burst (\S+) cburst (\S+)", line)
        if m:
            classes[m.group(1)] = {"parent": m.group(3), "rate": m.group(4),
                                   "ceil": m.group(5), "burst": m.group(6),
                                   "cburst": m.group(7)}
    return classes


def root_qdisc(ns: str, dev: str) -> dict:
    """``tc -j qdisc show``'s root qdisc of ``dev`` ({} when none is shown)."""
    for q in tc_json(ns, "qdisc", "show", "dev", dev):
        if q.get("root"):
            return q
    return {}


def our_rules(ns: str) -> list:
    """The rules of vif-qos's table ``bridge vif_qos``, as ``nft -j`` lists them."""
    return [item["rule"] for item in nft_json(ns, "list", "table", "bridge", "vif_qos")
            if "rule" in item]


# --------------------------------------------------------------------------
# traffic

_SENDER = """
import socket, sys, time
dest, count = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in dest else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(b"vif-qos test %d" % i, (dest, 9))
    time.sleep(0.05)
"""


def direct_packets(ns: str, dev: str = UPLINK) -> int:
    """The uplink HTB's direct_packets_stat: frames sent without a class. Only
    frames in the moment the tree is made, before its default class exists, can
    go there (a direct queue, so that moment drops nothing); none afterwards."""
    htb = [q for q in tc_json(ns, "-s", "qdisc", "show", "dev", dev) if q.get("root")][0]
    return htb["options"]["direct_packets_stat"]


def ping(ns: str, dest: str, count: int = 3) -> None:
    """Send ``count`` UDP datagrams to ``dest`` port 9 from namespace ``ns``
    (the first one makes the sender resolve ARP/NDP)."""
    run(sys.executable, "-c", _SENDER, dest, str(count), ns=ns)


# --------------------------------------------------------------------------
# hand-made plans (the resolver's own plans: vif_qos.core.resolve.plan_vif)

def cls(name: str, rate: int, ceil: Optional[int] = None, burst: int = 15000,
        cburst: Optional[int] = None, quantum: int = 1514) -> ClassPlan:
    return ClassPlan(name=name, rate_bits_per_s=rate, ceil_bits_per_s=ceil or rate,
                     burst_bytes=burst, cburst_bytes=cburst or burst,
                     quantum_bytes=quantum)


def uplink_plan(root_rate: int = 10 ** 9, device: Optional[str] = UPLINK,
                pools: Tuple[ClassPlan, ...] = (), qdisc_major: int = 0x7A51,
                default_rate: Optional[int] = None) -> UplinkPlan:
    return UplinkPlan(bridge=BRIDGE, device=device, qdisc_major=qdisc_major,
                      root=cls("root", root_rate, burst=max(15000, root_rate // 8000)),
                      default=cls("default", default_rate or max(root_rate // 10, 8000),
                                  root_rate),
                      pools=pools)


def vif_plan(vif: str, *, out_rate: Optional[int] = 10 ** 6,
             out_ceil: Optional[int] = None, in_rate: Optional[int] = 10 ** 6,
             burst: int = 15000, pool: Optional[str] = None,
             uplink: Optional[UplinkPlan] = None,
             host: Optional[HostSettings] = None,
             peak: Optional[int] = None, minburst: Optional[int] = None,
             limit: Optional[int] = None) -> VifPlan:
    inbound = None
    if in_rate:
        inbound = InboundPlan(rate_bits_per_s=in_rate, burst_bytes=burst,
                              latency_us=50000,
                              limit_bytes=limit or max(in_rate // 8 // 20, 2 * burst),
                              peak_bits_per_s=peak, minburst_bytes=minburst)
    outbound = None
    if out_rate:
        outbound = OutboundPlan(rate_bits_per_s=out_rate,
                                ceil_bits_per_s=out_ceil or out_rate,
                                burst_bytes=burst, cburst_bytes=burst,
                                quantum_bytes=1514, pool=pool)
    return VifPlan(vif=vif, bridge=BRIDGE, inbound=inbound, outbound=outbound,
                   uplink=(uplink or uplink_plan()) if outbound else None,
                   host=host or HostSettings())
