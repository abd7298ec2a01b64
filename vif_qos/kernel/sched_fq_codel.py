"""fq_codel (``sch_fq_codel``) over rtnetlink: the time-bounded queue vif-qos puts
under an HTB class where the kernel has it (:mod:`vif_qos.kernel.qdisc` makes it),
and asking the kernel whether it has it. The attribute numbers as
``include/uapi/linux/pkt_sched.h`` declares them.

This test machine's kernel has no fq_codel; Debian's Xen dom0 kernel has. The
encoding is tested here (message bytes, :func:`codel_us_as_dumped`), the qdisc
itself there (xentest/).
"""

from __future__ import annotations

from typing import Optional

from vif_qos.kernel import netlink as nl
from vif_qos.kernel.netlink import EEXIST, EINVAL, ENOENT, TC_H_ROOT

#: ``TCA_FQ_CODEL_*`` attribute numbers (pkt_sched.h).
TCA_FQ_CODEL_TARGET, TCA_FQ_CODEL_LIMIT, TCA_FQ_CODEL_INTERVAL = 1, 2, 3
TCA_FQ_CODEL_FLOWS, TCA_FQ_CODEL_QUANTUM = 5, 6

#: codel keeps times in units of 2**CODEL_SHIFT ns (include/net/codel.h: CODEL_SHIFT
#: 10, ``us_to_codel``, ``codel_time_to_us``); fq_codel dumps them converted back.
CODEL_SHIFT = 10


def codel_us_as_dumped(us: int) -> int:
    """The microseconds fq_codel dumps for a target or interval set to ``us``: it
    stores ``us * 1000 >> CODEL_SHIFT`` and dumps ``stored << CODEL_SHIFT // 1000``,
    so 20000 comes back as 19999 (sch_fq_codel.c ``fq_codel_change`` and
    ``fq_codel_dump``). Pure; ``us`` >= 0."""
    return ((int(us) * 1000) >> CODEL_SHIFT << CODEL_SHIFT) // 1000


def options(target_us: int, interval_us: int, quantum_bytes: int) -> bytes:
    """The ``TCA_OPTIONS`` payload: nested ``TCA_FQ_CODEL_TARGET`` and
    ``TCA_FQ_CODEL_INTERVAL`` in microseconds, ``TCA_FQ_CODEL_QUANTUM`` in bytes
    (sch_fq_codel.c ``fq_codel_change``). No limit is sent: fq_codel's limit is in
    packets and its memory_limit in truesize (kernel defaults kept). Pure."""
    return nl.encode_attrs([(TCA_FQ_CODEL_TARGET, nl.u32(int(target_us))),
                            (TCA_FQ_CODEL_INTERVAL, nl.u32(int(interval_us))),
                            (TCA_FQ_CODEL_QUANTUM, nl.u32(int(quantum_bytes)))])


def qdisc_fields(msg: nl.Message) -> dict:
    """The :class:`~vif_qos.kernel.qdisc.QdiscInfo` fields of an fq_codel:
    ``target_us`` and ``interval_us`` as dumped (None when absent)."""
    attrs = msg.nested(nl.TCA_OPTIONS)
    return {"target_us": nl.attr_u32(attrs, TCA_FQ_CODEL_TARGET),
            "interval_us": nl.attr_u32(attrs, TCA_FQ_CODEL_INTERVAL)}


def kernel_has(ipr, lo_index: int) -> Optional[bool]:
    """Whether the kernel knows the fq_codel qdisc, asked without creating one.

    Sends an fq_codel root qdisc for netdev ``lo_index`` with
    ``TCA_FQ_CODEL_FLOWS`` 0, which ``fq_codel_change`` refuses (EINVAL, "flows
    must be 1..65536") after the kind was found; an unknown kind fails earlier
    with ENOENT (sch_api.c ``qdisc_create``, after trying to load the module).
    Nothing is created either way. ``None`` when the answer says neither
    (another root qdisc holds the place: EEXIST).
    """
    answer = nl.tc_request(ipr, nl.RTM_NEWQDISC, nl.FLAGS_ADD, index=lo_index,
                           parent=TC_H_ROOT, kind="fq_codel",
                           options=nl.encode_attrs([(TCA_FQ_CODEL_FLOWS, nl.u32(0))]),
                           what=f"fq_codel probe on ifindex {lo_index}",
                           tolerate={EINVAL: True, ENOENT: False, EEXIST: None})
    return answer if isinstance(answer, bool) or answer is None else None
