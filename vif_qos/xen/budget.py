"""The time budget of a hotplug run: libxl kills a hotplug script after 40 s
(``tools/libs/light/libxl_internal.h: LIBXL_HOTPLUG_TIMEOUT``), so a run limits
its own work and, past it, fails with that reason and undoes what it did.

A whole run has a budget for its own work (``VIF_QOS_HOTPLUG_TIMEOUT``, default
30 s, :func:`hotplug_budget`). Waiting for the host lock while other guests' runs
take their turn does not count, up to a wall of 36 s; a lock held still for the
whole budget (a stuck run) does (:func:`deadline`).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Mapping

from vif_qos.errors import EnvironmentProblem

#: Budget of a whole online/add (and of an offline/remove), seconds: well inside
#: libxl's 40 s (tools/libs/light/libxl_internal.h: LIBXL_HOTPLUG_TIMEOUT), so that
#: vif-qos itself reports the reason and undoes its work before it is killed.
DEFAULT_HOTPLUG_TIMEOUT_S = 30.0
#: Budget of undoing a failed apply, seconds.
UNDO_TIMEOUT_S = 5.0
#: Wall time after which a run gives up even while the host lock still moves,
#: seconds: libxl's 40 s less what vif-bridge and Python's start-up take first.
HARD_WALL_S = 36.0
LOCK_WAIT_WHERE = "$VIF_QOS_RUN_DIR/lock, default /run/vif-qos/lock"


class HotplugTimeout(EnvironmentProblem):
    """The hotplug run exceeded its time budget (a stuck xenstored, a held lock)."""


@contextmanager
def deadline(seconds: float, what: str,
             hard_wall_s: float = HARD_WALL_S) -> Iterator[None]:
    """Raise :class:`HotplugTimeout` in the block once its own work took ``seconds``.

    Time spent waiting for the host lock while the lock changes hands (other
    guests' runs ahead in the queue: :data:`vif_qos.kernel.alloc.LOCK_WAIT`) is
    not counted, up to ``hard_wall_s`` of wall time (libxl kills the script at
    40 s); a lock that does not change hands for ``seconds`` (a stuck holder)
    ends the wait. SIGALRM: only in the main thread; elsewhere, or with
    ``seconds <= 0``, no limit.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    from vif_qos.kernel.alloc import LOCK_WAIT

    start = time.monotonic()
    waited_before = LOCK_WAIT.total_s()
    wall = max(seconds, hard_wall_s)

    def on_alarm(signum, frame):
        elapsed = time.monotonic() - start
        own = elapsed - (LOCK_WAIT.total_s() - waited_before)
        stalled = LOCK_WAIT.stalled_s()
        if stalled >= seconds:
            raise HotplugTimeout(f"{what} did not finish: the host lock "
                                 f"({LOCK_WAIT_WHERE}) did not change hands for "
                                 f"{stalled:.0f} s (a stuck vif-qos run?)")
        if own >= seconds or elapsed >= wall:
            raise HotplugTimeout(f"{what} did not finish within {seconds:g} s of its "
                                 f"own work ({elapsed:.0f} s in all, {elapsed - own:.0f} "
                                 "s waiting for the host lock; libxl kills a hotplug "
                                 "script after 40 s)")
        signal.setitimer(signal.ITIMER_REAL, max(0.05, min(
            seconds - own, wall - elapsed, seconds - stalled)))

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)



def hotplug_budget(env: Mapping[str, str]) -> float:
    """``VIF_QOS_HOTPLUG_TIMEOUT`` in seconds; the default for anything that is not a
    finite number of at most a day (``nan``/``inf`` would break ``setitimer``)."""
    try:
        value = float(env.get("VIF_QOS_HOTPLUG_TIMEOUT", DEFAULT_HOTPLUG_TIMEOUT_S))
    except ValueError:
        return DEFAULT_HOTPLUG_TIMEOUT_S
    return value if math.isfinite(value) and value <= 86400 else DEFAULT_HOTPLUG_TIMEOUT_S
