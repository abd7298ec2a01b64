"""From the admin's inputs to one validated :class:`~vif_qos.model.VifPlan` per vif.

:func:`plan_vif` is pure: no file, kernel or xenstore access.
:func:`plan_for_facts` adds the one piece of I/O, finding the domain's xl config
file and its ``qos = [...]`` entry.

Precedence, later wins (each value remembers its source in ``VifPlan.sources``):

1. built-in defaults (``latency=50ms``; everything else derived below);
2. the policy file's ``[defaults]``;
3. the vif's pool: ``member_rate`` as ``rate_out`` (default: the pool's rate/100)
   and ``member_ceil`` as ``ceil`` (default: the pool's ceil);
4. the vif's Xen ``rate=`` (backend xenstore key ``rate``) as ``rate_in`` and
   ``rate_out`` (each switchable off in ``[host]``: ``xen_rate_inbound``,
   ``xen_rate_outbound``);
5. the domain config file's ``qos = [...]`` entry for the devid;
6. the policy's matching ``[domains]`` entries, in file order;
7. the operator's overrides (``vif-qos set``/``assign``, the overrides file
   ``$VIF_QOS_STATE_DIR/overrides.conf``) that match the vif and have not expired,
   in the order given (:mod:`vif_qos.config.overrides` orders them domain, then
   ``NAME:DEVID``, then vif name: the narrower wins).

Derived values (each rule's source in brackets; frame = host mtu + 14 bytes of
Ethernet header; HZ = 100):

- TBF ``burst`` (inbound): max(rate/HZ bytes, frame) [tc-tbf(8): "the minimum
  buffer size can be calculated by dividing the rate by HZ"; sch_tbf.c warns
  when the bucket is below the device MTU].
- HTB ``burst``/``cburst``: rate/HZ + max(1600, frame) and ceil/HZ + the same
  [iproute2 tc/q_htb.c: ``buffer = rate64 / get_hz() + mtu`` with mtu 1600;
  get_hz() reads /proc/net/psched, which says 10**9 on high-resolution-timer
  kernels and shrinks tc's burst to one MTU, too small at Gbit rates, so
  vif-qos fixes HZ at 100 as tc-tbf(8) does].
- any bucket (given or derived) is at least one frame and at most
  ``max_burst_time`` of traffic at its rate (default 1 s; the kernel keeps TBF
  bucket times in 32-bit nanoseconds, 4.29 s, sch_tbf.c ``tbf_change``); a rate
  too slow to pass one frame within 4.29 s is refused.
- TBF ``limit`` from ``latency``: max(rate*latency, the largest packet the TBF
  queues whole), that packet being the smallest of the burst, the minburst (with
  a peak) and one GSO packet as tc counts it (see the leaf qdisc below): TBF
  splits a GSO packet longer than its buckets into segments and queues those
  (sch_tbf.c ``tbf_segment``). The queue drains at the rate, so a packet waits
  at most max(latency, that packet's time at the rate). (tc's own
  rate*latency + burst, tc/q_tbf.c, lets it wait latency + burst/rate: 60 ms at
  100 Mbit/s for latency 50 ms.) At most 2**32-1 bytes (tc_tbf_qopt.limit is
  u32); at least one frame.
- TBF ``latency`` from a given ``limit``: limit/rate.
- TBF ``minburst`` when a peak is given: one frame [tc/q_tbf.c refuses a
  peakrate without mtu/minburst]; the peak must exceed the rate [sch_tbf.c:
  "peakrate ... is lower than or equals to rate", EINVAL].
- HTB ``ceil``: the rate [tc-htb(8)], raised to the rate if below it, lowered
  to the parent's ceil (pool or uplink rate) if above it.
- the leaf qdisc under each HTB class that queues (a guest's leaf, the default
  class), from the same ``latency`` as the TBF [README "Measuring shaping"]:
  bfifo ``limit`` = max(rate * latency + 64 KiB, one GSO packet as tc counts
  it): a packet waits at most latency + one 64 KiB packet's time at the rate
  (measured: with only max(rate * latency, one GSO packet) a single TCP flow
  at 10 Mbit/s loses whole GSO packets and reaches 0.90 of the rate, with
  this 0.97; README "Measuring shaping"). One GSO packet: 64 KiB (GSO_LEGACY_MAX_SIZE, the netdev default
  ``gso_max_size``, include/linux/netdevice.h) plus one Ethernet + IPv6 + TCP
  header with timestamps (86 bytes) for each further segment, as
  ``qdisc_pkt_len_init`` (net/core/dev.c) counts it: 69406 bytes at mtu 1500. A
  smaller queue refuses such a packet whatever its backlog (sch_fifo.c
  ``bfifo_enqueue``). fq_codel: ``target`` = max(latency/10, one frame at the
  rate), ``interval`` = 2 * latency (tc-fq_codel(8)'s 5 ms / 100 ms at the
  built-in 50 ms). Sized at the class's rate (its guaranteed drain rate), so the
  bound holds when it cannot borrow.
- HTB ``quantum``: rate/10 bytes (r2q 10) kept within [frame, 200000]
  [sch_htb.c htb_change_class: outside 1000..200000 the kernel clamps and warns
  "quantum of class ... is small/big. Consider r2q change"; an explicit quantum
  is not checked by the kernel, so vif-qos clamps it and says so].

Every correction is one line in ``VifPlan.notes``. A combination that has no
safe correction (a peak not above the rate, or a ceil below the rate, both
written in the same place) raises :class:`~vif_qos.errors.InputError`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

from vif_qos.core import spec as specmod
from vif_qos.core import units
from vif_qos.constants import ETH_HLEN_BYTES, U32_MAX
from vif_qos.core import xenrate
from vif_qos.errors import InputError
from vif_qos.model import (ClassPlan, InboundPlan, LeafQdiscPlan, OutboundPlan, UplinkPlan,
                           VifFacts, VifPlan)
from vif_qos.core.settings import BUILTIN, Policy, PoolSettings
from vif_qos.core.sizing import (GSO_MAX_BYTES, gso_packet_wire_bytes, rate_floor_problem,
                                 seconds_text)

HZ = 100
HTB_MTU_BYTES = 1600
R2Q = 10
QUANTUM_MAX_BYTES = 200_000
DEFAULT_LATENCY_US = 50_000
POOL_MEMBER_SHARE = 100

#: Layer names, lowest precedence first.
LAYERS = ("built-in", "policy defaults", "pool", "xen rate", "domain qos", "policy entry",
          "override")


def _whole_bytes(bits: int) -> int:
    """Round a derived rate down to whole bytes per second, at least 8 bit/s."""
    return max(8, bits // 8 * 8)


class _Resolver:
    def __init__(self, facts: VifFacts, policy: Policy):
        self.facts = facts
        self.policy = policy
        self.frame = policy.frame_bytes
        self.notes: List[str] = []
        self.sources: Dict[str, str] = {}
        self.layers: List[Tuple[Tuple[int, int], Dict[str, specmod.SpecValue]]] = []

    # -- layers -----------------------------------------------------------------
    def add_layer(self, name: str, values: Dict[str, specmod.SpecValue]) -> None:
        """Add a layer; layers of the same name rank in the order added."""
        self.layers.append(((LAYERS.index(name), len(self.layers)), values))
        self.layers.sort(key=lambda pair: pair[0])

    def get(self, key: str) -> Tuple[Optional[specmod.SpecValue], Tuple[int, int]]:
        """(highest-precedence value, its layer rank) or (None, (-1, -1))."""
        for rank, values in reversed(self.layers):
            if key in values:
                return values[key], rank
        return None, (-1, -1)

    # -- buckets ------------------------------------------------------------------
    def check_rate_floor(self, item: specmod.SpecValue, what: str) -> None:
        rate = item.value
        assert isinstance(rate, int)
        problem = rate_floor_problem(rate, self.frame)
        if problem is not None:
            raise InputError(f"{what} is too slow: {problem}", token=item.token,
                             source=item.source)

    def bucket(self, name: str, item: Optional[specmod.SpecValue], derived: int,
               derived_rule: str, rate_bits_per_s: int, rate_word: str) -> int:
        """A bucket size: given (``item``) or derived; floored at one frame and
        capped at max_burst_time of traffic; records source and notes."""
        cap_time_us = self.policy.max_burst_time_us
        cap = max(self.frame, rate_bits_per_s // 8 * cap_time_us // 1_000_000)
        if item is None:
            value = min(max(derived, self.frame), cap)
            self.sources[name] = f"derived: {derived_rule}"
            if value != derived and derived >= self.frame:
                self.sources[name] += f", capped at max_burst_time " \
                                      f"{units.format_time(cap_time_us)}"
            return value
        value = item.value
        assert isinstance(value, int)
        self.sources[name] = item.source
        if value < self.frame:
            self.notes.append(
                f"{name.split('.')[0]} {item.written_as} {item.token} ({item.source}) is "
                f"below one full frame ({self.frame} bytes = mtu {self.policy.mtu_bytes} + "
                f"{ETH_HLEN_BYTES}): the kernel warns and drops full-size frames; corrected to "
                f"{self.frame} bytes")
            self.sources[name] = f"corrected ({item.source}): at least one full frame"
            return self.frame
        if value > cap:
            self.notes.append(
                f"{name.split('.')[0]} {item.written_as} {item.token} ({item.source}) is "
                f"{seconds_text(value, rate_bits_per_s)} of traffic at {rate_word}: corrected to "
                f"{cap} bytes (max_burst_time {units.format_time(cap_time_us)}, "
                f"{self.policy.source('host.max_burst_time')})")
            self.sources[name] = f"corrected ({item.source}): at most max_burst_time " \
                                 f"{units.format_time(cap_time_us)} at {rate_word}"
            return cap
        return value

    def direction_rate(self, direction: str, rate_key: str, dependent_keys: Tuple[str, ...],
                       quiet_layer: Optional[str] = None
                       ) -> Optional[Tuple[int, specmod.SpecValue, Tuple[int, int]]]:
        """``(rate_bits_per_s, its value, its layer rank)`` of ``direction``
        (``"inbound"``/``"outbound"``), checked against the rate floor; None when it
        is not shaped, with a note for each of ``dependent_keys`` given anyway
        (except from the layer ``quiet_layer``).

        :raises InputError: the rate is too slow (:func:`rate_floor_problem`).
        """
        rate_item, rate_layer = self.get(rate_key)
        if rate_item is None or rate_item.value is None:
            for key in dependent_keys:
                item, layer = self.get(key)
                if item is not None and LAYERS[layer[0]] != quiet_layer:
                    self.notes.append(f"{direction} {item.written_as} {item.token} "
                                      f"({item.source}) has no effect: {direction} is not "
                                      f"shaped")
            return None
        rate = rate_item.value
        assert isinstance(rate, int)
        self.check_rate_floor(rate_item, f"{direction} rate")
        self.sources[f"{direction}.rate_bits_per_s"] = rate_item.source
        return rate, rate_item, rate_layer

    # -- inbound ------------------------------------------------------------------
    def inbound(self) -> Optional[InboundPlan]:
        """The TBF of the vif: rate and burst here, then the peak bucket
        (:meth:`_inbound_peak`) and the queue (:meth:`_inbound_queue`)."""
        shaped = self.direction_rate("inbound", "rate_in", ("peak", "minburst", "limit"))
        if shaped is None:
            return None
        rate, rate_item, rate_layer = shaped
        word = units.format_rate(rate)

        burst_item, _ = self.get("burst")
        burst = self.bucket("inbound.burst_bytes", burst_item, rate // 8 // HZ,
                            f"max(rate/{HZ} (tc-tbf(8)), one frame {self.frame})", rate, word)
        peak, minburst = self._inbound_peak(rate, rate_item, rate_layer)
        limit, latency = self._inbound_queue(rate, burst, peak, minburst)
        return InboundPlan(rate_bits_per_s=rate, burst_bytes=burst, latency_us=latency,
                           limit_bytes=limit, peak_bits_per_s=peak, minburst_bytes=minburst)

    def _inbound_peak(self, rate: int, rate_item: specmod.SpecValue,
                      rate_layer: Tuple[int, int]) -> Tuple[Optional[int], Optional[int]]:
        """(peak_bits_per_s, minburst_bytes), both None without a usable peak."""
        word = units.format_rate(rate)
        peak_item, peak_layer = self.get("peak")
        peak: Optional[int] = None
        minburst: Optional[int] = None
        if peak_item is not None:
            assert isinstance(peak_item.value, int)
            if peak_item.value <= rate:
                if peak_layer == rate_layer:
                    raise InputError(
                        f"peak must be above rate_in {word} (sch_tbf.c refuses a peakrate "
                        f"lower than or equal to the rate)", token=peak_item.token,
                        source=peak_item.source)
                self.notes.append(
                    f"inbound {peak_item.written_as} {peak_item.token} ({peak_item.source}) "
                    f"is not above rate {word} ({rate_item.source}); the kernel would refuse "
                    f"it: peak dropped")
            else:
                peak = peak_item.value
                self.sources["inbound.peak_bits_per_s"] = peak_item.source
        minburst_item, _ = self.get("minburst")
        if peak is not None:
            if minburst_item is None:
                self.notes.append(
                    f"inbound peak {units.format_rate(peak)} has no minburst: tc refuses a "
                    f"peakrate without one (q_tbf.c \"mtu is required\"); using one full "
                    f"frame, {self.frame} bytes")
            minburst = self.bucket("inbound.minburst_bytes", minburst_item, self.frame,
                                   f"one full frame (mtu {self.policy.mtu_bytes} + {ETH_HLEN_BYTES})",
                                   peak, units.format_rate(peak))
        elif minburst_item is not None:
            self.notes.append(f"inbound minburst {minburst_item.token} "
                              f"({minburst_item.source}) has no effect without a peak: ignored")
        return peak, minburst

    def _inbound_queue(self, rate: int, burst: int, peak: Optional[int],
                       minburst: Optional[int]) -> Tuple[int, int]:
        """(limit_bytes, latency_us): the one given last, the other derived as
        tc/q_tbf.c does."""
        word = units.format_rate(rate)
        latency_item, latency_layer = self.get("latency")
        limit_item, limit_layer = self.get("limit")
        if limit_item is not None and (latency_item is None or limit_layer > latency_layer):
            limit = limit_item.value
            assert isinstance(limit, int)
            self.sources["inbound.limit_bytes"] = limit_item.source
            if limit < self.frame:
                self.notes.append(f"inbound limit {limit_item.token} ({limit_item.source}) "
                                  f"cannot hold one full frame: corrected to {self.frame} bytes")
                limit = self.frame
                self.sources["inbound.limit_bytes"] = \
                    f"corrected ({limit_item.source}): at least one full frame"
            latency = limit * 8_000_000 // rate
            self.sources["inbound.latency_us"] = "derived: limit / rate"
        else:
            if latency_item is None:
                latency, lsource = DEFAULT_LATENCY_US, BUILTIN
            else:
                latency, lsource = latency_item.value, latency_item.source
            assert isinstance(latency, int)
            self.sources["inbound.latency_us"] = lsource
            whole = min([burst, gso_packet_wire_bytes(self.policy.mtu_bytes)]
                        + ([minburst] if minburst is not None else []))
            by_time = rate * latency // 8_000_000
            limit = max(by_time, whole, self.frame)
            rule = ("rate * latency" if limit == by_time else
                    f"the largest packet queued whole ({limit} bytes: burst, minburst or "
                    f"one GSO packet), above rate * latency")
            self.sources["inbound.limit_bytes"] = f"derived: {rule}"
            if limit > U32_MAX:
                self.notes.append(f"inbound limit for latency {units.format_time(latency)} at "
                                  f"{word} is {limit} bytes, above the kernel's 32-bit field: "
                                  f"corrected to {U32_MAX}")
                limit = U32_MAX
                self.sources["inbound.limit_bytes"] += ", capped at 2**32-1"
        return limit, latency

    # -- leaf qdiscs -------------------------------------------------------------
    def latency(self) -> Tuple[int, str]:
        """The ``latency`` setting (us) and its source; the built-in 50 ms layer is
        always there."""
        item, _ = self.get("latency")
        assert item is not None and isinstance(item.value, int)
        return item.value, item.source

    def leaf_qdisc(self, prefix: Optional[str], rate: int, latency_us: int,
                   latency_source: str) -> LeafQdiscPlan:
        """The leaf qdisc of a class of ``rate`` bits/s (see the module doc);
        records sources under ``<prefix>.leaf_qdisc.*`` when ``prefix`` is given."""
        gso = gso_packet_wire_bytes(self.policy.mtu_bytes)
        by_time = rate * latency_us // 8_000_000
        limit = max(by_time + GSO_MAX_BYTES, gso)
        frame_us = -(-self.frame * 8_000_000 // rate)
        plan = LeafQdiscPlan(kind=self.policy.leaf_qdisc, latency_us=latency_us,
                             limit_bytes=min(limit, U32_MAX),
                             target_us=max(latency_us // 10, frame_us),
                             interval_us=2 * latency_us)
        if prefix is not None:
            self.sources[f"{prefix}.leaf_qdisc.kind"] = self.policy.source("host.leaf_qdisc")
            self.sources[f"{prefix}.leaf_qdisc.latency_us"] = latency_source
            rule = ("rate * latency + 64 KiB" if limit > gso else
                    f"one 64 KiB GSO packet as tc counts it ({gso} bytes), above "
                    f"rate * latency + 64 KiB")
            self.sources[f"{prefix}.leaf_qdisc.limit_bytes"] = f"derived: {rule}"
        return plan

    # -- outbound -----------------------------------------------------------------
    def htb_buckets(self, prefix: str, rate: int, ceil: int,
                    burst_item: Optional[specmod.SpecValue],
                    cburst_item: Optional[specmod.SpecValue]) -> Tuple[int, int]:
        mtu = max(HTB_MTU_BYTES, self.frame)
        burst = self.bucket(f"{prefix}.burst_bytes", burst_item, rate // 8 // HZ + mtu,
                            f"rate/{HZ} + {mtu} (tc/q_htb.c)", rate, units.format_rate(rate))
        cburst = self.bucket(f"{prefix}.cburst_bytes", cburst_item, ceil // 8 // HZ + mtu,
                             f"ceil/{HZ} + {mtu} (tc/q_htb.c)", ceil, units.format_rate(ceil))
        return burst, cburst

    def quantum(self, prefix: str, rate: int, item: Optional[specmod.SpecValue]) -> int:
        name = f"{prefix}.quantum_bytes"
        if item is None:
            derived = rate // 8 // R2Q
            value = min(max(derived, self.frame), QUANTUM_MAX_BYTES)
            self.sources[name] = f"derived: rate/{R2Q} (r2q) within [{self.frame}, " \
                                 f"{QUANTUM_MAX_BYTES}] (sch_htb.c)"
            return value
        value = item.value
        assert isinstance(value, int)
        self.sources[name] = item.source
        clamped = min(max(value, self.frame), QUANTUM_MAX_BYTES)
        if clamped != value:
            why = "below one full frame" if value < self.frame else \
                "above 200000 (sch_htb.c's limit for a computed quantum)"
            self.notes.append(f"outbound quantum {item.token} ({item.source}) is {why}: "
                              f"corrected to {clamped} bytes")
            self.sources[name] = f"corrected ({item.source}): within [{self.frame}, " \
                                 f"{QUANTUM_MAX_BYTES}]"
        return clamped

    def class_plan(self, name: str, rate: int, ceil: int) -> ClassPlan:
        mtu = max(HTB_MTU_BYTES, self.frame)
        cap_time = self.policy.max_burst_time_us

        def bucket(r: int) -> int:
            return min(max(r // 8 // HZ + mtu, self.frame),
                       max(self.frame, r // 8 * cap_time // 1_000_000))
        quantum = min(max(rate // 8 // R2Q, self.frame), QUANTUM_MAX_BYTES)
        return ClassPlan(name, rate, ceil, bucket(rate), bucket(ceil), quantum)

    def uplink(self) -> UplinkPlan:
        bridge = self.policy.bridge(self.facts.bridge)
        uplink_rate = bridge.rate_bits_per_s
        uplink_word = units.format_rate(uplink_rate)
        root = self.class_plan("root", uplink_rate, uplink_rate)
        default_ceil = bridge.default_ceil_bits_per_s or uplink_rate
        if default_ceil > uplink_rate:
            self.notes.append(f"default class ceil {units.format_rate(default_ceil)} "
                              f"({bridge.sources.get('default_ceil', BUILTIN)}) is above the "
                              f"uplink rate {uplink_word}: corrected to it")
            default_ceil = uplink_rate
        default_rate = bridge.default_rate_bits_per_s or _whole_bytes(uplink_rate // 10)
        if default_rate > default_ceil:
            self.notes.append(f"default class rate {units.format_rate(default_rate)} "
                              f"({bridge.sources.get('default_rate', BUILTIN)}) is above its "
                              f"ceil {units.format_rate(default_ceil)}: corrected to it")
            default_rate = default_ceil
        default = self.class_plan("default", default_rate, default_ceil)
        latency_item = self.policy.defaults.get("latency")
        latency, latency_source = ((latency_item.value, latency_item.source)
                                   if latency_item is not None else (DEFAULT_LATENCY_US,
                                                                     BUILTIN))
        assert isinstance(latency, int)
        default = replace(default, leaf_qdisc=self.leaf_qdisc(
            "uplink.default", default_rate, latency, latency_source))
        pools = []
        for pool in sorted(self.policy.pools.values(), key=lambda p: p.index):
            ceil = pool.effective_ceil_bits_per_s
            if ceil > uplink_rate:
                self.notes.append(f"pool {pool.name} ceil {units.format_rate(ceil)} "
                                  f"({pool.source}) is above the uplink rate {uplink_word} of "
                                  f"{self.facts.bridge}: corrected to it")
                ceil = uplink_rate
            rate = min(pool.rate_bits_per_s, ceil)
            if rate != pool.rate_bits_per_s:
                self.notes.append(f"pool {pool.name} rate "
                                  f"{units.format_rate(pool.rate_bits_per_s)} ({pool.source}) "
                                  f"is above its ceil on {self.facts.bridge}: corrected to "
                                  f"{units.format_rate(rate)}")
            pools.append(self.class_plan(pool.name, rate, ceil))
        self.sources["uplink.rate_bits_per_s"] = bridge.sources.get("rate", BUILTIN)
        self.sources["uplink.device"] = bridge.sources.get("uplink", BUILTIN)
        return UplinkPlan(bridge=self.facts.bridge, device=bridge.uplink,
                          qdisc_major=self.policy.host.qdisc_major, root=root,
                          default=default, pools=tuple(pools))

    def outbound(self, pool_name: Optional[str], pool_source: str) -> Optional[OutboundPlan]:
        # A pool's own ceil/cburst/quantum are its members' defaults, not the vif's.
        shaped = self.direction_rate("outbound", "rate_out", ("ceil", "cburst", "quantum"),
                                     quiet_layer="pool")
        if shaped is None:
            return None
        rate, rate_item, rate_layer = shaped
        self.sources["outbound.pool"] = pool_source
        bridge = self.policy.bridge(self.facts.bridge)
        if pool_name is not None:
            pool = self.policy.pools[pool_name]
            parent_ceil = min(pool.effective_ceil_bits_per_s, bridge.rate_bits_per_s)
            parent = f"pool {pool_name}'s ceil {units.format_rate(parent_ceil)}"
        else:
            parent_ceil = bridge.rate_bits_per_s
            parent = f"uplink rate {units.format_rate(parent_ceil)} of {self.facts.bridge}"
        if rate > parent_ceil:
            self.notes.append(f"outbound rate {units.format_rate(rate)} ({rate_item.source}) "
                              f"is above the {parent}: corrected to it")
            rate = parent_ceil
            self.sources["outbound.rate_bits_per_s"] = \
                f"corrected ({rate_item.source}): at most the {parent}"

        ceil_item, ceil_layer = self.get("ceil")
        if ceil_item is None:
            ceil = rate
            self.sources["outbound.ceil_bits_per_s"] = "derived: = rate (tc-htb(8))"
        else:
            ceil = ceil_item.value
            assert isinstance(ceil, int)
            self.sources["outbound.ceil_bits_per_s"] = ceil_item.source
            if ceil < rate:
                if ceil_layer == rate_layer:
                    raise InputError(f"ceil is below rate_out {units.format_rate(rate)}",
                                     token=ceil_item.token, source=ceil_item.source)
                self.notes.append(f"outbound ceil {ceil_item.token} ({ceil_item.source}) is "
                                  f"below rate {units.format_rate(rate)} "
                                  f"({rate_item.source}): corrected to the rate")
                ceil = rate
                self.sources["outbound.ceil_bits_per_s"] = \
                    f"corrected ({ceil_item.source}): at least the rate"
        if ceil > parent_ceil:
            if ceil_item is not None:
                self.notes.append(f"outbound ceil {units.format_rate(ceil)} "
                                  f"({ceil_item.source}) is above the {parent}: corrected to it")
                self.sources["outbound.ceil_bits_per_s"] = \
                    f"corrected ({ceil_item.source}): at most the {parent}"
            ceil = parent_ceil

        burst_item, _ = self.get("burst")
        cburst_item, _ = self.get("cburst")
        burst, cburst = self.htb_buckets("outbound", rate, ceil, burst_item, cburst_item)
        quantum_item, _ = self.get("quantum")
        quantum = self.quantum("outbound", rate, quantum_item)
        leaf = self.leaf_qdisc("outbound", rate, *self.latency())
        return OutboundPlan(rate_bits_per_s=rate, ceil_bits_per_s=ceil, burst_bytes=burst,
                            cburst_bytes=cburst, quantum_bytes=quantum, pool=pool_name,
                            leaf_qdisc=leaf)


def _xen_rate_layer(facts: VifFacts, policy: Policy, notes: List[str]
                    ) -> Dict[str, specmod.SpecValue]:
    if facts.xen_rate is None:
        return {}
    bits = xenrate.parse_backend_rate(facts.xen_rate, facts.xen_rate_source)
    if bits is None:
        return {}
    if not xenrate.backend_rate_is_whole(facts.xen_rate):
        notes.append(f"Xen rate {facts.xen_rate!r} ({facts.xen_rate_source}) is not a whole "
                     f"number of bytes per second: using {units.format_rate(bits)}")
    layer = {}
    for key, enabled, switch in (("rate_in", policy.xen_rate_inbound, "xen_rate_inbound"),
                                 ("rate_out", policy.xen_rate_outbound, "xen_rate_outbound")):
        if enabled:
            layer[key] = specmod.SpecValue(key, bits, facts.xen_rate, facts.xen_rate_source,
                                           "rate")
        else:
            notes.append(f"Xen rate {units.format_rate(bits)} not used for "
                         f"{key.split('_')[1]}bound ({switch} = no, "
                         f"{policy.source('host.' + switch)})")
    return layer


def _pool_of(item: Optional[specmod.SpecValue], policy: Policy) -> Optional[str]:
    """The pool ``item`` names (None: no ``pool`` key, or ``pool = none``).

    :raises InputError: a pool the policy does not define."""
    unknown = specmod.unknown_pool(item, policy.pools)
    if unknown is not None:
        raise unknown
    return None if item is None or item.value is None else str(item.value)


def _pool_layer(pool: PoolSettings) -> Dict[str, specmod.SpecValue]:
    """The pool's layer of a member's plan: ``member_rate`` as ``rate_out``
    (default: the pool's rate/100) and ``member_ceil`` as ``ceil`` (default: the
    pool's ceil), each with its source."""
    member_rate = pool.member_rate_bits_per_s
    rate_source = pool.sources.get("member_rate")
    if member_rate is None:
        member_rate = _whole_bytes(pool.rate_bits_per_s // POOL_MEMBER_SHARE)
        rate_source = f"derived: pool {pool.name}'s rate/{POOL_MEMBER_SHARE} " \
                      f"({pool.sources.get('rate', pool.source)})"
    member_ceil = pool.member_ceil_bits_per_s or pool.effective_ceil_bits_per_s
    ceil_source = pool.sources.get("member_ceil") or pool.sources.get("ceil") \
        or pool.sources.get("rate", pool.source)
    return {
        "rate_out": specmod.SpecValue("rate_out", member_rate, units.format_rate(member_rate),
                                      str(rate_source), "member_rate"),
        "ceil": specmod.SpecValue("ceil", member_ceil, units.format_rate(member_ceil),
                                  ceil_source, "member_ceil"),
    }


def plan_vif(facts: VifFacts, policy: Policy,
             domain_qos: Optional[Tuple[str, str]] = None,
             overrides: Sequence[Dict[str, specmod.SpecValue]] = ()) -> VifPlan:
    """Resolve and validate the shaping plan of one vif. Pure.

    :param facts: what is known about the vif (dom0-owned sources only).
    :param policy: the loaded host policy.
    :param domain_qos: ``(qos spec, "file:line")`` of the domain config file's
        ``qos`` entry for ``facts.devid``, or ``None``.
    :param overrides: the operator overrides that apply to this vif (already
        matched and unexpired), lowest precedence first; each maps qos keys to
        values whose source is ``override:PATH:LINE``.
    :returns: the plan; ``inbound``/``outbound`` are ``None`` when nothing limits
        that direction. ``sources`` names where each value came from, ``notes``
        every correction.
    :raises InputError: a malformed value (Xen rate, qos spec), an unknown pool,
        or a combination with no safe correction; message names token and source.
    """
    resolver = _Resolver(facts, policy)
    notes = resolver.notes
    resolver.add_layer("built-in", {"latency": specmod.SpecValue(
        "latency", DEFAULT_LATENCY_US, "50ms", BUILTIN, "latency")})
    resolver.add_layer("policy defaults", policy.defaults)
    resolver.add_layer("xen rate", _xen_rate_layer(facts, policy, notes))
    if domain_qos is not None:
        text, where = domain_qos
        resolver.add_layer("domain qos", specmod.parse_spec(text, where))
    for entry in policy.matching_entries(facts):
        resolver.add_layer("policy entry", entry.spec)
    for layer in overrides:
        resolver.add_layer("override", layer)

    pool_item, _ = resolver.get("pool")
    pool_source = BUILTIN if pool_item is None else pool_item.source
    pool_name = _pool_of(pool_item, policy)
    if pool_name is not None:
        resolver.add_layer("pool", _pool_layer(policy.pools[pool_name]))

    inbound = resolver.inbound()
    outbound = resolver.outbound(pool_name, pool_source)
    if outbound is None and pool_name is not None:
        notes.append(f"pool {pool_name} ({pool_source}) has no effect: outbound is not shaped")
    uplink = resolver.uplink() if outbound is not None else None
    return VifPlan(vif=facts.vif, bridge=facts.bridge, inbound=inbound, outbound=outbound,
                   uplink=uplink, host=policy.host, sources=dict(resolver.sources),
                   notes=tuple(notes))


def uplink_plan(policy: Policy, bridge: str) -> UplinkPlan:
    """The shared HTB tree (root, default and pool classes) the policy gives the
    uplink of ``bridge``, as every vif's plan on that bridge carries it. Pure."""
    return _Resolver(VifFacts(vif="-", devid=0, bridge=bridge), policy).uplink()
