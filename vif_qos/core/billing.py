"""Burstable billing arithmetic: counter increases, 5-minute rates, the 95th percentile,
billing periods and the projection of a period's 95th. Pure: no clock, no I/O.

The rules (README.rst, "Usage and the 95th percentile"):

- A *sample* is one reading of a vif's cumulative byte counters. Consecutive samples
  of one series (one vif netdev of one guest) make an *interval*.
- Counter increase, as Prometheus's ``rate()`` counts it: ``cur - prev`` when the
  counter did not go down, else ``cur`` (the counter restarted from 0, the vif was
  recreated). A change of the netdev instance (another domid or ifindex) or of the
  boot is a restart even when the new counter happens to be higher.
- Interval length: when both samples come from the same boot, the difference of the
  boot-time clock (``CLOCK_BOOTTIME``: never steps); else of the wall clock. A wall
  clock step therefore neither makes a negative nor a huge rate.
- Gaps stay gaps: an interval longer than :data:`MAX_INTERVAL_S` gives no rate (its
  bytes still count in the byte totals); nothing is interpolated.
- Slots: each interval's rate lands in the 5-minute slot (:data:`SLOT_S`, aligned to
  the epoch) that holds its midpoint; several intervals in one slot are merged
  (bytes / seconds). A guest's rate in a slot is the sum of its series' rates; the
  total's is the sum of the guests' rates in that slot.
- The 95th: the slots' rates sorted ascending, the value at 1-based position
  ``ceil(0.95 * n)`` (nearest rank); see :func:`nearest_rank`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from typing import Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

from vif_qos.errors import InputError

#: The billing industry's sample period: one rate per 5 minutes.
SLOT_S = 300
#: An interval longer than this (2.5 slots: one missed timer run is tolerated) is a gap.
MAX_INTERVAL_S = 750
#: The percentile burstable billing charges.
BILLING_PERCENT = 95


# --- the percentile ---------------------------------------------------------------

def rank_position(n: int, percent: int = BILLING_PERCENT) -> int:
    """The 1-based nearest-rank position ``ceil(percent/100 * n)`` in exact integers
    (``n`` = 20 -> 19, 21 -> 20, 8640 -> 8208, 8928 -> 8482).

    :raises ValueError: ``n`` < 1 or ``percent`` outside 1..100.
    """
    if n < 1:
        raise ValueError("no values")
    if not 1 <= percent <= 100:
        raise ValueError(f"percent {percent} outside 1..100")
    return -(-percent * n // 100)


def nearest_rank(values: Sequence[float], percent: int = BILLING_PERCENT) -> Optional[float]:
    """The ``percent``-th percentile of ``values`` by nearest rank: sorted ascending,
    the value at 1-based position ``ceil(percent/100 * n)``. ``None`` when empty
    (a period without one complete slot has no 95th)."""
    if not values:
        return None
    return sorted(values)[rank_position(len(values), percent) - 1]


# --- counters and intervals -------------------------------------------------------

def counter_increase(previous: int, current: int) -> int:
    """How much a cumulative counter grew: ``current - previous``, or ``current`` when
    it went down (a restart from 0), as Prometheus's ``rate()``/``increase()`` count
    it. Exact for 64-bit counters (Python integers do not wrap)."""
    if current >= previous:
        return current - previous
    return current


@dataclass(frozen=True)
class Sample:
    """One reading of one series' cumulative counters.

    ``series``: any hashable naming the series (one netdev of one guest);
    ``wall_s``: wall-clock time, unix seconds; ``boot_id`` and ``uptime_s``
    (``CLOCK_BOOTTIME`` seconds) place it on a clock that does not step within a boot;
    ``instance``: what identifies the netdev incarnation (e.g. ``"domid/ifindex"``);
    ``in_bytes`` toward the guest, ``out_bytes`` from it.
    """

    series: Hashable
    wall_s: float
    in_bytes: int
    out_bytes: int
    boot_id: str = ""
    uptime_s: Optional[float] = None
    instance: str = ""


@dataclass(frozen=True)
class Interval:
    """Between two consecutive samples of one series: ``start_s``..``end_s`` (wall,
    end = the later sample's wall time, start = end - duration), the bytes that
    passed, whether a counter restarted, and whether it is a gap (no rate)."""

    series: Hashable
    start_s: float
    end_s: float
    in_bytes: int
    out_bytes: int
    restarted: bool = False
    gap: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def intervals(samples: Iterable[Sample], max_interval_s: float = MAX_INTERVAL_S) -> List[Interval]:
    """The intervals between consecutive samples of each series.

    Samples are taken in the order given within a series (the order they were
    recorded in; wall times may step backwards). A pair whose length is not positive
    is skipped (no clock to trust); longer than ``max_interval_s`` is a gap.
    """
    last: Dict[Hashable, Sample] = {}
    out: List[Interval] = []
    for s in samples:
        prev = last.get(s.series)
        last[s.series] = s
        if prev is None:
            continue
        same_boot = bool(s.boot_id) and s.boot_id == prev.boot_id \
            and s.uptime_s is not None and prev.uptime_s is not None
        duration = (s.uptime_s - prev.uptime_s) if same_boot else (s.wall_s - prev.wall_s)
        if duration <= 0:
            continue
        restarted = (s.instance != prev.instance or s.boot_id != prev.boot_id
                     or s.in_bytes < prev.in_bytes or s.out_bytes < prev.out_bytes)
        if restarted:
            in_b, out_b = s.in_bytes, s.out_bytes
        else:
            in_b = counter_increase(prev.in_bytes, s.in_bytes)
            out_b = counter_increase(prev.out_bytes, s.out_bytes)
        out.append(Interval(s.series, s.wall_s - duration, s.wall_s, in_b, out_b,
                            restarted=restarted, gap=duration > max_interval_s))
    return out


def slot_of(time_s: float, slot_s: int = SLOT_S) -> int:
    """The start (unix seconds) of the slot holding ``time_s``."""
    return int(time_s // slot_s) * slot_s


#: slot start -> (in bits/s, out bits/s)
SlotRates = Dict[int, Tuple[float, float]]


def series_slot_rates(ivals: Iterable[Interval], slot_s: int = SLOT_S) -> Dict[Hashable, SlotRates]:
    """Per series, per slot: the average rates in bits/s of the intervals whose
    midpoint lies in the slot (gaps excluded)."""
    acc: Dict[Hashable, Dict[int, List[float]]] = {}
    for iv in ivals:
        if iv.gap:
            continue
        slot = slot_of((iv.start_s + iv.end_s) / 2, slot_s)
        cell = acc.setdefault(iv.series, {}).setdefault(slot, [0.0, 0.0, 0.0])
        cell[0] += iv.in_bytes
        cell[1] += iv.out_bytes
        cell[2] += iv.duration_s
    return {series: {slot: (c[0] * 8 / c[2], c[1] * 8 / c[2]) for slot, c in slots.items()}
            for series, slots in acc.items()}


def sum_slot_rates(parts: Iterable[SlotRates]) -> SlotRates:
    """Slot-wise sum of several series' (or guests') rates; a slot exists when any
    part has it."""
    total: Dict[int, Tuple[float, float]] = {}
    for rates in parts:
        for slot, value in rates.items():
            have = total.get(slot)
            total[slot] = value if have is None else (have[0] + value[0], have[1] + value[1])
    return dict(sorted(total.items()))


@dataclass(frozen=True)
class DirectionStats:
    """One direction over a period: bytes, average rate (bytes * 8 / covered seconds)
    and the 95th of the slot rates, in bits/s (None: no complete slot)."""

    bytes: int
    avg_bits_per_s: Optional[float]
    p95_bits_per_s: Optional[float]


@dataclass(frozen=True)
class Stats:
    """A guest, uplink or the total over a period. ``p95_bits_per_s`` is the 95th of
    max(in, out) per slot (what burstable billing charges) and ``p95_slot`` the slot
    that has it (:func:`percentile_slot`); ``slots`` how many slots have a rate out
    of ``slots_expected``; ``gaps`` the missing runs as (from, to)."""

    inbound: DirectionStats
    outbound: DirectionStats
    p95_bits_per_s: Optional[float]
    slots: int
    slots_expected: int
    gaps: Tuple[Tuple[int, int], ...] = ()
    p95_slot: Optional[int] = None

    @property
    def coverage(self) -> float:
        return self.slots / self.slots_expected if self.slots_expected else 0.0


def expected_slots(from_s: float, to_s: float, slot_s: int = SLOT_S) -> List[int]:
    """The slot starts whose slot lies within ``from_s``..``to_s``."""
    first = -(-int(from_s) // slot_s) * slot_s
    return list(range(first, int(to_s) - slot_s + 1, slot_s))


def percentile_slot(rates: SlotRates, slots: Iterable[int],
                    percent: int = BILLING_PERCENT) -> Optional[int]:
    """Of ``slots`` (each must have a rate in ``rates``), the one whose max(in, out)
    is the nearest-rank ``percent``-th (:func:`nearest_rank`, slots sorted by rate,
    then by time: of equal rates, the later slot ranks higher); None when there is
    none. The one ranking of the 95th: :func:`stats`
    takes the value from this slot, so "the slot of the 95th" and "the 95th"
    never disagree."""
    order = sorted(slots, key=lambda s: (max(rates[s]), s))
    if not order:
        return None
    return order[rank_position(len(order), percent) - 1]


def stats(rates: SlotRates, in_bytes: int, out_bytes: int, from_s: float, to_s: float,
          slot_s: int = SLOT_S, percent: int = BILLING_PERCENT) -> Stats:
    """Summarise one guest/uplink/total: ``rates`` its slot rates within the period,
    ``in_bytes``/``out_bytes`` the bytes counted in the period. Only the complete
    slots inside ``from_s``..``to_s`` (:func:`expected_slots`; ``to_s`` no later
    than now for a running period) count for the averages and the 95th: a slot cut
    by the period's start or end, or still running, is not a 5-minute average."""
    want = expected_slots(from_s, to_s, slot_s)
    have = [s for s in want if s in rates]
    gaps: List[Tuple[int, int]] = []
    for slot in want:
        if slot not in rates:
            if gaps and gaps[-1][1] == slot:
                gaps[-1] = (gaps[-1][0], slot + slot_s)
            else:
                gaps.append((slot, slot + slot_s))
    ins = [rates[s][0] for s in have]
    outs = [rates[s][1] for s in have]
    top = percentile_slot(rates, have, percent)

    def avg(values):
        return sum(values) / len(values) if values else None

    return Stats(DirectionStats(in_bytes, avg(ins), nearest_rank(ins, percent)),
                 DirectionStats(out_bytes, avg(outs), nearest_rank(outs, percent)),
                 None if top is None else max(rates[top]), len(have), len(want),
                 tuple(gaps), top)


# --- billing periods --------------------------------------------------------------

def period_bounds(year: int, month: int, day: int = 1) -> Tuple[int, int]:
    """The billing period named ``YYYY-MM`` when periods start on ``day`` (1..28) of a
    month, in UTC: ``[year-month-day 00:00, next month's day 00:00)``, unix seconds."""
    start = calendar.timegm((year, month, day, 0, 0, 0))
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    return start, calendar.timegm((ny, nm, day, 0, 0, 0))


def period_containing(time_s: float, day: int = 1) -> Tuple[int, int]:
    """The billing period (see :func:`period_bounds`) that holds ``time_s``."""
    import time as _time

    t = _time.gmtime(time_s)
    year, month = t.tm_year, t.tm_mon
    if t.tm_mday < day:
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return period_bounds(year, month, day)


def parse_period(text: str, day: int = 1, source: str = "--period") -> Tuple[int, int]:
    """``YYYY-MM`` -> :func:`period_bounds`. :raises InputError: malformed."""
    match = re.fullmatch(r"([0-9]{4})-([0-9]{2})", text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise InputError("not a billing period YYYY-MM", token=text, source=source)
    return period_bounds(int(match.group(1)), int(match.group(2)), day)


# --- projection -------------------------------------------------------------------

def project_p95(rates_so_far: Sequence[float], current_bits_per_s: float,
                slots_remaining: int, percent: int = BILLING_PERCENT) -> Optional[float]:
    """The period's 95th if the rest of the period ran at the current rate: the
    nearest-rank percentile of the slots so far plus ``slots_remaining`` copies of
    ``current_bits_per_s``. ``None`` when there is neither."""
    n = len(rates_so_far) + max(0, slots_remaining)
    if n == 0:
        return None
    position = rank_position(n, percent)
    so_far = sorted(rates_so_far)
    # Merge without building the whole list: the value at `position` of the union.
    below = sum(1 for r in so_far if r < current_bits_per_s)
    rest = max(0, slots_remaining)
    if position <= below:
        return so_far[position - 1]
    if position <= below + rest:
        return current_bits_per_s
    return so_far[position - rest - 1]
