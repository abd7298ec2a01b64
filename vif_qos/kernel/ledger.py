"""Which vif names may hold vif-qos's kernel state: one empty file per name.

``$VIF_QOS_RUN_DIR/vifs/<name>`` (default ``/run/vif-qos/vifs/``) is made by
:func:`vif_qos.kernel.apply.apply_vif` under the host lock BEFORE it changes the
kernel, and removed by ``remove_vif`` / ``cleanup_orphans`` after the vif's state is
gone. So a name without a file has nothing of vif-qos in the kernel, and an
``offline``, ``remove`` or ``cleanup --vif`` for it can return without importing
pyroute2 or the nftables bindings (on a slow dom0 those imports take seconds).

The run directory is a tmpfs that goes at reboot, with the kernel state it
describes. Every apply takes the host lock, which makes the run directory; so:

- no run directory: nothing was applied since boot (:func:`may_hold` is False);
- a run directory without ``vifs/``: state may have been made by a vif-qos that
  kept no ledger (an upgrade under running guests): every name may hold state;
- otherwise: exactly the names with a file (``vif-qos cleanup`` without
  ``--vif`` sweeps everything regardless and removes the files of what it removed).

Only the standard library: importing this module costs nothing.
"""

from __future__ import annotations

import os
from typing import List

from vif_qos.kernel.alloc import run_dir

LEDGER_DIR_NAME = "vifs"


def ledger_dir() -> str:
    """``<run dir>/vifs``."""
    return os.path.join(run_dir(), LEDGER_DIR_NAME)


def _path(vif: str) -> str:
    # A netdev name never holds '/' nor is '.'/'..' (vif_qos.core.ifname); refuse
    # anything else rather than write outside the directory.
    if not vif or "/" in vif or vif in (".", "..") or "\0" in vif:
        raise ValueError(f"not a netdev name: {vif!r}")
    return os.path.join(ledger_dir(), vif)


def record(vif: str) -> None:
    """Note that ``vif`` may hold state from now on (call under the host lock,
    before the first kernel change). OSError propagates: an apply that cannot note
    what it does must not do it."""
    directory = ledger_dir()
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd = os.open(_path(vif), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    os.close(fd)


def forget(vif: str) -> None:
    """``vif`` holds nothing of vif-qos any more (its state was removed)."""
    try:
        os.unlink(_path(vif))
    except (FileNotFoundError, ValueError):
        pass


def may_hold(vif: str) -> bool:
    """False only when ``vif`` certainly holds no vif-qos state (see the module)."""
    if not os.path.isdir(run_dir()):
        return False
    directory = ledger_dir()
    if not os.path.isdir(directory):
        return True
    try:
        return os.path.exists(_path(vif))
    except ValueError:
        return True


def exists() -> bool:
    """Whether the ledger directory exists (see the module for what its absence means)."""
    return os.path.isdir(ledger_dir())


def start() -> None:
    """Make the (empty) ledger directory: from now on it lists every name."""
    os.makedirs(ledger_dir(), mode=0o755, exist_ok=True)


def names() -> List[str]:
    """Every recorded name, sorted (none when there is no ledger)."""
    try:
        return sorted(os.listdir(ledger_dir()))
    except FileNotFoundError:
        return []
