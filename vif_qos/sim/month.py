"""A simulated billing month for auto-overage: 20 guests with known traffic, a few heavy,
5-minute steps of an injected clock, no kernel. Used by benchmarks/bench_billing.py
(the table) and tests/test_overage_month.py (the outcome).

Traffic (deterministic for a seed; rates are what each guest *wants* to send, bits/s):

- light guests: a base of 0.1-0.3 Mbit/s times a daily curve (x0.5 at night .. x2 in
  the evening) with +-20 % noise;
- heavy guests: 0.3 Mbit/s, and 6 Mbit/s during a 3-hour batch window each day (each
  guest its own hour) plus a 30-minute burst on 2 of 7 days.

The "kernel" of the simulation: a guest in the overage pool gets its demand scaled so
that the pool's members together stay within the pool's ceil (HTB shares what the
pool may borrow; proportional is close enough for 5-minute averages). Each step
carries out what :func:`vif_qos.core.overage.decide` returns, as ``vif-qos record``
does through the override commands; its inputs come from the rates of the steps so
far, as the usage database would give them.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from vif_qos.core import billing
from vif_qos.core.overage import GuestLoad, OverageSettings, decide

MBIT = 1_000_000
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass
class MonthResult:
    """One simulated month: the total's and each guest's 95th (max of in and out is
    out here: the model only has outbound traffic), the share of slots above target,
    the moves made, and the slot rates (for a CSV or a plot)."""

    auto_overage: bool
    total_p95_bits_per_s: float
    slots_above_target: int
    slots: int
    moves: List[Tuple[int, str, str]] = field(default_factory=list)
    guest_p95_bits_per_s: Dict[str, float] = field(default_factory=dict)
    rates: Dict[str, List[float]] = field(default_factory=dict)
    delivered_bytes: int = 0


def demand_model(guests: int = 20, heavy: int = 3, seed: int = 1):
    """name -> function(slot index) -> wanted bits/s."""
    rnd = random.Random(seed)
    model = {}
    for i in range(guests - heavy):
        base = rnd.uniform(0.1, 0.3) * MBIT
        noise = [rnd.uniform(0.8, 1.2) for _ in range(997)]

        def light(k, base=base, noise=noise):
            hour = (k * 300 % 86400) / 3600
            curve = 1.25 + 0.75 * math.sin((hour - 14) / 24 * 2 * math.pi)
            return base * curve * noise[k % 997]
        model[f"light{i + 1:02d}"] = light
    for h in range(heavy):
        start_hour = 2 + 7 * h
        burst_days = {d for d in range(31) if rnd.random() < 2 / 7}

        def heavy_fn(k, start_hour=start_hour, burst_days=burst_days, h=h):
            day, sec = divmod(k * 300, 86400)
            hour = sec / 3600
            if start_hour <= hour < start_hour + 3:
                return 6 * MBIT
            if day in burst_days and 17 + h <= hour < 17.5 + h:
                return 6 * MBIT
            return 0.3 * MBIT
        model[f"heavy{h + 1}"] = heavy_fn
    return model


def simulate_month(auto_overage: bool, days: int = 31, guests: int = 20, heavy: int = 3,
                   target_bits_per_s: int = 10 * MBIT, pool_ceil_bits_per_s: int = 2 * MBIT,
                   cooldown_s: int = 3600, seed: int = 1) -> MonthResult:
    """Run the month slot by slot (see the module doc)."""
    model = demand_model(guests, heavy, seed)
    names = sorted(model)
    settings = OverageSettings(target_bits_per_s, "overage", pool_ceil_bits_per_s, cooldown_s)
    n_slots = days * 86400 // billing.SLOT_S
    period_end = T0 + n_slots * billing.SLOT_S
    in_pool: Dict[str, int] = {}
    rates: Dict[str, List[float]] = {n: [] for n in names}
    totals: List[float] = []
    totals_sorted: List[float] = []   # the same, kept sorted (decide sorts it again: O(n))
    moves: List[Tuple[int, str, str]] = []
    window = cooldown_s // billing.SLOT_S + 1
    for k in range(n_slots):
        want = {n: model[n](k) for n in names}
        pooled = sum(want[n] for n in in_pool)
        scale = min(1.0, pool_ceil_bits_per_s / pooled) if pooled else 1.0
        got = {n: want[n] * (scale if n in in_pool else 1.0) for n in names}
        for n in names:
            rates[n].append(got[n])
        totals.append(sum(got.values()))
        bisect.insort(totals_sorted, totals[-1])
        if not auto_overage:
            continue
        now = T0 + (k + 1) * billing.SLOT_S   # the record run at the end of slot k
        loads = [GuestLoad(f"{n}:0", tuple((T0 + j * billing.SLOT_S, rates[n][j])
                                           for j in range(max(0, k + 1 - window), k + 1)),
                           n in in_pool, in_pool.get(n)) for n in names]
        for d in decide(now, period_end, totals_sorted, loads, settings):
            name = d.target.split(":")[0]
            if d.action == "assign":
                in_pool[name] = now
            else:
                in_pool.pop(name, None)
            moves.append((now, d.action, d.target))
    p95 = billing.nearest_rank(totals) or 0.0
    return MonthResult(
        auto_overage, p95, sum(1 for t in totals if t > target_bits_per_s), n_slots, moves,
        {n: billing.nearest_rank(rates[n]) or 0.0 for n in names}, rates,
        int(sum(totals) * billing.SLOT_S / 8))


def samples_csv(result: MonthResult) -> str:
    """The month as ``report --samples`` input: cumulative out-bytes per guest."""
    lines = [",".join(["time", "domain", "devid", "in_bytes", "out_bytes"])]
    names = sorted(result.rates)
    counters = {n: 0 for n in names}
    for k in range(result.slots + 1):
        for n in names:
            lines.append(f"{T0 + k * billing.SLOT_S},{n},0,0,{counters[n]}")
            if k < result.slots:
                counters[n] += int(result.rates[n][k] * billing.SLOT_S / 8)
    return "\n".join(lines) + "\n"
