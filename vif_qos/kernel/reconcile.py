"""Bring running vifs' shaping to their plans in place, or say how they differ.

What ``vif-qos reload`` (``apply=True``) and ``vif-qos check`` / ``reload
--dry-run`` (``apply=False``) run, for plans resolved from the vifs' current
sources. One code path for both: every step compares what the kernel holds with
the plan, names the difference in one line, and (applying) changes only that.
Nothing differs: nothing is sent to the kernel.

How each difference is changed, never leaving a frame unshaped, sent direct or
in the uplink's default class, nor limited twice (README.rst, "Running guests"):

- inbound rate or bucket: the vif's TBF is changed in place
  (:func:`vif_qos.kernel.sched_tbf.change`), never deleted; a missing TBF is added;
- outbound rate/ceil/bucket/quantum: the HTB leaf is changed in place
  (:func:`vif_qos.kernel.sched_htb.change_class`);
- a move to another parent (pool in or out, another pool; HTB cannot move a
  class): the new leaf is added first, then ONE nftables transaction switches the
  vif's rule (skb priority = the new leaf) and map element, then the old leaf is
  deleted once its queue is empty (at most :data:`DRAIN_S`). A frame is classified
  by the old rule into the old leaf or by the new rule into the new leaf;
- what was wiped (``nft flush ruleset``, ``tc qdisc del dev UPLINK root``, a dom0
  boot): the table, the tree and the leaves are made again, keeping each vif's
  classid and mark where they are free;
- leftovers (entries of vifs whose netdev is gone, leaves no entry records, our
  TBFs on netdevs no entry records) are removed as ``vif-qos cleanup`` does.

Runs under the host lock (:mod:`vif_qos.kernel.alloc`), so onlines, offlines and
other reloads wait: a vif is neither lost nor shaped twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Collection, Dict, List, Optional, Sequence, Tuple

from vif_qos.core import units
from vif_qos.errors import KernelError, VifQosError
from vif_qos.constants import ROOT_MINOR
from vif_qos.kernel import admission, alloc, leaf, tree
from vif_qos.kernel import apply as applymod
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import qdisc, sched_htb, sched_tbf
from vif_qos.kernel import tc as tcadapter
from vif_qos.kernel.netlink import EEXIST
from vif_qos.kernel.steps import Undo
from vif_qos.model import ClassPlan, HostSettings, InboundPlan, VifPlan

log = logging.getLogger("vif_qos")

#: Longest wait for a replaced leaf's queue to drain before it is deleted, seconds.
DRAIN_S = 2.0
_DRAIN_POLL_S = 0.02


@dataclass
class VifResult:
    """One vif: ``changes`` are the differences found (and, applying, changed), one
    line each; ``error`` the one-line reason it could not be compared or changed
    (then it was left as it was); ``status`` the error's exit status."""

    vif: str
    changes: List[str] = field(default_factory=list)
    error: Optional[str] = None
    status: int = 0

    def to_json(self) -> dict:
        return {"vif": self.vif, "changes": list(self.changes), "error": self.error}


@dataclass
class Result:
    """Every vif's :class:`VifResult`, the uplinks' tree differences and the
    leftovers (found, or removed when applying)."""

    vifs: List[VifResult] = field(default_factory=list)
    uplinks: List[str] = field(default_factory=list)
    leftovers: List[str] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return (sum(len(v.changes) for v in self.vifs) + len(self.uplinks)
                + len(self.leftovers))


def _rate(bits: Optional[int]) -> str:
    return units.format_rate(bits) if bits else "none"


class _Run:
    """One reconcile pass: the netlink and nftables handles and what was read."""

    def __init__(self, ipr, nft, host: HostSettings, apply: bool, admit: bool = False,
                 links: Optional[Sequence[tcadapter.LinkInfo]] = None):
        self.admit = admit
        self.ipr = ipr
        self.nft = nft
        self.host = host
        self.apply = apply
        self.handle = host.qdisc_major << 16
        self.state = nftadapter.read_table(full=True, ctx=nft)
        self.trees_done: Dict[str, List[str]] = {}
        self.result = Result()
        # One dump each of links and qdiscs, and of each uplink's classes, instead
        # of a netlink request per vif (50 guests: 3 dumps instead of ~250 requests).
        self.links = {link.name: link for link in
                      (tcadapter.list_links(ipr) if links is None else links)}
        self.by_index = {link.index: link for link in self.links.values()}
        self.roots = {q.index: q for q in qdisc.dump_qdiscs(ipr)
                      if q.parent == tcadapter.TC_H_ROOT}
        self.class_cache: Dict[int, Dict[int, sched_htb.ClassInfo]] = {}
        self.uplinks: Dict[tuple, tcadapter.LinkInfo] = {}
        self.pool_minors: Dict[str, Dict[str, int]] = {}

    def classes(self, index: int) -> Dict[int, sched_htb.ClassInfo]:
        if index not in self.class_cache:
            self.class_cache[index] = {c.classid: c for c in
                                       sched_htb.dump_classes(self.ipr, index)}
        return self.class_cache[index]

    # -- the table ----------------------------------------------------------------
    def ensure_table(self) -> None:
        if self.state.exists:
            return
        self.result.uplinks.append(f"nftables: table {nftadapter.FAMILY} "
                                   f"{nftadapter.TABLE} is absent")
        if self.apply:
            nftadapter.run(nftadapter.create_table_cmds(),
                           f"table {nftadapter.FAMILY} {nftadapter.TABLE}", self.nft)
            self.state = nftadapter.TableState(True, {}, [], [])

    # -- inbound --------------------------------------------------------------------
    def inbound(self, plan: VifPlan, vif_link: tcadapter.LinkInfo, out: List[str]) -> None:
        q = self.roots.get(vif_link.index)
        ours = q is not None and q.handle == self.handle and q.kind == "tbf"
        what = f"tbf root qdisc {tcadapter.handle_str(self.handle)} on {plan.vif}"
        if plan.inbound is None:
            if ours:
                out.append(f"inbound: tbf {_rate(q.rate_bytes_per_s * 8)} present, "
                           "the plan shapes nothing inbound: removed")
                if self.apply:
                    tcadapter.del_root_qdisc(self.ipr, vif_link.index, self.handle, what)
            return
        want = applymod.fit_frame(plan.inbound, vif_link, plan.vif)
        params = dict(rate_bits_per_s=want.rate_bits_per_s, burst_bytes=want.burst_bytes,
                      limit_bytes=want.limit_bytes, peak_bits_per_s=want.peak_bits_per_s,
                      minburst_bytes=want.minburst_bytes, what=what)
        if not ours:
            found = "none" if q is None or q.handle == 0 else \
                f"{q.kind} {tcadapter.handle_str(q.handle)}"
            out.append(f"inbound: no vif-qos tbf (root qdisc {found}), want "
                       f"{_rate(want.rate_bits_per_s)}")
            if self.apply:
                if q is not None and q.handle == self.handle:  # ours, another kind
                    tcadapter.del_root_qdisc(self.ipr, vif_link.index, self.handle, what)
                sched_tbf.replace(self.ipr, vif_link.index, self.handle, **params)
            return
        diff = _tbf_difference(q, want)
        if diff:
            out.append(f"inbound: tbf {diff}")
            if self.apply:
                sched_tbf.change(self.ipr, vif_link.index, self.handle, **params)

    # -- outbound -----------------------------------------------------------------------
    def check_tree(self, link: tcadapter.LinkInfo, plan: VifPlan,
                   pool_minors: Dict[str, int]) -> None:
        """The shared tree on ``link``, compared (and made right) once per run."""
        if link.name in self.trees_done:
            return
        diffs = _tree_differences(self.ipr, link, plan, pool_minors)
        self.trees_done[link.name] = diffs
        self.result.uplinks += [f"uplink {link.name}: {d}" for d in diffs]
        if diffs and self.apply:
            tree.ensure_tree(self.ipr, link, plan.uplink, Undo(), pool_minors)

    def uplink(self, plan: VifPlan) -> Tuple[tcadapter.LinkInfo, Dict[str, int]]:
        """The plan's uplink and its pools' class minors, found once per run, its
        tree checked (:meth:`check_tree`)."""
        key = (plan.uplink.bridge, plan.uplink.device)
        if key not in self.uplinks:
            self.uplinks[key] = tree.resolve_uplink(self.ipr, plan.uplink, self.state,
                                                    plan.vif)
        link = self.uplinks[key]
        if link.name not in self.pool_minors:
            self.pool_minors[link.name] = (
                tree.pool_minors_of(self.ipr, link, plan.uplink, self.state, self.host)
                if plan.uplink.pools else {})
        pool_minors = self.pool_minors[link.name]
        self.check_tree(link, plan, pool_minors)
        return link, pool_minors

    def outbound(self, plan: VifPlan, entry: Optional[nftadapter.Entry], out: List[str]):
        """(uplink name, classid, old leaf to delete after the switch as
        (link, classid) or None)."""
        old = None
        if entry is not None and entry.classid is not None and entry.uplink:
            old_link = self.links.get(entry.uplink)
            if old_link is not None:
                old = (old_link, entry.classid)
        if plan.outbound is None:
            if old is not None:
                out.append(f"outbound: leaf {tcadapter.handle_str(old[1])} on "
                           f"{old[0].name} present, the plan shapes nothing outbound")
            return None, None, old
        link, pool_minors = self.uplink(plan)
        major = plan.uplink.qdisc_major
        o = plan.outbound
        parent = (major << 16) | (pool_minors[o.pool] if o.pool else ROOT_MINOR)
        want = _leaf_plan(plan)
        cur = None
        if old is not None and old[0].name == link.name and old[1] >> 16 == major:
            cur = self.classes(link.index).get(old[1])
        if self.admit and (cur is None or cur.parent != parent
                           or cur.rate_bytes_per_s * 8 != o.rate_bits_per_s):
            admission.check_leaf(self.ipr, link, parent, plan.vif, o.rate_bits_per_s,
                                 self.host, replacing=cur.classid if cur else None)
        if cur is not None and cur.parent == parent:
            self._leaf_in_place(link, cur, want, plan, out)
            return link.name, cur.classid, None
        out.append(_new_leaf_words(link, old, cur, want, parent, o.pool))
        if not self.apply:
            return link.name, (old[1] if old else None), None
        return self._new_leaf(link, plan, parent, old, cur)

    def _leaf_in_place(self, link: tcadapter.LinkInfo, cur: sched_htb.ClassInfo,
                       want: ClassPlan, plan: VifPlan, out: List[str]) -> None:
        """The vif's leaf ``cur``, under the right parent already, and its leaf
        qdisc changed in place to the plan."""
        if not tree.same_class(cur, want, cur.parent):
            out.append(f"outbound: leaf {tcadapter.handle_str(cur.classid)} "
                       f"{_class_words(cur)}, want {_plan_words(want)}")
            if self.apply:
                sched_htb.change_class(
                    self.ipr, link.index, cur.classid, cur.parent,
                    what=f"htb leaf class {tcadapter.handle_str(cur.classid)} of "
                         f"{plan.vif} on {link.name}", **tree.class_params(want))
        self._leaf_queue_in_place(link, cur.classid, plan, out)

    def _new_leaf(self, link: tcadapter.LinkInfo, plan: VifPlan, parent: int,
                  old: Optional[Tuple[tcadapter.LinkInfo, int]],
                  cur: Optional[sched_htb.ClassInfo]):
        """Add the vif's leaf under ``parent`` with its leaf qdisc; as
        :meth:`outbound` returns."""
        if (cur is None and old is not None and old[0].name == link.name
                and old[1] >> 16 == plan.uplink.qdisc_major):
            # Wiped (qdisc deleted): the same classid again, so the rule stays right.
            try:
                sched_htb.set_class(
                    self.ipr, link.index, old[1], parent, mode="add",
                    what=f"htb leaf class {tcadapter.handle_str(old[1])} of {plan.vif} "
                         f"on {link.name}", **tree.class_params(_leaf_plan(plan)))
                leaf.add_leaf_queue(self.ipr, link, old[1], plan)
                return link.name, old[1], None
            except KernelError as err:
                if err.errno != EEXIST:
                    raise
        classid = leaf.add_leaf(self.ipr, link, plan, self.host, self.state, parent)
        leaf.add_leaf_queue(self.ipr, link, classid, plan)
        return link.name, classid, (old if cur is not None or (
            old is not None and old[0].name != link.name) else None)

    def _leaf_queue_in_place(self, link, classid: int, plan: VifPlan,
                             out: List[str]) -> None:
        """The leaf qdisc of a leaf class kept in place: its limit follows the rate
        (rate x latency + 64 KiB), so a changed rate changes it too. bfifo to bfifo
        is a change in place (sch_fifo.c's ``change``: nothing queued is dropped)."""
        want = plan.outbound.leaf_qdisc
        if want is None:
            return
        kind = leaf.leaf_qdisc_kind(self.ipr, want)
        found = leaf.leaf_qdisc_of(self.ipr, link.index, classid)
        if leaf.same_leaf(found, kind, want):
            return
        out.append(f"outbound: leaf qdisc of {tcadapter.handle_str(classid)} "
                   f"{_leaf_words(found.kind if found else None, found)}, want "
                   f"{_leaf_words(kind, want)}")
        if self.apply:  # kind and current qdisc known: replaced here, not looked up again
            qdisc.replace_leaf_qdisc(
                self.ipr, link.index, classid, kind,
                f"leaf qdisc of htb leaf class {tcadapter.handle_str(classid)} of "
                f"{plan.vif} on {link.name}",
                **leaf.leaf_params(want, plan.outbound.quantum_bytes))

    # -- one vif ------------------------------------------------------------------------
    def vif(self, plan: VifPlan) -> VifResult:
        res = VifResult(plan.vif)
        vif_link = self.links.get(plan.vif)
        if vif_link is None:
            res.error = "the netdev is gone"
            return res
        entry = self.state.entries.get(plan.vif)
        self.inbound(plan, vif_link, res.changes)
        uplink, classid, old = self.outbound(plan, entry, res.changes)
        mark = entry.mark if entry is not None else None
        if mark is None and self.apply:
            mark = applymod.free_mark(self.host, self.state)
        want = nftadapter.Entry(vif=plan.vif, bridge=plan.bridge, uplink=uplink,
                                classid=classid, mark=mark,
                                inbound=plan.inbound is not None,
                                pool=plan.outbound.pool if plan.outbound else None)
        diff = _entry_difference(entry, want, self.state)
        if diff:
            res.changes.append(f"nftables: {diff}")
            if self.apply:
                nftadapter.run(nftadapter.replace_entry_cmds(want, self.state,
                                                             self.host.mark_mask),
                               f"nftables entry of {plan.vif}", self.nft)
                self.state.entries[plan.vif] = want
                for names, name in ((self.state.elements, plan.vif),
                                    (self.state.chains, want.chain)):
                    if name not in names:
                        names.append(name)
        if old is not None and self.apply:
            _drain_then_delete(self.ipr, old[0], old[1], plan.vif)
        return res

    # -- leftovers ------------------------------------------------------------------------
    def leftovers(self, running: Collection[str], keep: Collection[str]) -> None:
        for name in sorted(self.state.entries):
            if name in running or name in keep:
                continue
            gone = name not in self.links
            self.result.leftovers.append(
                f"{name}: shaped, " + ("its netdev is gone" if gone else
                                       "but not a running vif in xenstore"))
            if self.apply and gone:
                applymod.remove_locked(self.ipr, name, self.host, self.state, self.nft)
                self.state = nftadapter.read_table(full=True, ctx=self.nft)
        found = _find_leftovers(self, self.host, self.state)
        if self.apply and found:
            self.result.leftovers += applymod.remove_leftovers(self.ipr, self.host,
                                                                self.state)
        elif not self.apply:
            self.result.leftovers += found


def reconcile(plans: Sequence[VifPlan], host: HostSettings, *, apply: bool,
              keep: Collection[str] = (), sweep: bool = True,
              admit: bool = False,
              links: Optional[Sequence[tcadapter.LinkInfo]] = None) -> Result:
    """Compare (``apply=False``) or bring (``apply=True``) the kernel to ``plans``,
    in the current network namespace, under the host lock.

    :param plans: one per running vif whose shaping should be what it says.
    :param keep: vif names whose entries are left alone and not reported (a vif
        whose plan failed, one being removed).
    :param sweep: also find (and, applying, remove) leftovers of vifs not in
        ``plans`` or ``keep``.
    :param admit: check each new or changed guaranteed rate against its parent
        (:func:`vif_qos.kernel.admission.check_leaf`, ``[host] admission``); a
        refused one is that vif's error (status 2).
    :param links: the namespace's netdevs (:func:`vif_qos.kernel.tc.list_links`)
        when the caller just read them under the same lock; default: read here.
    :returns: what differed (and was changed), per vif, uplink and leftover. A
        vif that fails is reported with its error and the others go on.
    """
    with alloc.host_lock():
        ipr = tcadapter.open_ipr()
        try:
            run = _Run(ipr, nftadapter.open_ctx(), host, apply, admit, links)
            if plans:
                run.ensure_table()
            for plan in plans:
                try:
                    run.result.vifs.append(run.vif(plan))
                except VifQosError as err:
                    run.result.vifs.append(VifResult(plan.vif, error=err.one_line(),
                                                      status=err.exit_status))
            if sweep:
                run.leftovers({p.vif for p in plans}, keep)
            return run.result
        finally:
            ipr.close()


# -- comparisons (no I/O) -------------------------------------------------------------


def _leaf_plan(plan: VifPlan) -> ClassPlan:
    """The vif's leaf class as a :class:`~vif_qos.model.ClassPlan`, to be compared
    and changed as the tree's classes are."""
    o = plan.outbound
    return ClassPlan("leaf", o.rate_bits_per_s, o.ceil_bits_per_s, o.burst_bytes,
                     o.cburst_bytes, o.quantum_bytes)


def _new_leaf_words(link: tcadapter.LinkInfo, old: Optional[Tuple[tcadapter.LinkInfo, int]],
                    cur: Optional[sched_htb.ClassInfo], want: ClassPlan, parent: int,
                    pool: Optional[str]) -> str:
    """Why the vif needs a new leaf: its leaf is under another parent (``cur``),
    missing on the uplink (wiped), or there is none."""
    where = f"pool {pool}" if pool else "the root class"
    if cur is not None:
        return (f"outbound: leaf {tcadapter.handle_str(cur.classid)} is under "
                f"{tcadapter.handle_str(cur.parent)}, want {where} "
                f"({tcadapter.handle_str(parent)}): new leaf, switch, old removed")
    if old is not None and old[0].name == link.name:
        return (f"outbound: leaf {tcadapter.handle_str(old[1])} is missing on "
                f"{link.name}, want {_plan_words(want)} under {where}")
    return f"outbound: no leaf, want {_plan_words(want)} under {where} on {link.name}"


def _tbf_difference(q: qdisc.QdiscInfo, want: InboundPlan) -> Optional[str]:
    """A words-difference between the TBF read back and the plan, or None.

    The kernel keeps the bucket as time (ns) and reports it in 64 ns ticks,
    rounded down (sch_tbf.c ``tbf_dump``), so a bucket read back may be up to
    one tick's worth of bytes (plus one) below what was sent.
    """
    rate = want.rate_bits_per_s // 8
    parts = []
    if q.rate_bytes_per_s != rate:
        parts.append(f"rate {_rate((q.rate_bytes_per_s or 0) * 8)}, want "
                     f"{_rate(want.rate_bits_per_s)}")
    if q.limit_bytes != want.limit_bytes:
        parts.append(f"limit {q.limit_bytes} B, want {want.limit_bytes} B")
    if rate and q.buffer_ticks is not None:
        got = tcadapter.ticks_to_size(q.buffer_ticks, rate)
        if abs(got - want.burst_bytes) > rate // tcadapter.TICKS_PER_S + 2:
            parts.append(f"burst {got} B, want {want.burst_bytes} B")
    peak = (want.peak_bits_per_s or 0) // 8
    if (q.peak_bytes_per_s or 0) != peak:
        parts.append(f"peak {_rate((q.peak_bytes_per_s or 0) * 8)}, want "
                     f"{_rate(want.peak_bits_per_s)}")
    elif peak and want.minburst_bytes and q.mtu_ticks is not None:
        got = tcadapter.ticks_to_size(q.mtu_ticks, peak)
        if abs(got - want.minburst_bytes) > peak // tcadapter.TICKS_PER_S + 2:
            parts.append(f"minburst {got} B, want {want.minburst_bytes} B")
    return ", ".join(parts) or None


def _leaf_words(kind: Optional[str], q) -> str:
    """A leaf qdisc (found, or planned) as check prints it."""
    if kind is None:
        return "the kernel's default pfifo"
    if kind == "bfifo":
        return f"bfifo limit {q.limit_bytes} B"
    return f"{kind} target {q.target_us} us interval {q.interval_us} us"


def _class_words(c: sched_htb.ClassInfo) -> str:
    return (f"rate {_rate(c.rate_bytes_per_s * 8)} ceil {_rate(c.ceil_bytes_per_s * 8)} "
            f"burst {c.burst_bytes} B cburst {c.cburst_bytes} B quantum {c.quantum_bytes} B")


def _plan_words(p: ClassPlan) -> str:
    return (f"rate {_rate(p.rate_bits_per_s)} ceil {_rate(p.ceil_bits_per_s)} "
            f"burst {p.burst_bytes} B cburst {p.cburst_bytes} B quantum {p.quantum_bytes} B")


def _entry_difference(entry: Optional[nftadapter.Entry], want: nftadapter.Entry,
                      state: nftadapter.TableState) -> Optional[str]:
    parts = []
    if want.vif not in state.elements:
        parts.append("map element missing")
    if entry is None:
        parts.append("no rule records the vif" if want.chain in state.chains
                     else "chain and rule missing")
    else:
        for name in ("bridge", "uplink", "classid", "mark", "inbound", "pool"):
            got, wanted = getattr(entry, name), getattr(want, name)
            if name == "mark" and wanted is None:
                continue  # allocated when applying
            if got != wanted:
                if name == "classid":
                    got = tcadapter.handle_str(got) if got is not None else None
                    wanted = tcadapter.handle_str(wanted) if wanted is not None else None
                parts.append(f"records {name}={got}, want {wanted}")
    return "; ".join(parts) or None


def _tree_differences(ipr, link: tcadapter.LinkInfo, plan: VifPlan,
                      pool_minors: Dict[str, int]) -> List[str]:
    """How the shared tree on ``link`` differs from the plan's, one line each.

    :raises KernelError: a root qdisc not ours (:func:`vif_qos.kernel.tree.refuse_foreign_root`).
    """
    major = plan.uplink.qdisc_major << 16
    root = qdisc.get_root_qdisc(ipr, link.index)
    if root is None or root.handle == 0:
        return [f"no vif-qos htb root qdisc {tcadapter.handle_str(major)}"]
    tree.refuse_foreign_root(link, root, major)
    diffs = []
    for want, classid, parent in tree.shared_classes(plan.uplink, pool_minors):
        found = sched_htb.get_class(ipr, link.index, classid)
        label = f"class {tcadapter.handle_str(classid)} ({want.name})"
        if found is None:
            diffs.append(f"{label} missing")
        elif not tree.same_class(found, want, parent):
            diffs.append(f"{label} {_class_words(found)}, want {_plan_words(want)}")
    return diffs


def _find_leftovers(run: "_Run", host: HostSettings,
                    state: nftadapter.TableState) -> List[str]:
    """What :func:`vif_qos.kernel.apply.remove_leftovers` would remove (read only,
    from the run's dumps)."""
    handle = host.qdisc_major << 16
    recorded = {(e.uplink, e.classid) for e in state.entries.values()}
    shaped_in = {e.vif for e in state.entries.values() if e.inbound}
    found = []
    for q in run.roots.values():
        if q.handle != handle:
            continue
        link = run.by_index.get(q.index)
        if link is None:
            continue
        if q.kind == "htb":
            for c in run.classes(q.index).values():
                if (c.level == 0 and host.classid_min <= c.classid & 0xFFFF <= host.classid_max
                        and (link.name, c.classid) not in recorded):
                    found.append(f"leaf {tcadapter.handle_str(c.classid)} on {link.name}: "
                                 "no entry records it")
        elif q.kind == "tbf" and link.name not in shaped_in:
            found.append(f"tbf {tcadapter.handle_str(handle)} on {link.name}: "
                         "no entry records it")
    return found


def _drain_then_delete(ipr, link: tcadapter.LinkInfo, classid: int, vif: str) -> None:
    """Delete the vif's old leaf once nothing is queued in it (frames already
    classified into it leave at its rate), or after :data:`DRAIN_S`."""
    what = f"htb leaf class {tcadapter.handle_str(classid)} of {vif} on {link.name}"
    deadline = time.monotonic() + DRAIN_S
    while time.monotonic() < deadline:
        backlog = sched_htb.class_backlog(ipr, link.index, classid)
        if backlog is None or backlog[0] == 0:
            break
        time.sleep(_DRAIN_POLL_S)
    else:
        log.warning("vif-qos: %s: %s still held frames after %.1f s; deleted", vif, what,
                    DRAIN_S)
    tcadapter.del_class(ipr, link.index, classid, what)
