"""The resolved shaping plan: plain, immutable data shared by every layer.

The pure core (:mod:`vif_qos.core.resolve`) produces these objects from the admin's
inputs; the kernel side (:mod:`vif_qos.kernel.apply`) turns them into qdiscs, classes and
nftables objects; nothing here touches the kernel or xenstore.

Units are in the field names and are always integers in base units:
``*_bits_per_s`` bits per second, ``*_bytes`` bytes, ``*_us`` microseconds.
Rates go up to at least 100 Gbit/s (10**11 bits/s): the kernel side must use the
64-bit netlink attributes above 2**32-1 bytes/s.

Direction words are the guest's: *inbound* is traffic toward the guest (a TBF
root qdisc on the vif), *outbound* is traffic from the guest (an HTB leaf class on
the bridge's physical uplink, chosen by skb priority set from nftables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Tuple

from vif_qos.constants import DEFAULT_BRIDGE

#: Largest rate vif-qos accepts anywhere: 1 Tbit/s. Larger values are refused.
MAX_RATE_BITS_PER_S = 10 ** 12

#: The failure modes a host policy may choose for a vif that cannot be shaped.
ON_FAILURE_REFUSE = "refuse"   # the vif's hotplug fails; the guest gets no network
ON_FAILURE_WARN = "warn"       # the vif comes up unshaped; the error is logged

#: What online/set do with a guaranteed rate (HTB ``rate``) that does not fit under
#: its parent class (the sum of the parent's children's rates above its rate).
ADMISSION_WARN = "warn"        # applied; a warning is logged
ADMISSION_REFUSE = "refuse"    # refused, nothing applied
ADMISSION_OFF = "off"          # not checked


@dataclass(frozen=True)
class InboundPlan:
    """TBF root qdisc on the vif (traffic toward the guest).

    Meanings follow tc-tbf(8) and ``net/sched/sch_tbf.c``:
    ``burst_bytes`` is the bucket size, ``limit_bytes`` the queue length in bytes
    (derived from ``latency_us``), ``peak_bits_per_s``/``minburst_bytes`` the
    optional second bucket (both set or both ``None``).
    """

    rate_bits_per_s: int
    burst_bytes: int
    latency_us: int
    limit_bytes: int
    peak_bits_per_s: Optional[int] = None
    minburst_bytes: Optional[int] = None


#: The leaf qdisc kinds a policy may ask for (``[host] leaf_qdisc``).
LEAF_QDISC_AUTO = "auto"          # fq_codel where the kernel has it, else bfifo
LEAF_QDISC_FQ_CODEL = "fq_codel"
LEAF_QDISC_BFIFO = "bfifo"
LEAF_QDISC_KINDS = (LEAF_QDISC_AUTO, LEAF_QDISC_FQ_CODEL, LEAF_QDISC_BFIFO)


@dataclass(frozen=True)
class LeafQdiscPlan:
    """The qdisc under an HTB leaf class on the uplink: it bounds the class's queue.

    ``kind`` is ``auto``, ``fq_codel`` or ``bfifo`` (see :data:`LEAF_QDISC_KINDS`;
    the kernel side resolves ``auto``). ``latency_us`` is the time bound it is sized
    from; ``limit_bytes`` the bfifo queue length in bytes (``tc-bfifo(8)``
    ``limit``: a packet is queued while the backlog plus its length stays within
    it); ``target_us``/``interval_us`` fq_codel's CoDel target and interval
    (``tc-fq_codel(8)``).
    """

    kind: str
    latency_us: int
    limit_bytes: int
    target_us: int
    interval_us: int


@dataclass(frozen=True)
class OutboundPlan:
    """HTB leaf class on the uplink (traffic from the guest).

    Meanings follow tc-htb(8) and ``net/sched/sch_htb.c``. ``pool`` names the pool
    class that is this leaf's parent, or ``None`` for a leaf directly under the
    root class.
    """

    rate_bits_per_s: int
    ceil_bits_per_s: int
    burst_bytes: int
    cburst_bytes: int
    quantum_bytes: int
    pool: Optional[str] = None
    leaf_qdisc: Optional[LeafQdiscPlan] = None


@dataclass(frozen=True)
class ClassPlan:
    """An HTB class shared by many vifs: the root class, the default class or a pool.

    ``leaf_qdisc`` is set for a class that queues packets itself (the default
    class); ``None`` for inner classes (root, pools).
    """

    name: str
    rate_bits_per_s: int
    ceil_bits_per_s: int
    burst_bytes: int
    cburst_bytes: int
    quantum_bytes: int
    leaf_qdisc: Optional[LeafQdiscPlan] = None


@dataclass(frozen=True)
class UplinkPlan:
    """The shared HTB tree on one bridge's physical uplink.

    ``device`` is the uplink netdev name, or ``None`` for ``auto``: the kernel side
    then picks the bridge's one port that is not a guest port (not ``vif*``/``tap*``).

    HTB handles: the root qdisc is ``qdisc_major:0``; the root class is
    ``qdisc_major:1``, the default class ``qdisc_major:2``; pool classes take minors
    from ``0x10`` (the lowest free one; a pool keeps the class its members sit
    under); vif leaves take minors from ``[classid_min, classid_max]`` (both
    allocated by the kernel side).
    """

    bridge: str
    device: Optional[str]
    qdisc_major: int
    root: ClassPlan
    default: ClassPlan
    pools: Tuple[ClassPlan, ...] = ()


@dataclass(frozen=True)
class HostSettings:
    """Host-wide settings from the policy file's ``[host]`` section.

    ``mark_mask`` is the contiguous run of packet-mark bits vif-qos owns; every
    other mark bit is left as it was (``mark & ~mask | value``). Leaf classid minors
    and mark values are allocated from ``classid_min..classid_max``. ``admission``
    is one of ``warn``/``refuse``/``off`` (see ``ADMISSION_*``).
    """

    mark_mask: int = 0x0FFF0000
    qdisc_major: int = 0x7A51
    classid_min: int = 0x100
    classid_max: int = 0xFEFF
    on_failure: str = ON_FAILURE_REFUSE
    debug: bool = False
    admission: str = ADMISSION_WARN


@dataclass(frozen=True)
class VifPlan:
    """Everything needed to shape one vif, fully resolved and validated.

    ``inbound``/``outbound`` are ``None`` when that direction is not shaped.
    ``uplink`` is set whenever ``outbound`` is. ``sources`` maps each resolved
    parameter name (``"inbound.rate_bits_per_s"``, ``"outbound.pool"``, ...) to
    where its value came from (``"/etc/xen/vif-qos.conf:12"``,
    ``"xenstore:backend/vif/3/0/rate"``, ``"built-in default"``, ...).
    ``notes`` are the corrections made and the warnings to log, one line each.
    """

    vif: str
    bridge: str
    inbound: Optional[InboundPlan]
    outbound: Optional[OutboundPlan]
    uplink: Optional[UplinkPlan]
    host: HostSettings = field(default_factory=HostSettings)
    sources: Dict[str, str] = field(default_factory=dict)
    notes: Tuple[str, ...] = ()

    def to_json(self) -> dict:
        """The ``vif-qos plan --json`` object (see README.rst)."""
        return {
            "vif": self.vif,
            "bridge": self.bridge,
            "inbound": asdict(self.inbound) if self.inbound else None,
            "outbound": asdict(self.outbound) if self.outbound else None,
            "uplink": asdict(self.uplink) if self.uplink else None,
            "sources": dict(self.sources),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class VifFacts:
    """What the hotplug side learned about one vif, from dom0-owned sources only.

    Filled from the script's environment/argv and the backend xenstore directory
    (never the guest's frontend directory, which the guest owns and may write
    anything in), or from
    ``vif-qos plan``'s options. ``xen_rate`` is the backend ``rate`` key exactly as
    libxl writes it, ``"<bytes_per_interval>,<interval_us>"``, or ``None`` when the
    vif has no ``rate=``; ``xen_rate_source`` says where it was read
    (``"xenstore:backend/vif/3/0/rate"``, ``"--xen-rate"``).
    """

    vif: str
    devid: int
    bridge: str = DEFAULT_BRIDGE
    domid: Optional[int] = None
    domain_name: Optional[str] = None
    domain_uuid: Optional[str] = None
    mac: Optional[str] = None
    xen_rate: Optional[str] = None
    xen_rate_source: str = "xenstore"
