"""Apply a :class:`~vif_qos.model.VifPlan` to the kernel, and take it away again.

The public API (all in the calling thread's current network namespace; each call
opens its own netlink and nftables handles):

- :func:`apply_vif` -> :class:`Applied`
- :func:`remove_vif` -> bool
- :func:`list_applied`, :func:`cleanup_orphans`, :func:`check_support`
- for :mod:`vif_qos.kernel.reconcile`, under the host lock it holds:
  :func:`remove_locked`, :func:`remove_leftovers`, :func:`fit_frame`,
  :func:`free_mark`

built on :mod:`vif_qos.kernel.tree` (the uplink's shared HTB tree),
:mod:`vif_qos.kernel.leaf` (a vif's leaf class and the leaf qdisc) and
:mod:`vif_qos.kernel.steps` (the undo stack and the kill points); what it holds
is read back by :mod:`vif_qos.kernel.status`.

What one vif gets (see README.rst, "What vif-qos puts in the kernel"):

- inbound: a TBF root qdisc ``qdisc_major:0`` on the vif;
- outbound: an HTB leaf class ``qdisc_major:minor`` on the uplink, under its pool
  class or the root class of the shared tree (root qdisc ``qdisc_major:0``,
  ``default 2``, root class ``:1``, default class ``:2``, pools ``:0x10+i``
  or, when the policy's pools moved while members remain, the class their
  members sit under, see :func:`vif_qos.kernel.tree.pool_minors_of`), created on
  first use;
- under that leaf (and under the default class) a leaf qdisc bounding its queue
  in time (bfifo, or fq_codel where the kernel has it; ``model.LeafQdiscPlan``),
  created with the class and deleted by the kernel with it;
- classification: a chain and a map element in the nftables table
  ``bridge vif_qos`` setting skb priority = leaf classid and the mark value
  (``mark & ~mask | value``), with a counter; its rule comment records vif,
  bridge, uplink, classid, mark and whether a TBF was put on the vif.

Everything runs under the host lock (:mod:`vif_qos.kernel.alloc`). On a failure the
steps already done are undone in reverse order, the nftables part being one
transaction, so nothing of the failed apply remains.

Killed at any instant (SIGKILL: libxl's 40 s timeout, an admin's Ctrl-C on a
hung run), nothing can undo; so every state between two steps passes traffic
and is recorded: the HTB root is made with a direct queue (frames pass unshaped
until its default class exists, see :data:`vif_qos.kernel.tree.DIRECT_QLEN_PACKETS`),
the nftables entry is written before the leaf and the TBF it records (a priority
naming a leaf not made yet falls to the default class), and removal takes the
leaf and the TBF before the entry. Every later run repairs what it finds on the
uplink it touches (:func:`vif_qos.kernel.tree.repair_uplink`).
``VIF_QOS_TEST_KILL_AT=STEP`` makes the process SIGKILL itself at one of
:data:`KILL_STEPS` (tests only; defined in :mod:`vif_qos.kernel.steps`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

from vif_qos.constants import ETH_HLEN_BYTES, ROOT_MINOR
from vif_qos.errors import EnvironmentProblem, InputError, KernelError
from vif_qos.kernel import admission, alloc, leaf, ledger, tree
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import qdisc, sched_tbf
from vif_qos.kernel import tc as tcadapter
from vif_qos.kernel.steps import KILL_ENV, KILL_STEPS, Undo, kill_point
from vif_qos.model import HostSettings, InboundPlan, VifPlan

log = logging.getLogger("vif_qos")

#: The public names; the kill points (:data:`KILL_ENV`, :data:`KILL_STEPS`) are
#: defined in :mod:`vif_qos.kernel.steps` and named through this module too.
__all__ = ["Applied", "KILL_ENV", "KILL_STEPS", "apply_vif", "check_support",
           "cleanup_orphans", "fit_frame", "free_mark", "list_applied",
           "remove_leftovers", "remove_locked", "remove_vif"]

#: Netdev kinds (IFLA_INFO_KIND) that hold other netdevs: never a guest's port.
MASTER_KINDS = ("bridge", "bond", "team", "openvswitch")


@dataclass(frozen=True)
class Applied:
    """What is in the kernel for one vif.

    ``uplink`` is the netdev carrying its HTB leaf (None: outbound not shaped);
    ``classid`` that leaf (``major<<16|minor``) or None; ``mark`` the mark value
    set within the host's mask or None; ``inbound`` whether a TBF was put on the
    vif. ``packets``/``bytes`` are the nftables counter of frames from the vif.
    """

    vif: str
    uplink: Optional[str]
    classid: Optional[int]
    mark: Optional[int]
    inbound: bool
    bridge: Optional[str] = None
    packets: int = 0
    bytes: int = 0


def _applied(entry: nftadapter.Entry) -> Applied:
    return Applied(vif=entry.vif, uplink=entry.uplink, classid=entry.classid,
                   mark=entry.mark, inbound=entry.inbound, bridge=entry.bridge,
                   packets=entry.packets, bytes=entry.bytes)


# --------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------

def apply_vif(plan: VifPlan, owner: Optional[Tuple[int, int]] = None) -> Applied:
    """Shape one vif as ``plan`` says, in the current network namespace.

    Replaces whatever vif-qos holds for a vif of the same name (a stale entry
    is removed first, never merged). ``owner`` is the guest's ``(domid, devid)``,
    recorded with the entry: an entry of another guest whose netdev is this very
    netdev (same ifindex) is that guest's live shaping, and is refused, not
    replaced. Raises KernelError naming the object and the kernel's message,
    InputError for a netdev that is not a guest port (a bridge, an uplink), or
    EnvironmentProblem; on any failure nothing of this apply remains and other
    vifs are untouched.
    """
    host = plan.host
    _check_utf8(plan.vif)
    ipr = tcadapter.open_ipr()  # imports pyroute2: before the lock, not under it
    try:
        nft = nftadapter.open_ctx()
        # pyroute2 builds its message parsers on first use (tens of ms): here.
        tcadapter.get_link(ipr, plan.vif)
        with alloc.host_lock():
            kill_point("locked")
            first_ledger = not ledger.exists()
            _note_in_ledger(plan.vif)
            if first_ledger:
                # A vif-qos that kept no ledger (the version before an upgrade) may
                # have shaped running guests: note every vif our table records, so
                # that their offline still removes their state.
                known = nftadapter.read_table(ctx=nft)
                for name in set(known.entries) | set(known.elements):
                    _note_in_ledger(name)
            return _apply_locked(ipr, nft, plan, host, owner)
    finally:
        ipr.close()


def _note_in_ledger(vif: str) -> None:
    """Record ``vif`` in :mod:`vif_qos.kernel.ledger` before the kernel changes."""
    try:
        ledger.record(vif)
    except (OSError, ValueError) as err:
        raise EnvironmentProblem(f"cannot record {vif} in {ledger.ledger_dir()}: "
                                 f"{getattr(err, 'strerror', None) or err}") from err


def _owner_text(owner: Optional[Tuple[int, int]]) -> Optional[str]:
    return None if owner is None else f"{owner[0]}.{owner[1]}"


def _check_guest_port(ipr, vif_link: tcadapter.LinkInfo, plan: VifPlan,
                      state: nftadapter.TableState) -> None:
    """Refuse a netdev that is not a guest's port: a bridge or another master
    (:data:`MASTER_KINDS`), the plan's bridge or uplink, an uplink our entries
    record, or a netdev carrying our HTB tree. A ``vifname`` naming one of them
    would replace every guest's classes with a TBF or shape the bridge itself."""
    name = vif_link.name
    role = None
    if vif_link.kind in MASTER_KINDS or name == plan.bridge:
        role = f"a {vif_link.kind or 'bridge'}"
    elif plan.uplink is not None and plan.uplink.device == name:
        role = f"the uplink of bridge {plan.uplink.bridge}"
    elif any(e.uplink == name for e in state.entries.values()):
        role = "the uplink vif-qos shapes other guests on"
    else:
        root = qdisc.get_root_qdisc(ipr, vif_link.index)
        if (root is not None and root.kind == "htb"
                and root.handle == plan.host.qdisc_major << 16):
            role = "a netdev carrying vif-qos's HTB tree (an uplink)"
    if role is not None:
        raise InputError(f"the netdev to shape is {role}, not a guest's port; "
                         "vif-qos refuses it (check the vif's vifname)", token=name,
                         source="vif")


def _check_utf8(name: str) -> None:
    """Refuse a netdev name holding bytes that are not UTF-8 (kept as surrogate
    escapes): the kernel takes any byte, but nftables names a vif by UTF-8 text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the netdev name is not UTF-8 text; vif-qos names vifs in "
                         "nftables, which takes UTF-8 only", token=name,
                         source="vif") from None


def _apply_locked(ipr, nft, plan: VifPlan, host: HostSettings,
                  owner: Optional[Tuple[int, int]] = None) -> Applied:
    vif_link = tcadapter.get_link(ipr, plan.vif)
    if vif_link is None:
        raise KernelError(f"vif {plan.vif}: no such netdev")
    state = nftadapter.read_table(ctx=nft)
    _check_guest_port(ipr, vif_link, plan, state)
    state = _remove_stale(ipr, nft, plan, owner, vif_link, state)
    undo = Undo()
    try:
        link, parent, classid = _prepare_outbound(ipr, plan, state, undo)
        entry = nftadapter.Entry(
            vif=plan.vif, bridge=plan.bridge, uplink=link.name if link else None,
            classid=classid, mark=free_mark(host, state),
            inbound=plan.inbound is not None,
            pool=plan.outbound.pool if plan.outbound else None,
            owner=_owner_text(owner), ifindex=vif_link.index)
        # The entry first: from here on whatever this apply makes is recorded,
        # so a kill leaves nothing a later run cannot find. Its priority names a
        # leaf that does not exist yet: frames fall to the default class.
        _record_entry(ipr, nft, entry, host, state, undo)
        kill_point("entry")
        if plan.outbound is not None:
            leaf.make_leaf(ipr, link, plan, classid, parent, undo)
            kill_point("leaf")
        if plan.inbound is not None:
            _apply_tbf(ipr, vif_link, plan, host, undo)
            kill_point("tbf")
    except BaseException:
        undo.run()
        raise
    log.debug("vif-qos: %s: applied %s", plan.vif, entry.comment())
    return _applied(entry)


def _remove_stale(ipr, nft, plan: VifPlan, owner: Optional[Tuple[int, int]],
                  vif_link: tcadapter.LinkInfo,
                  state: nftadapter.TableState) -> nftadapter.TableState:
    """Remove what our table holds for a vif of this name (an earlier guest's,
    or this one's before a re-apply: replaced, never merged); returns the table
    as it is then.

    :raises KernelError: the entry is another guest's (``owner``) on this very
        netdev (same ifindex): its live shaping, left alone.
    """
    stale = state.entries.get(plan.vif)
    if (stale is not None and owner is not None and stale.owner is not None
            and stale.owner != _owner_text(owner) and stale.ifindex == vif_link.index):
        raise KernelError(
            f"vif {plan.vif}: netdev {plan.vif} (ifindex {vif_link.index}) is shaped "
            f"for guest {stale.owner} (domid.devid), not {_owner_text(owner)}; "
            "two guests cannot share one vifname (vif-qos leaves the other "
            "guest's shaping alone)")
    if plan.vif in state.entries or plan.vif in state.elements \
            or nftadapter.chain_name(plan.vif) in state.chains:
        log.info("vif-qos: %s: replacing the stale entry of an earlier guest",
                 plan.vif)
        # A TBF the plan keeps is replaced in place below, never removed first
        # (a drift repair re-applies live vifs: no moment without their limit).
        remove_locked(ipr, plan.vif, plan.host, state, nft,
                      keep_tbf=plan.inbound is not None)
        state = nftadapter.read_table(ctx=nft)
        kill_point("stale-removed")
    return state


def _prepare_outbound(ipr, plan: VifPlan, state: nftadapter.TableState, undo: Undo
                      ) -> Tuple[Optional[tcadapter.LinkInfo], int, Optional[int]]:
    """For a plan that shapes outbound: ``(uplink, parent classid, free leaf
    classid)``, with the uplink's tree complete (:func:`vif_qos.kernel.tree.ensure_tree`,
    its changes pushed on ``undo``) and the leaf's rate admitted under its parent
    (:func:`vif_qos.kernel.admission.check_leaf`). ``(None, 0, None)`` for a plan
    that does not.

    :raises KernelError: no uplink plan, a pool the uplink plan lacks, or the
        kernel refused.
    :raises AdmissionRefused: the guaranteed rate does not fit (``admission = refuse``).
    """
    host = plan.host
    if plan.outbound is None:
        return None, 0, None
    if plan.uplink is None:
        raise KernelError(f"vif {plan.vif}: outbound shaping without an uplink plan")
    link = tree.resolve_uplink(ipr, plan.uplink, state, plan.vif)
    major = plan.uplink.qdisc_major
    pool_minors = (tree.pool_minors_of(ipr, link, plan.uplink, state, host)
                   if plan.uplink.pools else {})
    if plan.outbound.pool is None:
        parent = (major << 16) | ROOT_MINOR
    else:
        names = [p.name for p in plan.uplink.pools]
        if plan.outbound.pool not in names:
            raise KernelError(f"vif {plan.vif}: pool {plan.outbound.pool!r} "
                              f"is not in the uplink plan ({', '.join(names)})")
        parent = (major << 16) | pool_minors[plan.outbound.pool]
    if not state.exists:  # a flushed table: leaves nothing classifies into
        tree.repair_uplink(ipr, link, host, state, sweep_leaves=True)
    tree.ensure_tree(ipr, link, plan.uplink, undo, pool_minors)  # completes it
    admission.check_leaf(ipr, link, parent, plan.vif, plan.outbound.rate_bits_per_s, host)
    return link, parent, leaf.free_classid(major, host, state)


def free_mark(host: HostSettings, state: nftadapter.TableState) -> Optional[int]:
    """A mark value no entry holds, within ``host.mark_mask`` (None: no mask)."""
    if not host.mark_mask:
        return None
    return alloc.allocate_mark([e.mark for e in state.entries.values()
                                if e.mark is not None], host.mark_mask)


def _record_entry(ipr, nft, entry: nftadapter.Entry, host: HostSettings,
                  state: nftadapter.TableState, undo: Undo) -> None:
    """Write ``entry`` in one nftables transaction (with the table, and the vifs
    still carrying our TBF recorded again, when the table is absent); its undo
    takes it (or the table made here) away again."""
    cmds = [] if state.exists else nftadapter.create_table_cmds()
    lost: List[nftadapter.Entry] = []
    if not state.exists:
        lost = _tbf_vifs_without_table(ipr, host, entry.vif)
        for item in lost:
            cmds += nftadapter.add_entry_cmds(item, host.mark_mask)
    cmds += nftadapter.add_entry_cmds(entry, host.mark_mask)
    what = (f"nftables entry of {entry.vif} (table bridge "
            f"{nftadapter.TABLE}, chain {entry.chain})")
    nftadapter.run(cmds, what, nft)
    undo.push(what, lambda: nftadapter.run(
        nftadapter.delete_table_cmds() if not state.exists and not lost
        else nftadapter.entry_removal_cmds(entry.vif), "undoing " + what, nft))


def _tbf_vifs_without_table(ipr, host: HostSettings, vif: str) -> List[nftadapter.Entry]:
    """Inbound-only entries for the netdevs (other than ``vif``) that carry our
    TBF while our table is absent: it was deleted under live guests (``nft flush
    ruleset``, as ``systemctl restart nftables`` does). Recorded again, a later
    cleanup sweep keeps their TBF and an offline removes it; which HTB leaf was
    whose is lost (those leaves are swept, and the guests' outbound stays
    unclassified until they come online again: logged)."""
    handle = host.qdisc_major << 16
    lost = []
    for q in qdisc.dump_qdiscs(ipr):
        if q.parent != tcadapter.TC_H_ROOT or q.handle != handle or q.kind != "tbf":
            continue
        link = tcadapter.get_link_by_index(ipr, q.index)
        if link is not None and link.name != vif:
            lost.append(nftadapter.Entry(vif=link.name, inbound=True))
    if lost:
        log.warning("vif-qos: table bridge %s was absent while %d vif(s) carry "
                    "vif-qos's tbf (nft flush ruleset?): their inbound shaping is "
                    "recorded again, their outbound is not classified until they "
                    "come online again: %s", nftadapter.TABLE, len(lost),
                    ", ".join(sorted(e.vif for e in lost)))
    return lost


def _apply_tbf(ipr, vif_link: tcadapter.LinkInfo, plan: VifPlan,
               host: HostSettings, undo: Undo) -> None:
    handle = host.qdisc_major << 16
    inbound = fit_frame(plan.inbound, vif_link, plan.vif)
    before = qdisc.get_root_qdisc(ipr, vif_link.index)
    if before is not None and before.handle not in (0, handle):
        log.warning("vif-qos: %s: replacing its root qdisc %s %s (not vif-qos's) "
                    "with vif-qos's tbf", plan.vif, before.kind,
                    tcadapter.handle_str(before.handle))
    elif before is not None and before.handle == handle and before.kind != "tbf":
        tcadapter.del_root_qdisc(ipr, vif_link.index, handle, plan.vif)
    what = f"tbf root qdisc {tcadapter.handle_str(handle)} on {plan.vif}"
    sched_tbf.replace(
        ipr, vif_link.index, handle, rate_bits_per_s=inbound.rate_bits_per_s,
        burst_bytes=inbound.burst_bytes, limit_bytes=inbound.limit_bytes,
        peak_bits_per_s=inbound.peak_bits_per_s,
        minburst_bytes=inbound.minburst_bytes, what=what)
    undo.push(what, lambda: tcadapter.del_root_qdisc(ipr, vif_link.index, handle, what))


def fit_frame(inbound: InboundPlan, vif_link: tcadapter.LinkInfo,
              vif: str) -> InboundPlan:
    """``inbound`` with burst, limit and minburst raised to one full frame of the
    vif's MTU when the plan (made for the policy's ``mtu``) has less.

    TBF drops every packet longer than its bucket (``net/sched/sch_tbf.c:
    tbf_enqueue``, ``max_size``), so a jumbo-MTU vif (vif-bridge gives it the
    bridge's MTU or the backend's ``mtu``) with a 1500-byte plan would receive
    nothing. Logs a warning naming each value raised.
    """
    frame = vif_link.mtu_bytes + ETH_HLEN_BYTES if vif_link.mtu_bytes else 0
    raised = {}
    for name in ("burst_bytes", "limit_bytes", "minburst_bytes"):
        value = getattr(inbound, name)
        if value is not None and frame and 0 < value < frame:  # <= 0: refused by sched_tbf
            raised[name] = frame
    if not raised:
        return inbound
    log.warning("vif-qos: %s: mtu %d: raising the tbf %s to %d bytes, one full frame "
                "(set mtu in [host] of /etc/xen/vif-qos.conf to plan for it)", vif,
                vif_link.mtu_bytes,
                ", ".join(f"{k.replace('_bytes', '')} {getattr(inbound, k)}"
                          for k in raised), frame)
    return replace(inbound, **raised)


# --------------------------------------------------------------------------
# Removing
# --------------------------------------------------------------------------

def remove_vif(vif: str, host: Optional[HostSettings] = None,
               owner: Optional[Tuple[int, int]] = None,
               only_if_gone: bool = False) -> bool:
    """Remove everything vif-qos holds for ``vif``; True if anything was removed.

    Idempotent; works when the netdev is already gone (its TBF went with it).
    Deletes by exact handle: its HTB leaf class on the recorded uplink, its TBF
    if the netdev still exists and the root qdisc is vif-qos's, then the vif's
    map element and chain (the record goes last: killed midway, what is left is
    still recorded). The shared HTB tree stays. ``owner`` (``(domid, devid)``):
    an entry recorded for another guest is left alone (False, logged); an entry
    without an owner (written before vif-qos recorded one) is removed. Partial
    state on the recorded uplink is repaired (:func:`vif_qos.kernel.tree.repair_uplink`).
    ``only_if_gone``: do nothing (False) when a netdev called ``vif`` exists,
    looked up under the lock (udev's ``cleanup --vif`` of an old guest's name
    racing a new guest's ``online`` for it).
    """
    host = host or HostSettings()
    _check_utf8(vif)
    ipr = tcadapter.open_ipr()  # imports pyroute2: before the lock, not under it
    try:
        nft = nftadapter.open_ctx()
        # pyroute2 builds its message parsers on first use (tens of ms): here.
        tcadapter.get_link(ipr, "lo")
        with alloc.host_lock():
            if only_if_gone and tcadapter.get_link(ipr, vif) is not None:
                log.debug("vif-qos: netdev %s exists: nothing to clean up", vif)
                return False
            state = nftadapter.read_table(ctx=nft)
            entry = state.entries.get(vif)
            if (entry is not None and owner is not None and entry.owner is not None
                    and entry.owner != _owner_text(owner)):
                log.info("vif-qos: %s: its shaping belongs to guest %s (domid.devid), "
                         "not %s: left alone", vif, entry.owner, _owner_text(owner))
                return False
            removed = remove_locked(ipr, vif, host, state, nft)
            if entry is not None and entry.uplink:
                link = tcadapter.get_link(ipr, entry.uplink)
                if link is not None:
                    tree.repair_uplink(ipr, link, host, nftadapter.read_table(ctx=nft))
            ledger.forget(vif)
            return removed
    finally:
        ipr.close()


def remove_locked(ipr, vif: str, host: HostSettings,
                  state: nftadapter.TableState, nft=None, keep_tbf: bool = False) -> bool:
    """Remove ``vif``'s shaping (leaf, TBF unless ``keep_tbf``, then its nftables
    entry), the caller holding the host lock. True when something was removed."""
    removed = False
    entry = state.entries.get(vif)
    if entry is not None and entry.classid is not None and entry.uplink:
        link = tcadapter.get_link(ipr, entry.uplink)
        if link is not None:
            removed |= tcadapter.del_class(
                ipr, link.index, entry.classid,
                f"htb leaf class {tcadapter.handle_str(entry.classid)} of {vif} "
                f"on {entry.uplink}")
            kill_point("remove-leaf")
    vif_link = None if keep_tbf else tcadapter.get_link(ipr, vif)
    if vif_link is not None:
        handle = host.qdisc_major << 16
        root = qdisc.get_root_qdisc(ipr, vif_link.index)
        if root is not None and root.handle == handle and root.kind == "tbf":
            removed |= tcadapter.del_root_qdisc(ipr, vif_link.index, handle,
                                                f"tbf root qdisc on {vif}")
            kill_point("remove-tbf")
    cmds = nftadapter.remove_entry_cmds(vif, state)
    if cmds:
        nftadapter.run(cmds, f"removing the nftables entry of {vif}", nft)
        removed = True
        kill_point("remove-entry")
    return removed


def list_applied() -> List[Applied]:
    """Every vif vif-qos holds, read from the kernel (the nftables table),
    with its nftables counter."""
    state = nftadapter.read_table(full=True)
    return [_applied(state.entries[name]) for name in sorted(state.entries)]


def cleanup_orphans(host: Optional[HostSettings] = None) -> List[str]:
    """Remove what belongs to no live vif; return what was removed, one string each.

    - entries (and their leaf, element, chain) whose vif netdev no longer
      exists: the vif's name is returned. Run by udev on a vif's removal and by
      ``vif-qos cleanup``; covers guests whose ``offline`` never ran.
    - leftovers of an apply that was killed midway (SIGKILL, a crash: nothing
      could undo it): a leaf class in the classid range on one of our HTB trees,
      or a TBF of ours on a netdev, that no entry records; returned as
      ``"leaf 7a51:105 on peth0"`` / ``"tbf 7a51:0 on vif3.0"``; and our HTB
      root qdisc when it has no default class (killed while building the tree:
      it would drop all of the uplink's traffic) and no entry uses that uplink,
      returned as ``"htb 7a51:0 on peth0 (incomplete tree)"``. A complete
      shared tree stays. When our nftables table is absent (``nft flush
      ruleset``, as ``systemctl restart nftables`` does), TBFs are kept: they
      may be live guests' inbound shaping (logged as a warning); unrecorded
      leaves go (without the table nothing is classified into them).
    """
    host = host or HostSettings()
    gone: List[str] = []
    ipr = tcadapter.open_ipr()  # imports pyroute2: before the lock, not under it
    nft = nftadapter.open_ctx()
    with alloc.host_lock():
        try:
            state = nftadapter.read_table(ctx=nft)
            for vif in sorted(state.entries):
                if tcadapter.get_link(ipr, vif) is None:
                    remove_locked(ipr, vif, host, state, nft)
                    ledger.forget(vif)
                    state = nftadapter.read_table(ctx=nft)
                    gone.append(vif)
            gone += remove_leftovers(ipr, host, state)
        finally:
            ipr.close()
    return gone


def remove_leftovers(ipr, host: HostSettings, state: nftadapter.TableState) -> List[str]:
    """Remove our TBFs that no nftables entry records and repair our HTB trees
    (unrecorded leaves, incomplete trees), the caller holding the host lock;
    returns what was removed, as log words."""
    handle = host.qdisc_major << 16
    shaped_in = {e.vif for e in state.entries.values() if e.inbound}
    removed: List[str] = []
    qdiscs = qdisc.dump_qdiscs(ipr)
    if not state.exists:
        kept = [q for q in qdiscs if q.parent == tcadapter.TC_H_ROOT
                and q.handle == handle and q.kind == "tbf"]
        if kept:  # our TBFs without our table: it was deleted under live guests
            log.warning("vif-qos: table bridge %s is absent while %d netdev(s) carry "
                        "vif-qos's tbf (nft flush ruleset?): those tbfs are kept, they "
                        "may be live guests' inbound shaping; bring those guests "
                        "online again", nftadapter.TABLE, len(kept))
        else:  # no guest shaped since boot (or since the last one left)
            log.debug("vif-qos: table bridge %s does not exist (yet): nothing is "
                      "classified", nftadapter.TABLE)
    for q in qdiscs:
        if q.parent != tcadapter.TC_H_ROOT or q.handle != handle:
            continue
        link = tcadapter.get_link_by_index(ipr, q.index)
        if link is None:
            continue
        if q.kind == "htb":
            removed += tree.repair_tree(ipr, link, host, state)
        elif q.kind == "tbf" and state.exists and link.name not in shaped_in:
            what = f"tbf {tcadapter.handle_str(handle)} on {link.name}"
            if tcadapter.del_root_qdisc(ipr, q.index, handle, what):
                removed.append(what)
    return removed


def check_support() -> None:
    """Raise EnvironmentProblem naming what the kernel lacks: htb, tbf, or
    nftables' bridge family. Probes in a way that leaves nothing behind."""
    nftadapter.check_support()
    missing = qdisc.probe_qdisc_kinds(("htb", "tbf"))
    if missing:
        raise EnvironmentProblem(
            "the kernel lacks the qdisc(s) " + ", ".join(missing) +
            " (CONFIG_NET_SCH_HTB / CONFIG_NET_SCH_TBF; modprobe sch_htb sch_tbf)")
