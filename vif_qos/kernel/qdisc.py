"""Qdiscs of any kind: read back through one table of kinds, leaf qdiscs made
and removed, and the kernel asked which kinds it has.

Each kind vif-qos makes or reads has its own module, which declares its options
and reads them back (as pyroute2's ``tcmsg/sched_*.py`` plugins, registered in
:data:`KINDS`): :mod:`vif_qos.kernel.sched_htb`, :mod:`~vif_qos.kernel.sched_tbf`,
:mod:`~vif_qos.kernel.sched_bfifo`, :mod:`~vif_qos.kernel.sched_fq_codel`. Messages
are built and read by :mod:`vif_qos.kernel.netlink`. No ``tc`` subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from vif_qos.errors import EnvironmentProblem, KernelError
from vif_qos.kernel import netlink as nl
from vif_qos.kernel import sched_bfifo, sched_fq_codel, sched_htb, sched_tbf
from vif_qos.kernel.netlink import EEXIST, EINVAL, ENODEV, ENOENT, TC_H_ROOT, open_ipr
from vif_qos.kernel.tc import GONE_IS_FALSE, del_root_qdisc, get_link, read_stats

#: The kinds whose options are read back, each by its module's ``qdisc_fields``
#: (a message -> the :class:`QdiscInfo` fields of that kind); other kinds are read
#: with their kind, handles and counters only.
KINDS = {"htb": sched_htb, "tbf": sched_tbf, "bfifo": sched_bfifo,
         "fq_codel": sched_fq_codel}


@dataclass(frozen=True)
class QdiscInfo:
    """A qdisc as read back. Rates in bytes/s as the kernel holds them."""

    index: int
    kind: str
    handle: int
    parent: int
    # HTB
    default_minor: Optional[int] = None
    direct_packets: Optional[int] = None
    # TBF
    rate_bytes_per_s: Optional[int] = None
    peak_bytes_per_s: Optional[int] = None
    limit_bytes: Optional[int] = None
    buffer_ticks: Optional[int] = None
    mtu_ticks: Optional[int] = None
    # fq_codel
    target_us: Optional[int] = None
    interval_us: Optional[int] = None
    bytes: int = 0
    packets: int = 0
    drops: int = 0


def _qdisc_info(msg: nl.Message) -> QdiscInfo:
    kind = msg.attr_str(nl.TCA_KIND) or ""
    module = KINDS.get(kind)
    extra = module.qdisc_fields(msg) if module is not None else {}
    st = read_stats(msg)
    return QdiscInfo(index=msg.get("index"), kind=kind, handle=msg.get("handle"),
                     parent=msg.get("parent"), bytes=st["bytes"],
                     packets=st["packets"], drops=st["drops"], **extra)


def dump_qdiscs(ipr, index: Optional[int] = None) -> List[QdiscInfo]:
    """Every qdisc (of ``index`` when given; the kernel dumps all netdevs, we
    filter), with its parameters and counters.

    :raises KernelError: the dump failed.
    """
    reply = nl.tc_request(ipr, nl.RTM_GETQDISC, nl.FLAGS_DUMP, index=index or 0,
                          what="qdisc dump")
    return [_qdisc_info(item) for item in reply
            if item.type == nl.RTM_NEWQDISC
            and (index is None or item.get("index") == index)]


def get_root_qdisc(ipr, index: int) -> Optional[QdiscInfo]:
    """The root qdisc of ``index``, or None when the kernel shows none (a
    default ``noqueue``) or the netdev is gone. A kernel default (``mq``,
    ``pfifo_fast``, ``fq_codel`` ...) has handle 0.

    One RTM_GETQDISC for ``parent TC_H_ROOT`` (not a dump of every netdev's
    qdiscs), with :data:`~vif_qos.kernel.netlink.FLAGS_GET_ONE`.

    :raises KernelError: any refusal but "gone" or "nothing to show".
    """
    # EINVAL: qdisc_get_notify has nothing it may show (a built-in qdisc).
    reply = nl.tc_request(ipr, nl.RTM_GETQDISC, nl.FLAGS_GET_ONE, index=index,
                          parent=TC_H_ROOT, what=f"root qdisc of ifindex {index}",
                          tolerate={ENOENT: (), ENODEV: (), EINVAL: ()})
    return next((_qdisc_info(item) for item in reply
                 if item.type == nl.RTM_NEWQDISC and item.get("index") == index), None)


# --------------------------------------------------------------------------
# Leaf qdiscs (the queue under an HTB class)
# --------------------------------------------------------------------------

def leaf_qdisc_options(kind: str, *, limit_bytes: int = 0, target_us: int = 0,
                       interval_us: int = 0, quantum_bytes: int = 0) -> bytes:
    """The ``TCA_OPTIONS`` payload of a leaf qdisc. Pure.

    ``bfifo``: ``limit_bytes`` (:func:`vif_qos.kernel.sched_bfifo.options`).
    ``fq_codel``: ``target_us``, ``interval_us``, ``quantum_bytes``
    (:func:`vif_qos.kernel.sched_fq_codel.options`; ``limit_bytes`` is not sent).

    :raises KernelError: another kind, or a bfifo limit outside 1..2**32-1.
    """
    if kind == "bfifo":
        return sched_bfifo.options(limit_bytes)
    if kind == "fq_codel":
        return sched_fq_codel.options(target_us, interval_us, quantum_bytes)
    raise KernelError(f"leaf qdisc kind {kind!r}: vif-qos makes bfifo or fq_codel")


def leaf_qdisc_msg(index: int, parent: int, kind: str, **params: int) -> bytes:
    """The whole RTM_NEWQDISC message (header, ``struct tcmsg``, TCA_KIND,
    TCA_OPTIONS) that :func:`replace_leaf_qdisc` sends, sequence 0. Pure.

    The handle is 0: the kernel picks a free one (``qdisc_alloc_handle``,
    net/sched/sch_api.c); the qdisc is found again by its parent. ``params``: see
    :func:`leaf_qdisc_options`.
    """
    fixed = nl.TCMSG.pack(family=0, pad1=0, pad2=0, index=index, handle=0,
                          parent=parent, info=0)
    return nl.encode_message(nl.RTM_NEWQDISC, nl.FLAGS_REPLACE, 0, fixed, [
        (nl.TCA_KIND, nl.asciiz(kind)),
        (nl.TCA_OPTIONS, leaf_qdisc_options(kind, **params))])


def replace_leaf_qdisc(ipr, index: int, parent: int, kind: str, what: str,
                       **params: int) -> None:
    """Create the leaf qdisc under HTB class ``parent``, replacing the one there
    (the class's default pfifo, or ours): NLM_F_CREATE | NLM_F_REPLACE. Deleting
    the class deletes it too (sch_htb.c ``htb_destroy_class``). ``params``: see
    :func:`leaf_qdisc_options`.

    :raises KernelError: the kernel refused (ENOENT "Specified qdisc kind is
        unknown" when it has no such kind).
    """
    nl.tc_request(ipr, nl.RTM_NEWQDISC, nl.FLAGS_REPLACE, index=index, handle=0,
                  parent=parent, kind=kind, options=leaf_qdisc_options(kind, **params),
                  what=what)


def del_leaf_qdisc(ipr, index: int, parent: int, what: str) -> bool:
    """Delete the qdisc under class ``parent`` (the class gets its built-in
    pfifo back, sch_htb.c ``htb_graft``); False when none or gone."""
    for item in dump_qdiscs(ipr, index):
        if item.parent == parent:
            return nl.tc_request(ipr, nl.RTM_DELQDISC, nl.FLAGS_DEL, index=index,
                                 handle=item.handle, parent=parent, what=what,
                                 tolerate=GONE_IS_FALSE) is not False
    return False


# --------------------------------------------------------------------------
# Which kinds the kernel has
# --------------------------------------------------------------------------

_PROBE_HANDLE = 0x7A5F0000
#: A probe's answers: an unknown kind (ENOENT; EOPNOTSUPP from a module that
#: cannot load), a known one refusing the missing options (EINVAL; EEXIST when
#: the root qdisc of lo is taken already).
_PROBE_ANSWERS = {ENOENT: "missing", nl.EOPNOTSUPP: "missing",
                  EINVAL: "known", EEXIST: "known"}


def probe_qdisc_kinds(kinds) -> List[str]:
    """The qdisc kinds among ``kinds`` the kernel does not know.

    Asks the kernel to create each one as the root qdisc of ``lo`` WITHOUT
    options: a known kind fails in its init with EINVAL (``htb_init`` and
    ``tbf_init`` refuse a missing TCA_OPTIONS), an unknown kind with ENOENT
    ("Specified qdisc kind is unknown", net/sched/sch_api.c). Nothing is created
    either way.

    :raises KernelError: the kernel refused a probe for another reason.
    """
    missing = []
    ipr = open_ipr()
    try:
        lo = get_link(ipr, "lo")
        if lo is None:  # pragma: no cover
            raise EnvironmentProblem("no loopback netdev to probe qdisc kinds on")
        for kind in kinds:
            answer = nl.tc_request(ipr, nl.RTM_NEWQDISC, nl.FLAGS_ADD, index=lo.index,
                                   handle=_PROBE_HANDLE, parent=TC_H_ROOT, kind=kind,
                                   what=f"probe qdisc {kind}", tolerate=_PROBE_ANSWERS)
            if answer == "missing":
                missing.append(kind)
            elif answer != "known":
                # Created after all (a kind that accepts no options): take it away.
                del_root_qdisc(ipr, lo.index, _PROBE_HANDLE, f"probe qdisc {kind}")
    finally:
        ipr.close()
    return missing
