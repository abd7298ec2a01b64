"""Auto-overage wiring: the recorded rates -> :func:`vif_qos.core.overage.decide` ->
the override API, every move recorded in the usage database.

The action goes through one small adapter, :func:`run_override`, which calls what
``vif-qos assign``/``unset`` call (:func:`vif_qos.xen.reload.set_override` and
:func:`~vif_qos.xen.reload.unset_override`): ``pool=POOL`` for ``NAME:DEVID``
with an expiry at the period's end and reason ``auto-overage`` to move a guest in,
the override's ``pool`` key removed to let it out. A move that fails is recorded
with the error as its outcome and retried next run.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from vif_qos.core import billing
from vif_qos.core.overage import REASON, Decision, GuestLoad, OverageSettings, decide, \
    pool_membership
from vif_qos.core.settings import Policy
from vif_qos.errors import VifQosError
from vif_qos.usage.store import Move, UsageStore

#: Runs one decision; returns ``"done"`` or why it failed (one line).
Action = Callable[[Decision], str]


def run_override(decision: Decision, conf: Optional[str] = None) -> str:
    """The adapter: carry out ``decision`` through the override API, under the host
    lock as ``vif-qos assign``/``unset`` do, with the policy file ``conf`` (None:
    ``$VIF_QOS_CONFIG`` or the default). Returns ``"done"``, or ``"failed (exit
    N): ..."`` with the one-line error and the exit status the command would have
    given; never raises (a record run goes on with its other moves)."""
    from vif_qos.xen.reload import set_override, unset_override

    command = "assign" if decision.action == "assign" else "unset"
    try:
        if command == "assign":
            report = set_override(decision.target, f"pool={decision.pool}", reason=REASON,
                                  for_s=decision.for_s, conf=conf)
        else:
            report = unset_override(decision.target, ["pool"], conf=conf)
    except VifQosError as err:
        return f"failed (exit {err.exit_status}): vif-qos {command}: {err.one_line()}"
    except Exception as err:  # a bug in one move must not stop the record run
        return (f"failed (exit 1): vif-qos {command}: internal error: "
                f"{type(err).__name__}: {' '.join(str(err).split())}")
    if report.status:
        errors = [f"{v.vif}: {v.error}" for v in report.result.vifs if v.error]
        errors += [f"{vif}: {message}" for vif, message, _s in report.failed]
        return (f"failed (exit {report.status}): vif-qos {command}: "
                f"{' '.join((errors or ['kernel refused a change'])[0].split())}")
    return "done"


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
    # The complete slots of the period so far, as report ranks them (billing.stats).
    so_far = [max(total[slot]) for slot in billing.expected_slots(period[0], now_s)
              if slot in total]
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


def act(store: UsageStore, policy: Policy, now_s: float, action: Optional[Action] = None,
        present: Optional[Sequence[Tuple[str, int]]] = None) -> List[Move]:
    """Decide, carry out through ``action`` (default :func:`run_override` with the
    policy's own file), record every move; return them."""
    action = action or partial(run_override, conf=policy.path)
    done = []
    for d in plan_moves(store, policy, now_s, present):
        outcome = action(d)
        move = Move(now_s, d.action, d.target, d.pool, d.for_s, d.reason, outcome)
        store.add_move(move)
        done.append(move)
    return done
