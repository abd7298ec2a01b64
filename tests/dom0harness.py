"""The end-to-end tests' simulated dom0: :mod:`vif_qos.sim.dom0` (shared with
``vif-qos simulate``)."""

from vif_qos.sim.dom0 import (HOOK_DIR_REL, HOST_XEN_DIR, VIF_BRIDGE, WRAPPER,  # noqa: F401
                             Dom0, vif_qos_program)
