"""``vif-qos simulate``'s usage recording: ``vif-qos record`` runs in the simulated dom0
every few seconds while guests are measured (a thread), into a usage database in the
simulation's own ``VIF_QOS_STATE_DIR``; at the end a short usage report over the run
and, with ``--plot``, the plot of the uplink, the total and the top guests.

A simulation lasts a minute, not a billing month: its report uses slots of
:data:`SLOT_S` seconds instead of 5 minutes (the arithmetic is the same,
:mod:`vif_qos.core.billing`).
"""

from __future__ import annotations

import os
import threading
import time
from typing import List, Optional

from vif_qos.usage import report as reportmod
from vif_qos.usage.store import UsageStore

#: Seconds between two record runs (plus the run's own time), and the report's slot
#: (several runs per slot, so a slow run leaves no slot empty).
INTERVAL_S = 3.0
SLOT_S = 10


class UsageRun:
    """Records the simulated dom0 ``dom0`` (a :class:`vif_qos.sim.dom0.Dom0`) until
    :meth:`finish`."""

    def __init__(self, dom0, interval_s: float = INTERVAL_S):
        self.dom0 = dom0
        self.state_dir = os.path.join(dom0.tree, "state")
        self.interval_s = interval_s
        self.errors: List[str] = []
        self.runs = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.started_s = time.time()

    def record(self) -> None:
        env = dict(self.dom0.base_env(), VIF_QOS_STATE_DIR=self.state_dir)
        res = self.dom0.run([self.dom0.program, "record", "--quiet"], env)
        self.runs += 1
        if res.returncode != 0:
            self.errors.append(res.stderr.strip()[-300:])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.record()

    def start(self) -> None:
        self.started_s = time.time()
        self.record()
        self._thread = threading.Thread(target=self._loop, name="vif-qos-record", daemon=True)
        self._thread.start()

    def finish(self, plot_path: Optional[str] = None) -> dict:
        """Stop, record once more, and return ``{"text": ..., "json": ...}``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.record()
        end = time.time()
        path = os.path.join(self.state_dir, "usage.sqlite")
        with UsageStore(path, readonly=True) as store:
            samples = store.samples(self.started_s - 60, end + 60)
        rep = reportmod.build(samples, self.started_s, end + SLOT_S, end + SLOT_S,
                              slot_s=SLOT_S)
        if plot_path:
            from vif_qos.usage.plot import plot
            plot(rep, plot_path, title=f"vif-qos simulate: usage in {SLOT_S}-second slots (UTC)")
        text = reportmod.to_text(rep)
        head = (f"usage: {self.runs} record runs every {self.interval_s:g} s during the "
                f"measurements ({len(self.errors)} failed)")
        return {"text": "\n".join([head, text] + [f"  record failed: {e}" for e in self.errors]),
                "json": reportmod.to_json(rep), "ok": not self.errors}
