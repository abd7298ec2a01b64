"""The host policy as plain data: what :mod:`vif_qos.config.policy` builds from the
policy file (or the built-in defaults where it says nothing) and what
:mod:`vif_qos.core.resolve` reads. No I/O here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from vif_qos.constants import ETH_HLEN_BYTES, U32_MAX
from vif_qos.core import spec as specmod
from vif_qos.model import HostSettings, VifFacts

#: The source named for a value no file set.
BUILTIN = "built-in default"

#: The kernel keeps TBF bucket times in u32 nanoseconds when given as time
#: (net/sched/sch_tbf.c: ``buffer = min_t(u64, PSCHED_TICKS2NS(qopt->buffer), ~0U)``).
KERNEL_MAX_BUCKET_US = U32_MAX // 1000


@dataclass(frozen=True)
class BridgeSettings:
    """One bridge's uplink: ``uplink`` device (``None`` = auto), the uplink's rate
    (the HTB root class) and the default class's rate/ceil (``None`` = built-in:
    1/10 of the uplink rate, and the uplink rate)."""

    name: str
    uplink: Optional[str]
    rate_bits_per_s: int
    default_rate_bits_per_s: Optional[int]
    default_ceil_bits_per_s: Optional[int]
    sources: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolSettings:
    """A pool: an HTB class on every uplink (minor from 0x10, allocated by the kernel side); member defaults."""

    name: str
    index: int
    rate_bits_per_s: int
    ceil_bits_per_s: Optional[int]
    member_rate_bits_per_s: Optional[int]
    member_ceil_bits_per_s: Optional[int]
    source: str
    sources: Dict[str, str] = field(default_factory=dict)

    @property
    def effective_ceil_bits_per_s(self) -> int:
        return self.ceil_bits_per_s or self.rate_bits_per_s


@dataclass(frozen=True)
class DomainEntry:
    """A ``[domains]`` entry: how it matches (``kind``, ``pattern``) and its qos keys."""

    kind: str
    pattern: str
    spec: Dict[str, specmod.SpecValue]
    source: str

    def matches(self, facts: VifFacts) -> bool:
        """True when this entry applies to the vif described by ``facts``."""
        if self.kind == "name":
            return facts.domain_name is not None and fnmatch.fnmatchcase(facts.domain_name,
                                                                         self.pattern)
        if self.kind == "uuid":
            return facts.domain_uuid is not None and \
                facts.domain_uuid.strip().lower() == self.pattern.lower()
        if self.kind == "mac":
            return facts.mac is not None and facts.mac.strip().lower() == self.pattern.lower()
        return fnmatch.fnmatchcase(facts.vif, self.pattern)


@dataclass(frozen=True)
class BillingSettings:
    """``[billing]``: where a month's period starts (``day`` 1..28, UTC), the 95th
    ``target_bits_per_s`` (None: none set), the overage pool's name, whether
    auto-overage acts, its ``cooldown_s``, and how long samples are kept."""

    day: int = 1
    target_bits_per_s: Optional[int] = None
    overage_pool: str = "overage"
    auto_overage: bool = False
    cooldown_s: int = 3600
    retention_s: int = 400 * 86400


@dataclass
class Policy:
    """The resolved host policy (built-in defaults where the file says nothing).

    ``sources`` maps setting names (``"host.mtu"``, ``"bridges.xenbr0.rate"``) to
    ``file:line`` or ``"built-in default"``.
    """

    path: Optional[str] = None
    host: HostSettings = field(default_factory=HostSettings)
    domain_config_dirs: List[str] = field(default_factory=lambda: ["/etc/xen/auto", "/etc/xen"])
    xen_rate_inbound: bool = True
    xen_rate_outbound: bool = True
    mtu_bytes: int = 1500
    max_burst_time_us: int = 1_000_000
    leaf_qdisc: str = "auto"
    bridge_defaults: BridgeSettings = field(default_factory=lambda: BridgeSettings(
        "*", None, 10 ** 9, None, None))
    bridges: Dict[str, BridgeSettings] = field(default_factory=dict)
    defaults: Dict[str, specmod.SpecValue] = field(default_factory=dict)
    pools: Dict[str, PoolSettings] = field(default_factory=dict)
    domains: List[DomainEntry] = field(default_factory=list)
    billing: BillingSettings = field(default_factory=BillingSettings)
    sources: Dict[str, str] = field(default_factory=dict)

    @property
    def frame_bytes(self) -> int:
        """One full frame: MTU plus the 14-byte Ethernet header."""
        return self.mtu_bytes + ETH_HLEN_BYTES

    def source(self, name: str) -> str:
        return self.sources.get(name, BUILTIN)

    def bridge(self, name: str) -> BridgeSettings:
        """Settings for bridge ``name`` (its own subsection, else the [bridges] defaults)."""
        found = self.bridges.get(name)
        if found is not None:
            return found
        d = self.bridge_defaults
        return BridgeSettings(name, d.uplink, d.rate_bits_per_s, d.default_rate_bits_per_s,
                              d.default_ceil_bits_per_s, dict(d.sources))

    def matching_entries(self, facts: VifFacts) -> List[DomainEntry]:
        """The ``[domains]`` entries that apply to ``facts``, in file order."""
        return [entry for entry in self.domains if entry.matches(facts)]
