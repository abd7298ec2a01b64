"""Auto-overage wiring: the recorded rates -> :func:`vif_qos.core.overage.decide` ->
the day-2 override commands, every move recorded in the usage database.

The action goes through one small adapter, :func:`run_override`: ``vif-qos assign
NAME:DEVID POOL --for SECONDSs --reason auto-overage`` to move a guest in (an override
that expires at the period's end) and ``vif-qos unset NAME:DEVID pool`` to let it out
(the override commands of the day-2 operations; where this vif-qos has none, the
move is recorded with the command's error as its outcome and retried next run).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from vif_qos.core import billing
from vif_qos.core.overage import REASON, Decision, GuestLoad, OverageSettings, decide, \
    pool_membership
from vif_qos.core.settings import Policy
from vif_qos.usage.store import Move, UsageStore

#: Runs one decision; returns ``"done"`` or why it failed (one line).
Action = Callable[[Decision], str]

OVERRIDE_TIMEOUT_S = 60


def override_argv(decision: Decision) -> List[str]:
    """The vif-qos command line that carries out ``decision``."""
    base = [sys.executable, "-m", "vif_qos"]
    if decision.action == "assign":
        return base + ["assign", decision.target, decision.pool, "--for",
                       f"{decision.for_s}s", "--reason", REASON]
    return base + ["unset", decision.target, "pool"]


def run_override(decision: Decision) -> str:
    """The adapter: run the override command; ``"done"`` or its error line."""
    try:
        res = subprocess.run(override_argv(decision), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=OVERRIDE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"failed: {err}"
    if res.returncode == 0:
        return "done"
    last = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
    return f"failed (exit {res.returncode}): {last}"


def settings_of(policy: Policy) -> Optional[OverageSettings]:
    """The decision's settings, or None when auto-overage cannot act (no target, or
    the pool is not in the policy)."""
    b = policy.billing
    pool = policy.pools.get(b.overage_pool)
    if b.target_bits_per_s is None or pool is None:
        return None
    return OverageSettings(b.target_bits_per_s, b.overage_pool,
                           pool.effective_ceil_bits_per_s, b.cooldown_s)


def loads(store: UsageStore, now_s: float, period: Tuple[int, int], cooldown_s: int,
          present: Optional[Sequence[Tuple[str, int]]] = None
          ) -> Tuple[List[float], List[GuestLoad]]:
    """From the database: the period's total max(in, out) slot rates so far, and per
    guest (``NAME:DEVID``) its slot rates over the last cooldown (plus one slot) and
    whether auto-overage put it in the pool. ``present``: the guests running now
    (default: those with a rate in the last slot window)."""
    start = min(period[0], now_s - cooldown_s - billing.SLOT_S)
    samples = store.samples(start - 2 * billing.MAX_INTERVAL_S, now_s, kind="vif")
    rates = billing.series_slot_rates(billing.intervals(samples))
    per_guest: Dict[Tuple[str, int], List[billing.SlotRates]] = {}
    for series, r in rates.items():
        per_guest.setdefault(series.guest, []).append(r)
    guest_rates = {g: billing.sum_slot_rates(parts) for g, parts in per_guest.items()}
    total = billing.sum_slot_rates(guest_rates.values())
    so_far = [max(v) for slot, v in total.items() if period[0] <= slot < now_s]
    moves = [(m.wall_s, m.action, m.target) for m in store.moves() if m.outcome == "done"]
    inside = pool_membership(moves)
    window_start = now_s - cooldown_s - billing.SLOT_S
    out = []
    names = present if present is not None else sorted(guest_rates)
    for g in names:
        target = f"{g[0]}:{g[1]}"
        r = guest_rates.get(g, {})
        recent = tuple((slot, max(v)) for slot, v in sorted(r.items()) if slot >= window_start)
        out.append(GuestLoad(target, recent, target in inside, inside.get(target)))
    return so_far, out


def plan_moves(store: UsageStore, policy: Policy, now_s: float,
               present: Optional[Sequence[Tuple[str, int]]] = None) -> List[Decision]:
    """What auto-overage would do now (``report --preview`` shows it)."""
    settings = settings_of(policy)
    if settings is None:
        return []
    period = billing.period_containing(now_s, policy.billing.day)
    so_far, guests = loads(store, now_s, period, settings.cooldown_s, present)
    return decide(now_s, period[1], so_far, guests, settings)


def act(store: UsageStore, policy: Policy, now_s: float, action: Action = run_override,
        present: Optional[Sequence[Tuple[str, int]]] = None) -> List[Move]:
    """Decide, carry out through ``action``, record every move; return them."""
    done = []
    for d in plan_moves(store, policy, now_s, present):
        outcome = action(d)
        move = Move(now_s, d.action, d.target, d.pool, d.for_s, d.reason, outcome)
        store.add_move(move)
        done.append(move)
    return done
