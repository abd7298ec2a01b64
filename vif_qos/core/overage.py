"""Auto-overage: which guests to move into the overage pool, and when to let them out.
Pure: the caller passes the clock and the recorded rates; see README.rst ("Keeping the
bill under target").

Each ``record`` run (every 5 minutes) with ``[billing] auto_overage = yes``:

1. Projection. The period's total 95th is projected as if the rest of the period ran
   at the current total rate: :func:`vif_qos.core.billing.project_p95` over the
   period's total slot rates so far (max(in, out) per slot) plus the current total
   for every slot left. The current total is estimated from each guest's latest slot
   rate, with the guests already in the pool counted together at most at the pool's
   ceil.
2. Moves in. When the projection exceeds ``target``, the guests not yet in the pool
   whose latest rate is above their fair share (``target`` / number of guests) are
   moved in, the furthest above first, until the projection with them held to the
   pool's ceil is at or below the target (or no such guest is left).
3. Moves out. A guest in the pool is let out once it has been there for ``cooldown``
   and every slot rate of its own over the last ``cooldown`` was low: below half of
   the smaller of its fair share and its share of the pool's ceil (so a guest held
   down by the pool does not count as low), and letting it out keeps the projection
   at or below the target.

A move is carried out as an operator override (``pool=<overage_pool>``, reason
``auto-overage``) that expires at the end of the billing period, and undone with
``unset`` (see :mod:`vif_qos.usage.overage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from vif_qos.core.billing import SLOT_S, expected_slots, project_p95

REASON = "auto-overage"


@dataclass(frozen=True)
class GuestLoad:
    """One guest as the decision sees it: ``target`` (``NAME:DEVID``), its recent slot
    rates (slot start, max(in, out) bits/s; oldest first, the last is its current
    rate), whether it is in the overage pool and since when (unix s)."""

    target: str
    recent: Tuple[Tuple[int, float], ...]
    in_pool: bool = False
    in_pool_since_s: Optional[float] = None

    @property
    def current_bits_per_s(self) -> float:
        return self.recent[-1][1] if self.recent else 0.0


@dataclass(frozen=True)
class OverageSettings:
    """``[billing]``: ``target_bits_per_s``, the pool's name and effective ceil, the
    ``cooldown_s``."""

    target_bits_per_s: int
    pool: str
    pool_ceil_bits_per_s: int
    cooldown_s: int


@dataclass(frozen=True)
class Decision:
    """One move: ``action`` ``assign`` (into the pool) or ``unset`` (out of it), the
    guest, the override's lifetime ``for_s`` (assign only) and why, in words."""

    action: str
    target: str
    pool: str
    for_s: Optional[int]
    reason: str


def _current_total(guests: Sequence[GuestLoad], pooled: set, pool_ceil: float) -> float:
    free = sum(g.current_bits_per_s for g in guests if g.target not in pooled)
    held = sum(g.current_bits_per_s for g in guests if g.target in pooled)
    return free + min(held, pool_ceil)


def _mbit(bits: float) -> str:
    return f"{bits / 1e6:.2f} Mbit/s"


def decide(now_s: float, period_end_s: float, total_so_far: Sequence[float],
           guests: Sequence[GuestLoad], settings: OverageSettings) -> List[Decision]:
    """The moves to make now (see the module doc). ``total_so_far``: the period's
    total max(in, out) rates of its complete slots up to now, bits/s (the slots
    :func:`vif_qos.core.billing.stats` ranks); the slot still running and every later
    one of the period are projected at the current total."""
    if not guests:
        return []
    target = settings.target_bits_per_s
    running_slot_s = int(now_s) - int(now_s) % SLOT_S
    slots_left = len(expected_slots(running_slot_s, period_end_s))
    fair = target / len(guests)
    pooled = {g.target for g in guests if g.in_pool}
    for_s = max(settings.cooldown_s, int(period_end_s - now_s))

    def projected(pool_set) -> float:
        value = project_p95(total_so_far, _current_total(guests, pool_set,
                                                         settings.pool_ceil_bits_per_s),
                            slots_left)
        return value or 0.0

    moves: List[Decision] = []
    before = projected(pooled)
    if before > target:
        candidates = sorted((g for g in guests if g.target not in pooled
                             and g.current_bits_per_s > fair),
                            key=lambda g: (-(g.current_bits_per_s - fair), g.target))
        for g in candidates:
            if projected(pooled) <= target:
                break
            pooled.add(g.target)
            moves.append(Decision(
                "assign", g.target, settings.pool, for_s,
                f"{REASON}: projected 95th {_mbit(before)} > target {_mbit(target)}; "
                f"{g.target} at {_mbit(g.current_bits_per_s)}, fair share {_mbit(fair)}"))
        return moves
    members = [g for g in guests if g.target in pooled]
    for g in sorted(members, key=lambda g: g.target):
        pool_share = settings.pool_ceil_bits_per_s / max(1, len(pooled))
        low = min(fair, pool_share) / 2
        since = g.in_pool_since_s if g.in_pool_since_s is not None else now_s
        window = [rate for slot, rate in g.recent if slot + SLOT_S > now_s - settings.cooldown_s]
        needed = max(1, settings.cooldown_s // SLOT_S)
        if now_s - since < settings.cooldown_s or len(window) < needed:
            continue
        if any(rate >= low for rate in window):
            continue
        trial = pooled - {g.target}
        after = projected(trial)
        if after > target:
            continue
        pooled = trial
        moves.append(Decision(
            "unset", g.target, settings.pool, None,
            f"{REASON}: {g.target} below {_mbit(low)} for {settings.cooldown_s // 60} min; "
            f"projected 95th {_mbit(after)} <= target {_mbit(target)}"))
    return moves


def pool_membership(moves: Sequence[Tuple[float, str, str]]) -> Dict[str, float]:
    """Who is in the pool by auto-overage, from its recorded moves ``(time, action,
    target)`` in order: target -> time it was moved in."""
    inside: Dict[str, float] = {}
    for when, action, target in moves:
        if action == "assign":
            inside.setdefault(target, when)
        elif action == "unset":
            inside.pop(target, None)
    return inside
