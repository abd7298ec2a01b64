"""bfifo (``sch_fifo``) over rtnetlink: the byte-limited queue vif-qos puts under
an HTB class to bound its queue in time (:mod:`vif_qos.kernel.qdisc` makes it).
The layout as ``include/uapi/linux/pkt_sched.h`` declares it."""

from __future__ import annotations

from vif_qos.constants import U32_MAX
from vif_qos.errors import KernelError
from vif_qos.kernel import netlink as nl
from vif_qos.kernel.netlink import Layout

#: ``struct tc_fifo_qopt`` (the whole ``TCA_OPTIONS``, not nested attributes).
FIFO_QOPT = Layout(("limit", "I"))


def options(limit_bytes: int) -> bytes:
    """The ``TCA_OPTIONS`` payload: the queue limit in bytes. Pure.

    :raises KernelError: a limit outside 1..2**32-1.
    """
    if not 0 < int(limit_bytes) <= U32_MAX:
        raise KernelError(f"bfifo limit {limit_bytes} bytes is outside 1..{U32_MAX}")
    return FIFO_QOPT.pack(limit=int(limit_bytes))


def qdisc_fields(msg: nl.Message) -> dict:
    """The :class:`~vif_qos.kernel.qdisc.QdiscInfo` fields of a bfifo:
    ``limit_bytes``, or none when the kernel sent no options."""
    raw = msg.attrs.get(nl.TCA_OPTIONS)
    if not raw or len(raw) < FIFO_QOPT.size:
        return {}
    return {"limit_bytes": FIFO_QOPT.unpack(raw)["limit"]}
