"""A small dom0 in namespaces for the kernel tests, and plans to apply to it.

dom0 namespace: bridge ``xenbr0``, uplink veth ``peth0`` (peer ``wan0`` in an
"internet" namespace, 10.99.0.1/24, fd99::1/64), and vifs ``vifD.0`` whose peer
``eth0`` sits in a guest namespace (10.99.0.D/24, fd99::D/64) or, for tests
that pass no traffic, stays in dom0 as ``gD``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from nsutil import sh

from vif_qos.model import (ClassPlan, HostSettings, InboundPlan, OutboundPlan,
                           UplinkPlan, VifPlan)

BRIDGE = "xenbr0"
UPLINK = "peth0"


@dataclass
class Dom0:
    dom0: str
    inet: Optional[str]
    guests: Dict[str, str] = field(default_factory=dict)  # vif -> guest ns


def make_dom0(netns, with_inet: bool = True) -> Dom0:
    dom0 = netns.make("dom0")
    sh("ip", "link", "add", BRIDGE, "type", "bridge", ns=dom0)
    sh("ip", "link", "set", BRIDGE, "up", ns=dom0)
    inet = None
    if with_inet:
        inet = netns.make("inet")
        sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "wan0",
           "netns", inet, ns=dom0)
        sh("ip", "addr", "add", "10.99.0.1/24", "dev", "wan0", ns=inet)
        sh("ip", "addr", "add", "fd99::1/64", "dev", "wan0", "nodad", ns=inet)
        sh("ip", "link", "set", "wan0", "up", ns=inet)
    else:
        sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "wanpeer",
           ns=dom0)
        sh("ip", "link", "set", "wanpeer", "up", ns=dom0)
    sh("ip", "link", "set", UPLINK, "master", BRIDGE, ns=dom0)
    sh("ip", "link", "set", UPLINK, "up", ns=dom0)
    return Dom0(dom0=dom0, inet=inet)


def add_vif(netns, d: Dom0, domid: int, guest: bool = False,
            name: Optional[str] = None) -> str:
    """Add vif ``vif<domid>.0`` to the bridge; with ``guest`` its peer gets a
    namespace and addresses 10.99.0.<domid+1>, fd99::<domid+1>."""
    vif = name or f"vif{domid}.0"
    if guest:
        gns = netns.make(f"g{domid}")
        sh("ip", "link", "add", vif, "type", "veth", "peer", "name", "eth0",
           "netns", gns, ns=d.dom0)
        host = domid + 1
        sh("ip", "addr", "add", f"10.99.0.{host}/24", "dev", "eth0", ns=gns)
        sh("ip", "addr", "add", f"fd99::{host:x}/64", "dev", "eth0", "nodad", ns=gns)
        sh("ip", "link", "set", "eth0", "up", ns=gns)
        d.guests[vif] = gns
    else:
        sh("ip", "link", "add", vif, "type", "veth", "peer", "name", f"g{domid}",
           ns=d.dom0)
        sh("ip", "link", "set", f"g{domid}", "up", ns=d.dom0)
    sh("ip", "link", "set", vif, "master", BRIDGE, ns=d.dom0)
    sh("ip", "link", "set", vif, "up", ns=d.dom0)
    return vif


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
