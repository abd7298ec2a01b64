"""Apply a :class:`~vif_qos.model.VifPlan` to the kernel, and take it away again.

The public API (all in the calling thread's current network namespace; each call
opens its own netlink and nftables handles):

- :func:`apply_vif` -> :class:`Applied`
- :func:`remove_vif` -> bool
- :func:`list_applied`, :func:`cleanup_orphans`, :func:`check_support`
- the building blocks :mod:`vif_qos.kernel.reconcile` changes running vifs with
  (under the host lock it holds): :func:`resolve_uplink`, :func:`pool_minors_of`,
  :func:`ensure_tree`, :func:`add_leaf`, :func:`ensure_leaf_qdisc`,
  :func:`leaf_qdisc_of`, :func:`same_class`, :func:`same_leaf`,
  :func:`class_params`, :func:`leaf_params`, :func:`fit_frame`, :func:`remove_locked`,
  :func:`remove_leftovers` and :class:`Undo`

What one vif gets (see README.rst, "What vif-qos puts in the kernel"):

- inbound: a TBF root qdisc ``qdisc_major:0`` on the vif;
- outbound: an HTB leaf class ``qdisc_major:minor`` on the uplink, under its pool
  class or the root class of the shared tree (root qdisc ``qdisc_major:0``,
  ``default 2``, root class ``:1``, default class ``:2``, pools ``:0x10+i``
  or, when the policy's pools moved while members remain, the class their
  members sit under, see :func:`pool_minors_of`), created on first use;
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
until its default class exists, see :data:`DIRECT_QLEN_PACKETS`), the nftables
entry is written before the leaf and the TBF it records (a priority naming a
leaf not made yet falls to the default class), and removal takes the leaf and
the TBF before the entry. Every later run repairs what it finds on the uplink it
touches (:func:`repair_uplink`). ``VIF_QOS_TEST_KILL_AT=STEP`` makes the process
SIGKILL itself at one of :data:`KILL_STEPS` (tests only).
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Tuple

from vif_qos.constants import DEFAULT_MINOR, ETH_HLEN_BYTES, POOL_MINOR_BASE, ROOT_MINOR
from vif_qos.kernel import admission
from vif_qos.kernel import alloc, ledger
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import qdisc, sched_fq_codel, sched_htb, sched_tbf
from vif_qos.kernel import tc as tcadapter
from vif_qos.kernel.netlink import EEXIST
from vif_qos.errors import EnvironmentProblem, InputError, KernelError
from vif_qos.model import (LEAF_QDISC_AUTO, LEAF_QDISC_BFIFO, LEAF_QDISC_FQ_CODEL,
                           ClassPlan, HostSettings, InboundPlan, LeafQdiscPlan, UplinkPlan,
                           VifPlan)

log = logging.getLogger("vif_qos")

#: Name prefixes of guest ports on a bridge (Xen's vifX.Y and HVM tapX.Y[-emu]).
GUEST_PORT_PREFIXES = ("vif", "tap")
#: Name suffix of an HVM guest's emulated NIC tap, also after a ``vifname``
#: rename (``<vifname>-emu``, tools/hotplug/Linux/vif-common.sh).
GUEST_PORT_SUFFIX = "-emu"
#: The MAC netback gives every vif netdev, renamed or not ("the numerically
#: largest non-broadcast address", drivers/net/xen-netback/interface.c).
NETBACK_VIF_MAC = "fe:ff:ff:ff:ff:ff"
#: direct_qlen of our HTB root qdisc, packets. HTB sends a frame that finds no
#: class *direct* while fewer than direct_qlen wait there, and drops it beyond
#: (net/sched/sch_htb.c: htb_classify returns HTB_DIRECT when the default class
#: does not exist; htb_enqueue). The root qdisc exists before its root and
#: default classes can be made (a class needs its qdisc), so with 0 an apply
#: killed in between left an uplink that dropped every frame; measured with
#: 1000 the frames pass unshaped until the default class exists, and from then
#: on nothing goes direct (direct_packets_stat stops growing). HTB has no change
#: operation: the value is set once, when the root is made.
DIRECT_QLEN_PACKETS = 1000
#: The points at which ``VIF_QOS_TEST_KILL_AT`` can kill an apply or a removal.
KILL_STEPS = ("locked", "stale-removed", "htb-qdisc", "htb-root-class",
              "htb-default-class", "htb-pools", "entry", "leaf", "tbf",
              "remove-leaf", "remove-tbf", "remove-entry")
KILL_ENV = "VIF_QOS_TEST_KILL_AT"
#: Netdev kinds (IFLA_INFO_KIND) that hold other netdevs: never a guest's port.
MASTER_KINDS = ("bridge", "bond", "team", "openvswitch")


def _step(name: str) -> None:
    """A kill point for the tests: SIGKILL this process when ``$VIF_QOS_TEST_KILL_AT``
    names ``name`` (one of :data:`KILL_STEPS`)."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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
# Steps with their undo
# --------------------------------------------------------------------------

class Undo:
    """A stack of compensating actions, run in reverse on failure."""

    def __init__(self) -> None:
        self.actions: List[Tuple[str, Callable[[], object]]] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        self.actions.append((what, action))

    def run(self) -> None:
        while self.actions:
            what, action = self.actions.pop()
            try:
                action()
            except Exception as err:  # keep undoing the rest
                log.error("vif-qos: undoing %s failed: %s", what, err)


def class_params(plan: ClassPlan) -> dict:
    """``plan``'s rate/ceil (bit/s), burst/cburst/quantum (bytes) as the tc
    adapter's keyword arguments."""
    return dict(rate_bits_per_s=plan.rate_bits_per_s,
                ceil_bits_per_s=plan.ceil_bits_per_s,
                burst_bytes=plan.burst_bytes, cburst_bytes=plan.cburst_bytes,
                quantum_bytes=plan.quantum_bytes)


def same_class(found: sched_htb.ClassInfo, want: ClassPlan, parent: int) -> bool:
    """True when the kernel's class ``found`` is ``want`` under ``parent`` (rates
    compared in the kernel's bytes/s)."""
    rate = tcadapter.rate_bytes(want.rate_bits_per_s, want.name)
    ceil = tcadapter.rate_bytes(want.ceil_bits_per_s, want.name)
    return (found.parent == parent and found.rate_bytes_per_s == rate
            and found.ceil_bytes_per_s == ceil
            and found.buffer_ticks == tcadapter.size_to_ticks(want.burst_bytes, rate, "")
            and found.cbuffer_ticks == tcadapter.size_to_ticks(want.cburst_bytes, ceil, "")
            and found.quantum_bytes == want.quantum_bytes)


def _restore_class(ipr, found: sched_htb.ClassInfo, what: str) -> None:
    sched_htb.set_class(
        ipr, found.index, found.classid, found.parent,
        rate_bits_per_s=found.rate_bytes_per_s * 8,
        ceil_bits_per_s=found.ceil_bytes_per_s * 8, burst_bytes=0, cburst_bytes=0,
        quantum_bytes=found.quantum_bytes, mode="change", what=what,
        buffer_ticks=found.buffer_ticks, cbuffer_ticks=found.cbuffer_ticks)


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
    """``plan``'s limit (bytes), target/interval (us) and ``quantum_bytes`` as the tc
    adapter's keyword arguments."""
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
                       quantum_bytes: int, what: str, undo: "Undo",
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


def resolve_uplink(ipr, uplink: UplinkPlan, state: nftadapter.TableState,
                    vif: str = "") -> tcadapter.LinkInfo:
    """The uplink netdev: the plan's device, or the bridge's one non-guest port.

    For ``auto`` the uplink another vif of the same bridge already uses is
    taken when it still is a port of that bridge (one netlink lookup instead
    of a dump of every link: a busy bridge has a thousand vif ports).
    Guest ports are ``vif*``/``tap*``/``*-emu`` names, netdevs with netback's
    MAC ``fe:ff:ff:ff:ff:ff`` (a ``vifname`` rename keeps it), ``vif`` itself
    (already on the bridge when Xen's vif-bridge runs the hook) and every vif
    our table records.
    """
    if uplink.device:
        link = tcadapter.get_link(ipr, uplink.device)
        if link is None:
            raise KernelError(f"uplink {uplink.device} of bridge {uplink.bridge}: "
                              "no such netdev")
        return link
    bridge = tcadapter.get_link(ipr, uplink.bridge)
    if bridge is None:
        raise KernelError(f"bridge {uplink.bridge}: no such netdev (uplink auto)")
    hints = {e.uplink for e in state.entries.values()
             if e.bridge == uplink.bridge and e.uplink}
    if len(hints) == 1:
        link = tcadapter.get_link(ipr, hints.pop())
        if link is not None and link.master == bridge.index:
            return link
    ports = [p for p in tcadapter.bridge_ports(ipr, bridge.index)
             if not p.name.startswith(GUEST_PORT_PREFIXES)
             and not p.name.endswith(GUEST_PORT_SUFFIX)
             and p.address != NETBACK_VIF_MAC
             and p.name != vif and p.name not in state.entries]
    if len(ports) != 1:
        names = ", ".join(sorted(p.name for p in ports)) or "none"
        raise KernelError(
            f"bridge {uplink.bridge}: uplink auto needs exactly one port that is "
            f"not a guest port (vif*, tap*, *-emu, MAC {NETBACK_VIF_MAC}, a shaped "
            f"vif), found {len(ports)} ({names}); set the "
            "uplink device in /etc/xen/vif-qos.conf")
    return ports[0]


def pool_minors_of(ipr, link: tcadapter.LinkInfo, uplink: UplinkPlan,
                 state: nftadapter.TableState, host: HostSettings) -> Dict[str, int]:
    """The class minor of each pool of the plan on ``link``.

    A pool keeps the class its members already sit under (found from the
    ``pool=`` of our entries and their leaf's parent in the kernel), whatever
    its place in the policy now; a class holding members of another pool, or
    of one the policy dropped, is never given to a different pool. A pool
    without members takes ``0x10 + its index`` when that is free, else the
    lowest free minor below ``classid_min``.
    """
    major = uplink.qdisc_major
    held: Dict[int, str] = {}  # pool class minor -> the pool its members belong to
    for e in state.entries.values():
        if (not e.pool or e.uplink != link.name or e.classid is None
                or e.classid >> 16 != major or e.pool in held.values()):
            continue
        leaf = sched_htb.get_class(ipr, link.index, e.classid)
        if (leaf is not None and leaf.parent >> 16 == major
                and POOL_MINOR_BASE <= leaf.parent & 0xFFFF < host.classid_min):
            held.setdefault(leaf.parent & 0xFFFF, e.pool)
    minors = {name: minor for minor, name in held.items()}
    out: Dict[str, int] = {}
    for pool in uplink.pools:
        if pool.name in minors:
            out[pool.name] = minors[pool.name]
    for i, pool in enumerate(uplink.pools):
        if pool.name in out:
            continue
        taken = set(held) | set(out.values())
        minor = POOL_MINOR_BASE + i
        if minor in taken:
            minor = alloc.lowest_free(taken, POOL_MINOR_BASE, host.classid_min - 1)
        if minor is None or minor >= host.classid_min:
            raise KernelError(f"uplink {link.name}: no free pool class minor left for "
                              f"pool {pool.name!r} below classid_min "
                              f"{host.classid_min:#x}")
        out[pool.name] = minor
    return out


def ensure_tree(ipr, link: tcadapter.LinkInfo, uplink: UplinkPlan,
                 undo: Undo, pool_minors: Optional[Dict[str, int]] = None) -> None:
    """Our HTB root qdisc, root, default and pool classes on ``link``.

    Refuses a root qdisc that is not ours; a kernel default root qdisc (handle
    0: noqueue, mq, pfifo_fast, fq_codel) is replaced. Existing shared classes
    whose parameters differ from the plan are changed to the plan's (and
    changed back if this apply fails).
    """
    major = uplink.qdisc_major << 16
    dev = link.name
    root = qdisc.get_root_qdisc(ipr, link.index)
    if root is not None and root.handle != 0 and not (
            root.handle == major and root.kind == "htb"):
        raise KernelError(
            f"uplink {dev}: its root qdisc is {root.kind} "
            f"{tcadapter.handle_str(root.handle)}, not vif-qos's htb "
            f"{tcadapter.handle_str(major)}; vif-qos does not replace a qdisc it "
            f"did not create (if it is unwanted, remove it with: tc qdisc del dev {dev} "
            "root)")
    created = root is None or root.handle == 0
    if created:
        sched_htb.add_qdisc(ipr, link.index, major, DEFAULT_MINOR,
                            f"htb root qdisc {tcadapter.handle_str(major)} on {dev}",
                            direct_qlen_packets=DIRECT_QLEN_PACKETS)
        undo.push(f"htb root qdisc on {dev}",
                  lambda: tcadapter.del_root_qdisc(ipr, link.index, major, dev))
        _step("htb-qdisc")
    # The kernel reports (and accepts) the root class's parent as TC_H_ROOT.
    wanted = [(uplink.root, major | ROOT_MINOR, tcadapter.TC_H_ROOT),
              (uplink.default, major | DEFAULT_MINOR, major | ROOT_MINOR)]
    pool_minors = pool_minors or {}
    leaves: List[Tuple[int, ClassPlan, bool]] = []
    wanted += [(pool, major | pool_minors.get(pool.name, POOL_MINOR_BASE + i),
                major | ROOT_MINOR) for i, pool in enumerate(uplink.pools)]
    steps = ["htb-root-class", "htb-default-class"] + ["htb-pools"] * len(uplink.pools)
    for (plan, classid, parent), step in zip(wanted, steps):
        what = f"htb class {tcadapter.handle_str(classid)} ({plan.name}) on {dev}"
        found = None if created else sched_htb.get_class(ipr, link.index, classid)
        if plan.leaf_qdisc is not None:
            # After the class changes below (pushed later, undone first).
            leaves.append((classid, plan, found is None))
        if found is None:
            sched_htb.set_class(ipr, link.index, classid, parent, mode="add",
                                what=what, **class_params(plan))
            undo.push(what, lambda c=classid, w=what:
                      tcadapter.del_class(ipr, link.index, c, w))
            _step(step)
        elif not same_class(found, plan, parent):
            if found.parent != parent:
                raise KernelError(f"{what}: exists under parent "
                                  f"{tcadapter.handle_str(found.parent)}, the plan "
                                  f"wants {tcadapter.handle_str(parent)}")
            sched_htb.set_class(ipr, link.index, classid, parent, mode="change",
                                what=what, **class_params(plan))
            undo.push(what, lambda f=found, w=what: _restore_class(ipr, f, w))
    for classid, plan, is_new in leaves:
        assert plan.leaf_qdisc is not None
        ensure_leaf_qdisc(ipr, link, classid, plan.leaf_qdisc, plan.quantum_bytes,
                           f"leaf qdisc of htb class {tcadapter.handle_str(classid)} "
                           f"({plan.name}) on {dev}", undo, is_new)


def _free_classid(major: int, host: HostSettings, state: nftadapter.TableState) -> int:
    """The lowest leaf classid of qdisc ``major`` that no entry of our table records
    (allocation is derived from the kernel's record, under the host lock)."""
    used = [e.classid & 0xFFFF for e in state.entries.values()
            if e.classid is not None and e.classid >> 16 == major]
    return (major << 16) | alloc.allocate_minor(used, host.classid_min, host.classid_max)


def add_leaf(ipr, link: tcadapter.LinkInfo, plan: VifPlan, host: HostSettings,
              state: nftadapter.TableState, parent: int) -> int:
    """Allocate a leaf classid (:func:`_free_classid`) and add the class
    (:func:`_add_recorded_leaf`); returns the classid."""
    return _add_recorded_leaf(ipr, link, plan,
                              _free_classid(plan.uplink.qdisc_major, host, state), parent)


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


# --------------------------------------------------------------------------
# Public API
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
            _step("locked")
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
    (:data:`MASTER_KINDS`), the plan's bridge or uplink, an uplink our entries record, or a netdev carrying
    our HTB tree. A ``vifname`` naming one of them would replace every guest's
    classes with a TBF or shape the bridge itself."""
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
        remove_locked(ipr, plan.vif, host, state, nft,
                       keep_tbf=plan.inbound is not None)
        state = nftadapter.read_table(ctx=nft)
        _step("stale-removed")

    undo = Undo()
    try:
        uplink_name = classid = link = None
        parent = 0
        if plan.outbound is not None:
            if plan.uplink is None:
                raise KernelError(f"vif {plan.vif}: outbound shaping without an uplink plan")
            link = resolve_uplink(ipr, plan.uplink, state, plan.vif)
            uplink_name = link.name
            major = plan.uplink.qdisc_major
            pool_minors = (pool_minors_of(ipr, link, plan.uplink, state, host)
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
                repair_uplink(ipr, link, host, state, sweep_leaves=True)
            ensure_tree(ipr, link, plan.uplink, undo, pool_minors)  # completes it
            admission.check_leaf(ipr, link, parent, plan.vif,
                                 plan.outbound.rate_bits_per_s, host)
            classid = _free_classid(major, host, state)

        mark = None
        if host.mark_mask:
            mark = alloc.allocate_mark([e.mark for e in state.entries.values()
                                        if e.mark is not None], host.mark_mask)
        entry = nftadapter.Entry(vif=plan.vif, bridge=plan.bridge, uplink=uplink_name,
                                 classid=classid, mark=mark,
                                 inbound=plan.inbound is not None,
                                 pool=plan.outbound.pool if plan.outbound else None,
                                 owner=_owner_text(owner), ifindex=vif_link.index)
        # The entry first: from here on whatever this apply makes is recorded,
        # so a kill leaves nothing a later run cannot find. Its priority names a
        # leaf that does not exist yet: frames fall to the default class.
        cmds = [] if state.exists else nftadapter.create_table_cmds()
        lost: List[nftadapter.Entry] = []
        if not state.exists:
            lost = _tbf_vifs_without_table(ipr, host, plan.vif)
            for item in lost:
                cmds += nftadapter.add_entry_cmds(item, host.mark_mask)
        cmds += nftadapter.add_entry_cmds(entry, host.mark_mask)
        entry_what = (f"nftables entry of {plan.vif} (table bridge "
                      f"{nftadapter.TABLE}, chain {entry.chain})")
        nftadapter.run(cmds, entry_what, nft)
        undo.push(entry_what, lambda: nftadapter.run(
            nftadapter.delete_table_cmds() if not state.exists and not lost
            else nftadapter.entry_removal_cmds(plan.vif), "undoing " + entry_what, nft))
        _step("entry")

        if plan.outbound is not None:
            classid = _add_recorded_leaf(ipr, link, plan, classid, parent)
            leaf_what = f"htb leaf class {tcadapter.handle_str(classid)} of {plan.vif}"
            undo.push(leaf_what, lambda: tcadapter.del_class(ipr, link.index, classid,
                                                             leaf_what))
            if plan.outbound.leaf_qdisc is not None:
                ensure_leaf_qdisc(ipr, link, classid, plan.outbound.leaf_qdisc,
                                   plan.outbound.quantum_bytes,
                                   f"leaf qdisc of {leaf_what} on {link.name}", undo, True)
            _step("leaf")

        if plan.inbound is not None:
            _apply_tbf(ipr, vif_link, plan, host, undo)
            _step("tbf")
    except BaseException:
        undo.run()
        raise
    log.debug("vif-qos: %s: applied %s", plan.vif, entry.comment())
    return _applied(entry)


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
        if value is not None and frame and 0 < value < frame:  # <= 0: check_tbf refuses
            raised[name] = frame
    if not raised:
        return inbound
    log.warning("vif-qos: %s: mtu %d: raising the tbf %s to %d bytes, one full frame "
                "(set mtu in [host] of /etc/xen/vif-qos.conf to plan for it)", vif,
                vif_link.mtu_bytes,
                ", ".join(f"{k.replace('_bytes', '')} {getattr(inbound, k)}"
                          for k in raised), frame)
    return replace(inbound, **raised)


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
    state on the recorded uplink is repaired (:func:`repair_uplink`).
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
                    repair_uplink(ipr, link, host, nftadapter.read_table(ctx=nft))
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
            _step("remove-leaf")
    vif_link = None if keep_tbf else tcadapter.get_link(ipr, vif)
    if vif_link is not None:
        handle = host.qdisc_major << 16
        root = qdisc.get_root_qdisc(ipr, vif_link.index)
        if root is not None and root.handle == handle and root.kind == "tbf":
            removed |= tcadapter.del_root_qdisc(ipr, vif_link.index, handle,
                                                f"tbf root qdisc on {vif}")
            _step("remove-tbf")
    cmds = nftadapter.remove_entry_cmds(vif, state)
    if cmds:
        nftadapter.run(cmds, f"removing the nftables entry of {vif}", nft)
        removed = True
        _step("remove-entry")
    return removed


def repair_uplink(ipr, link: tcadapter.LinkInfo, host: HostSettings,
                  state: nftadapter.TableState, sweep_leaves: bool = False) -> List[str]:
    """Repair what an interrupted run left on the uplink ``link``, under the lock.

    Our HTB root without its root or default class (killed while building the
    tree) is removed when no entry uses the uplink (the kernel's default qdisc
    comes back): three netlink requests. With ``sweep_leaves`` also the leaf
    classes in the leaf range that no entry records: that needs a dump of the
    uplink's classes (about 0.75 s with 1000 through pyroute2, too slow for
    every run under the host lock; an apply that is killed never leaves one,
    its entry comes first). Returns what was removed, one string each (see
    :func:`cleanup_orphans`); logs each as a warning.
    """
    handle = host.qdisc_major << 16
    root = qdisc.get_root_qdisc(ipr, link.index)
    if root is None or root.kind != "htb" or root.handle != handle:
        return []
    if sweep_leaves:
        removed = _repair_tree(ipr, link, host, state)
    elif (sched_htb.get_class(ipr, link.index, handle | ROOT_MINOR) is None
          or sched_htb.get_class(ipr, link.index, handle | DEFAULT_MINOR) is None):
        removed = _repair_tree(ipr, link, host, state)
    else:
        removed = []
    for what in removed:
        log.warning("vif-qos: removed %s: no entry records it (left by an "
                    "interrupted run, or its entry went with a flushed table)", what)
    return removed


def _repair_tree(ipr, link: tcadapter.LinkInfo, host: HostSettings,
                 state: nftadapter.TableState) -> List[str]:
    handle = host.qdisc_major << 16
    recorded = {(e.uplink, e.classid) for e in state.entries.values()}
    classes = sched_htb.dump_classes(ipr, link.index)
    ids = {c.classid for c in classes}
    removed: List[str] = []
    if not {handle | ROOT_MINOR, handle | DEFAULT_MINOR} <= ids:
        if not any(e.uplink == link.name for e in state.entries.values()):
            # Killed between our root qdisc and its default class: frames pass
            # direct, unshaped (an older vif-qos made it with direct_qlen 0: it
            # dropped them all). Nothing uses it: the kernel's default comes back.
            what = f"htb {tcadapter.handle_str(handle)} on {link.name} (incomplete tree)"
            if tcadapter.del_root_qdisc(ipr, link.index, handle, what):
                removed.append(what)
            return removed
    for c in classes:
        minor = c.classid & 0xFFFF
        if (c.level == 0 and c.classid >> 16 == host.qdisc_major
                and host.classid_min <= minor <= host.classid_max
                and (link.name, c.classid) not in recorded):
            what = f"leaf {tcadapter.handle_str(c.classid)} on {link.name}"
            if tcadapter.del_class(ipr, link.index, c.classid, what):
                removed.append(what)
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
            removed += _repair_tree(ipr, link, host, state)
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


def status() -> dict:
    """What vif-qos holds, read back from the kernel, with counters.

    Returns ``{"vifs": [...], "uplinks": [...]}`` (the ``vif-qos status --json``
    object, see README.rst, "What vif-qos puts in the kernel"). Per vif: the nftables entry
    (``classified`` packets/bytes from the vif), its HTB leaf on the uplink
    (rates in bits/s, sent bytes/packets, drops) and the vif's root qdisc (a TBF
    when inbound is shaped). Per uplink: our HTB root qdisc and its
    ``direct_packets`` (must not grow once the tree is built). Takes no
    lock: a reader.
    """
    state = nftadapter.read_table(full=True)
    vifs, uplinks = [], {}
    ipr = tcadapter.open_ipr()
    try:
        links = {}

        def link(name):
            if name not in links:
                links[name] = tcadapter.get_link(ipr, name)
            return links[name]

        for name in sorted(state.entries):
            e = state.entries[name]
            item = {"vif": e.vif, "bridge": e.bridge, "uplink": e.uplink,
                    "classid": tcadapter.handle_str(e.classid) if e.classid is not None else None,
                    "mark": f"{e.mark:#x}" if e.mark is not None else None,
                    "netdev_present": link(e.vif) is not None,
                    "classified": {"packets": e.packets, "bytes": e.bytes},
                    "inbound": None, "outbound": None}
            vif_link = link(e.vif)
            if e.inbound and vif_link is not None:
                q = qdisc.get_root_qdisc(ipr, vif_link.index)
                if q is not None:
                    item["inbound"] = {
                        "qdisc": f"{q.kind} {tcadapter.handle_str(q.handle)}",
                        "rate_bits_per_s": (q.rate_bytes_per_s or 0) * 8 or None,
                        "sent_bytes": q.bytes, "sent_packets": q.packets,
                        "drops": q.drops}
            up = link(e.uplink) if e.uplink else None
            if e.classid is not None and up is not None:
                c = sched_htb.get_class(ipr, up.index, e.classid)
                if c is not None:
                    item["outbound"] = {
                        "class": tcadapter.handle_str(c.classid),
                        "parent": tcadapter.handle_str(c.parent),
                        "rate_bits_per_s": c.rate_bytes_per_s * 8,
                        "ceil_bits_per_s": c.ceil_bytes_per_s * 8,
                        "sent_bytes": c.bytes, "sent_packets": c.packets,
                        "drops": c.drops,
                        "leaf_qdisc": _leaf_status(ipr, up.index, c)}
                if e.uplink not in uplinks:
                    q = qdisc.get_root_qdisc(ipr, up.index)
                    default = None
                    if q is not None and q.kind == "htb":
                        default = sched_htb.get_class(ipr, up.index,
                                                      q.handle | DEFAULT_MINOR)
                    uplinks[e.uplink] = {
                        "device": e.uplink,
                        "qdisc": f"{q.kind} {tcadapter.handle_str(q.handle)}" if q else None,
                        "direct_packets": q.direct_packets if q else None,
                        "default_leaf_qdisc": (_leaf_status(ipr, up.index, default)
                                               if default is not None else None)}
            vifs.append(item)
    finally:
        ipr.close()
    return {"vifs": vifs, "uplinks": [uplinks[k] for k in sorted(uplinks)]}


def _leaf_status(ipr, index: int, cls: sched_htb.ClassInfo) -> dict:
    """The leaf qdisc under ``cls`` as read back: kind, handle, limit and the time
    it holds at the class's rate; ``source`` says it was read from the kernel."""
    q = leaf_qdisc_of(ipr, index, cls.classid)
    if q is None:
        return {"kind": "pfifo (the kernel's default: no time bound)", "handle": None,
                "limit_bytes": None, "bound_us": None, "source": "kernel default"}
    bound = None
    if q.limit_bytes and cls.rate_bytes_per_s:
        bound = q.limit_bytes * 1_000_000 // cls.rate_bytes_per_s
    return {"kind": q.kind, "handle": tcadapter.handle_str(q.handle),
            "limit_bytes": q.limit_bytes, "bound_us": bound,
            "target_us": q.target_us, "interval_us": q.interval_us,
            "drops": q.drops, "source": "read back from the kernel"}
