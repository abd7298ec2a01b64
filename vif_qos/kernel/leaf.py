"""A vif's HTB leaf class on the uplink, and the leaf qdisc under an HTB class.

- the leaf class: its classid allocated from what our nftables table records
  (:func:`free_classid`), added under its parent (:func:`add_leaf`,
  :func:`make_leaf`), a leftover of the same classid replaced;
- the leaf qdisc bounding the class's queue in time (bfifo, or fq_codel where
  the kernel has it; ``model.LeafQdiscPlan``): under a vif's leaf and under the
  shared tree's classes that queue (:func:`ensure_leaf_qdisc`), made with the
  class and deleted by the kernel with it; compared with the plan as the kernel
  dumps it (:func:`same_leaf`).

All under the host lock (:mod:`vif_qos.kernel.alloc`), in the calling thread's
network namespace; each change pushes its undo (:class:`~vif_qos.kernel.steps.Undo`).
"""

from __future__ import annotations

import logging
from typing import List, Optional

from vif_qos.errors import KernelError
from vif_qos.kernel import alloc
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import qdisc, sched_fq_codel, sched_htb
from vif_qos.kernel import tc as tcadapter
from vif_qos.kernel.netlink import EEXIST
from vif_qos.kernel.steps import Undo
from vif_qos.model import (LEAF_QDISC_AUTO, LEAF_QDISC_BFIFO, LEAF_QDISC_FQ_CODEL,
                           HostSettings, LeafQdiscPlan, VifPlan)

log = logging.getLogger("vif_qos")

# --------------------------------------------------------------------------
# The leaf qdisc
# --------------------------------------------------------------------------

#: The answer of :func:`vif_qos.kernel.sched_fq_codel.kernel_has` (one kernel per
#: process).
_FQ_CODEL_KNOWN: List[bool] = []


def leaf_qdisc_kind(ipr, plan: LeafQdiscPlan) -> str:
    """The qdisc kind to create for ``plan``: its kind, with ``auto`` resolved to
    fq_codel when the kernel has it (asked once per process over netlink, see
    :func:`vif_qos.kernel.sched_fq_codel.kernel_has`), else bfifo."""
    if plan.kind != LEAF_QDISC_AUTO:
        return plan.kind
    if not _FQ_CODEL_KNOWN:
        lo = tcadapter.get_link(ipr, "lo")
        known = sched_fq_codel.kernel_has(ipr, lo.index) if lo is not None else None
        _FQ_CODEL_KNOWN.append(bool(known))
    return LEAF_QDISC_FQ_CODEL if _FQ_CODEL_KNOWN[0] else LEAF_QDISC_BFIFO


def leaf_params(plan: LeafQdiscPlan, quantum_bytes: int) -> dict:
    """``plan``'s limit (bytes), target/interval (us) and ``quantum_bytes`` as the
    keyword arguments of :func:`vif_qos.kernel.qdisc.replace_leaf_qdisc`."""
    return dict(limit_bytes=plan.limit_bytes, target_us=plan.target_us,
                interval_us=plan.interval_us, quantum_bytes=quantum_bytes)


def leaf_qdisc_of(ipr, index: int, classid: int) -> Optional[qdisc.QdiscInfo]:
    """Our qdisc under class ``classid`` (None: the class's built-in pfifo)."""
    for q in qdisc.dump_qdiscs(ipr, index):
        if q.parent == classid:
            return q
    return None


def same_leaf(found: Optional[qdisc.QdiscInfo], kind: str, plan: LeafQdiscPlan) -> bool:
    """True when the leaf qdisc ``found`` (None: the class's built-in pfifo) is a
    ``kind`` qdisc with ``plan``'s limit (bfifo) or target/interval (fq_codel, as
    the kernel dumps them: :func:`~vif_qos.kernel.sched_fq_codel.codel_us_as_dumped`)."""
    if found is None or found.kind != kind:
        return False
    if kind == LEAF_QDISC_BFIFO:
        return found.limit_bytes == plan.limit_bytes
    return (found.target_us, found.interval_us) == (
        sched_fq_codel.codel_us_as_dumped(plan.target_us),
        sched_fq_codel.codel_us_as_dumped(plan.interval_us))


def ensure_leaf_qdisc(ipr, link: tcadapter.LinkInfo, classid: int, plan: LeafQdiscPlan,
                      quantum_bytes: int, what: str, undo: Undo,
                      class_is_new: bool) -> None:
    """The leaf qdisc ``plan`` under ``classid``; when the class existed before,
    what was there is put back if this apply fails."""
    kind = leaf_qdisc_kind(ipr, plan)
    found = None if class_is_new else leaf_qdisc_of(ipr, link.index, classid)
    if same_leaf(found, kind, plan):
        return
    qdisc.replace_leaf_qdisc(ipr, link.index, classid, kind, what,
                             **leaf_params(plan, quantum_bytes))
    if class_is_new:
        return  # deleting the class (its undo) deletes the qdisc
    if found is None:
        undo.push(what, lambda: qdisc.del_leaf_qdisc(ipr, link.index, classid, what))
    else:
        undo.push(what, lambda: qdisc.replace_leaf_qdisc(
            ipr, link.index, classid, found.kind, what, limit_bytes=found.limit_bytes or 0,
            target_us=found.target_us or 0, interval_us=found.interval_us or 0,
            quantum_bytes=quantum_bytes))


def add_leaf_queue(ipr, link: tcadapter.LinkInfo, classid: int, plan: VifPlan) -> None:
    """The leaf qdisc ``plan`` gives the vif's leaf class ``classid`` just made on
    ``link`` (none planned: the class keeps its built-in pfifo). The kernel deletes
    it with the class, so the class's undo covers it."""
    out = plan.outbound
    if out.leaf_qdisc is None:
        return
    ensure_leaf_qdisc(ipr, link, classid, out.leaf_qdisc, out.quantum_bytes,
                      f"leaf qdisc of htb leaf class {tcadapter.handle_str(classid)} of "
                      f"{plan.vif} on {link.name}", Undo(), True)


# --------------------------------------------------------------------------
# The leaf class
# --------------------------------------------------------------------------

def free_classid(major: int, host: HostSettings, state: nftadapter.TableState) -> int:
    """The lowest leaf classid of qdisc ``major`` that no entry of our table records
    (allocation is derived from the kernel's record, under the host lock)."""
    used = [e.classid & 0xFFFF for e in state.entries.values()
            if e.classid is not None and e.classid >> 16 == major]
    return (major << 16) | alloc.allocate_minor(used, host.classid_min, host.classid_max)


def add_leaf(ipr, link: tcadapter.LinkInfo, plan: VifPlan, host: HostSettings,
             state: nftadapter.TableState, parent: int) -> int:
    """Allocate a leaf classid (:func:`free_classid`) and add the class
    (:func:`_add_recorded_leaf`); returns the classid."""
    return _add_recorded_leaf(ipr, link, plan,
                              free_classid(plan.uplink.qdisc_major, host, state), parent)


def make_leaf(ipr, link: tcadapter.LinkInfo, plan: VifPlan, classid: int, parent: int,
              undo: Undo) -> None:
    """The vif's leaf class ``classid`` (recorded by its entry already) under
    ``parent``, with its leaf qdisc (:func:`add_leaf_queue`); deleted again,
    qdisc and all, when the apply fails later."""
    _add_recorded_leaf(ipr, link, plan, classid, parent)
    what = f"htb leaf class {tcadapter.handle_str(classid)} of {plan.vif}"
    undo.push(what, lambda: tcadapter.del_class(ipr, link.index, classid, what))
    add_leaf_queue(ipr, link, classid, plan)


def _add_recorded_leaf(ipr, link: tcadapter.LinkInfo, plan: VifPlan, classid: int,
                       parent: int) -> int:
    """Add the leaf ``classid`` the entry records; returns it.

    No entry records the classid (it was allocated from the entries under the
    lock), so a class already there is a leftover (an apply of an older
    vif-qos killed midway, a table flushed under live guests): it is removed and
    the add retried once (logged).
    """
    out = plan.outbound
    what = (f"htb leaf class {tcadapter.handle_str(classid)} of {plan.vif} "
            f"on {link.name}")
    for attempt in (1, 2):
        try:
            sched_htb.set_class(
                ipr, link.index, classid, parent, mode="add", what=what,
                rate_bits_per_s=out.rate_bits_per_s,
                ceil_bits_per_s=out.ceil_bits_per_s, burst_bytes=out.burst_bytes,
                cburst_bytes=out.cburst_bytes, quantum_bytes=out.quantum_bytes)
            return classid
        except KernelError as err:
            if err.errno != EEXIST or attempt == 2:
                raise
            log.warning("vif-qos: %s: %s existed without an entry (left by an "
                        "interrupted apply); removed it", plan.vif, what)
            tcadapter.del_class(ipr, link.index, classid, what)
    raise AssertionError("unreachable")  # pragma: no cover
