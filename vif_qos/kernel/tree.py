"""The shared HTB tree on an uplink: which netdev is the uplink, which class each
pool has, building the tree, and repairing what an interrupted run left.

The tree (see README.rst, "What vif-qos puts in the kernel"): root qdisc
``qdisc_major:0`` (``default 2``, made with a direct queue, see
:data:`DIRECT_QLEN_PACKETS`), root class ``:1``, default class ``:2``, pool
classes ``:0x10+i`` or, when the policy's pools moved while members remain, the
class their members sit under (:func:`pool_minors_of`); the classes that queue
get a leaf qdisc (:func:`vif_qos.kernel.leaf.ensure_leaf_qdisc`). Made on first
use by an apply (:func:`ensure_tree`), compared and made right by a reload
(:mod:`vif_qos.kernel.reconcile`, :func:`shared_classes`, :func:`same_class`),
repaired by every run that touches the uplink (:func:`repair_uplink`). All under
the host lock (:mod:`vif_qos.kernel.alloc`), in the calling thread's network
namespace.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

from vif_qos.constants import DEFAULT_MINOR, POOL_MINOR_BASE, ROOT_MINOR
from vif_qos.errors import KernelError
from vif_qos.kernel import alloc, leaf
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import qdisc, sched_htb
from vif_qos.kernel import tc as tcadapter
from vif_qos.kernel.steps import Undo, kill_point
from vif_qos.model import ClassPlan, HostSettings, UplinkPlan

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


# --------------------------------------------------------------------------
# Classes and plans
# --------------------------------------------------------------------------

def class_params(plan: ClassPlan) -> dict:
    """``plan``'s rate/ceil (bit/s), burst/cburst/quantum (bytes) as the keyword
    arguments of :func:`vif_qos.kernel.sched_htb.set_class`."""
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


def shared_classes(uplink: UplinkPlan,
                   pool_minors: Dict[str, int]) -> List[Tuple[ClassPlan, int, int]]:
    """The tree's classes as ``(plan, classid, parent)``: the root class (its
    parent ``TC_H_ROOT``, as the kernel reports and accepts it), the default
    class, then each pool at its minor (``pool_minors``, else ``0x10 + i``)."""
    major = uplink.qdisc_major << 16
    wanted = [(uplink.root, major | ROOT_MINOR, tcadapter.TC_H_ROOT),
              (uplink.default, major | DEFAULT_MINOR, major | ROOT_MINOR)]
    wanted += [(pool, major | pool_minors.get(pool.name, POOL_MINOR_BASE + i),
                major | ROOT_MINOR) for i, pool in enumerate(uplink.pools)]
    return wanted


# --------------------------------------------------------------------------
# Which netdev, which pool classes
# --------------------------------------------------------------------------

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

    :raises KernelError: the device or bridge does not exist, or ``auto`` finds
        no single candidate.
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

    :raises KernelError: no free minor is left below ``classid_min``.
    """
    major = uplink.qdisc_major
    held: Dict[int, str] = {}  # pool class minor -> the pool its members belong to
    for e in state.entries.values():
        if (not e.pool or e.uplink != link.name or e.classid is None
                or e.classid >> 16 != major or e.pool in held.values()):
            continue
        found = sched_htb.get_class(ipr, link.index, e.classid)
        if (found is not None and found.parent >> 16 == major
                and POOL_MINOR_BASE <= found.parent & 0xFFFF < host.classid_min):
            held.setdefault(found.parent & 0xFFFF, e.pool)
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


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------

def refuse_foreign_root(link: tcadapter.LinkInfo, root: Optional[qdisc.QdiscInfo],
                        major: int) -> None:
    """Refuse an uplink whose root qdisc ``root`` is neither the kernel's default
    (None, or handle 0: noqueue, mq, pfifo_fast, fq_codel) nor our HTB
    ``major`` (``qdisc_major << 16``): vif-qos never replaces what it did not make.

    :raises KernelError: naming the qdisc and how the admin removes it.
    """
    if root is not None and root.handle != 0 and not (
            root.handle == major and root.kind == "htb"):
        raise KernelError(
            f"uplink {link.name}: its root qdisc is {root.kind} "
            f"{tcadapter.handle_str(root.handle)}, not vif-qos's htb "
            f"{tcadapter.handle_str(major)}; vif-qos does not replace a qdisc it "
            f"did not create (if it is unwanted, remove it with: tc qdisc del dev "
            f"{link.name} root)")


def _ensure_root_qdisc(ipr, link: tcadapter.LinkInfo, uplink: UplinkPlan,
                       undo: Undo) -> bool:
    """Our HTB root qdisc on ``link``, made (True) when the kernel's default root
    (none, or handle 0: noqueue, mq, pfifo_fast, fq_codel) is there.

    :raises KernelError: a root qdisc that is not ours holds the place.
    """
    major = uplink.qdisc_major << 16
    dev = link.name
    root = qdisc.get_root_qdisc(ipr, link.index)
    refuse_foreign_root(link, root, major)
    if root is not None and root.handle != 0:
        return False
    sched_htb.add_qdisc(ipr, link.index, major, DEFAULT_MINOR,
                        f"htb root qdisc {tcadapter.handle_str(major)} on {dev}",
                        direct_qlen_packets=DIRECT_QLEN_PACKETS)
    undo.push(f"htb root qdisc on {dev}",
              lambda: tcadapter.del_root_qdisc(ipr, link.index, major, dev))
    kill_point("htb-qdisc")
    return True


def ensure_tree(ipr, link: tcadapter.LinkInfo, uplink: UplinkPlan,
                undo: Undo, pool_minors: Optional[Dict[str, int]] = None) -> None:
    """Our HTB root qdisc, root, default and pool classes on ``link``.

    Refuses a root qdisc that is not ours; a kernel default root qdisc (handle
    0: noqueue, mq, pfifo_fast, fq_codel) is replaced. Existing shared classes
    whose parameters differ from the plan are changed to the plan's (and
    changed back if this apply fails).

    :raises KernelError: a root qdisc not ours, a class under another parent than
        the plan's, or the kernel refused a request.
    """
    dev = link.name
    created = _ensure_root_qdisc(ipr, link, uplink, undo)
    wanted = shared_classes(uplink, pool_minors or {})
    steps = ["htb-root-class", "htb-default-class"] + ["htb-pools"] * len(uplink.pools)
    leaves: List[Tuple[int, ClassPlan, bool]] = []
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
            kill_point(step)
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
        leaf.ensure_leaf_qdisc(ipr, link, classid, plan.leaf_qdisc, plan.quantum_bytes,
                               f"leaf qdisc of htb class {tcadapter.handle_str(classid)} "
                               f"({plan.name}) on {dev}", undo, is_new)


# --------------------------------------------------------------------------
# Repairing
# --------------------------------------------------------------------------

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
    :func:`vif_qos.kernel.apply.cleanup_orphans`); logs each as a warning.
    """
    handle = host.qdisc_major << 16
    root = qdisc.get_root_qdisc(ipr, link.index)
    if root is None or root.kind != "htb" or root.handle != handle:
        return []
    if sweep_leaves:
        removed = repair_tree(ipr, link, host, state)
    elif (sched_htb.get_class(ipr, link.index, handle | ROOT_MINOR) is None
          or sched_htb.get_class(ipr, link.index, handle | DEFAULT_MINOR) is None):
        removed = repair_tree(ipr, link, host, state)
    else:
        removed = []
    for what in removed:
        log.warning("vif-qos: removed %s: no entry records it (left by an "
                    "interrupted run, or its entry went with a flushed table)", what)
    return removed


def repair_tree(ipr, link: tcadapter.LinkInfo, host: HostSettings,
                state: nftadapter.TableState) -> List[str]:
    """Remove our incomplete HTB tree on ``link`` when no entry uses the uplink,
    else the leaf classes in the leaf range that no entry records; returns what
    was removed, one string each (one dump of the uplink's classes)."""
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
