"""Where vif-qos keeps its own files on a dom0.

- ``$VIF_QOS_STATE_DIR`` (default ``/var/lib/vif-qos``): state that outlives a boot and
  that vif-qos writes itself: operator overrides (``overrides.conf``), usage samples
  (``usage.sqlite``). Tests and package builds move it with the variable.
- The run directory (the host lock) is :func:`vif_qos.kernel.alloc.run_dir`
  (``$VIF_QOS_RUN_DIR``, default ``/run/vif-qos``): gone at reboot, as the kernel
  state it guards.
"""

from __future__ import annotations

import os

DEFAULT_STATE_DIR = "/var/lib/vif-qos"
STATE_DIR_ENV = "VIF_QOS_STATE_DIR"


def state_dir() -> str:
    """``$VIF_QOS_STATE_DIR``, else ``/var/lib/vif-qos`` (not created here)."""
    return os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def state_path(name: str) -> str:
    """A file named ``name`` in :func:`state_dir`."""
    return os.path.join(state_dir(), name)
