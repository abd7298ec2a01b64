"""Steps with their undo: the stack of compensating actions an apply unwinds on
a failure, and the points at which tests kill an apply or a removal.

An apply (:mod:`vif_qos.kernel.apply`, building on :mod:`~vif_qos.kernel.tree` and
:mod:`~vif_qos.kernel.leaf`) pushes the undo of every kernel change it makes onto
an :class:`Undo`; on a failure they run in reverse, so nothing of it remains.
Killed (SIGKILL), nothing can undo: the order of the steps keeps every state
between two of them passing traffic and recorded, and ``VIF_QOS_TEST_KILL_AT=STEP``
makes the process SIGKILL itself at :func:`kill_point` ``STEP`` (tests only,
tests/test_kill_safety.py).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Callable, List, Tuple

log = logging.getLogger("vif_qos")

#: The points at which ``VIF_QOS_TEST_KILL_AT`` can kill an apply or a removal.
KILL_STEPS = ("locked", "stale-removed", "htb-qdisc", "htb-root-class",
              "htb-default-class", "htb-pools", "entry", "leaf", "tbf",
              "remove-leaf", "remove-tbf", "remove-entry")
KILL_ENV = "VIF_QOS_TEST_KILL_AT"


def kill_point(name: str) -> None:
    """A kill point for the tests: SIGKILL this process when ``$VIF_QOS_TEST_KILL_AT``
    names ``name`` (one of :data:`KILL_STEPS`)."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Undo:
    """A stack of compensating actions, run in reverse on failure."""

    def __init__(self) -> None:
        self.actions: List[Tuple[str, Callable[[], object]]] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        self.actions.append((what, action))

    def run(self) -> None:
        while self.actions:
            what, action = self.actions.pop()
            try:
                action()
            except Exception as err:  # keep undoing the rest
                log.error("vif-qos: undoing %s failed: %s", what, err)
