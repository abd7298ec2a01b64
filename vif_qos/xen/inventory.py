"""The vifs of this dom0 and their facts: the one reader of xenstore's vif backends
and the one builder of a vif's facts.

What is trusted: dom0-owned nodes only, all written by libxl -- a backend directory
``/local/domain/0/backend/vif/<domid>/<devid>/`` (:data:`BACKEND_KEYS`, and
``online``/``hotplug-status`` for the vif's state), the domain's
``/local/domain/<domid>/name`` and ``vm`` (``/vm/<uuid>``,
``tools/libs/light/libxl_create.c: libxl__domain_make``) and ``/vm/<uuid>/name``
-- never the guest's ``device/vif/<devid>/`` directory (the guest owns it and can
write anything there, a ``rate`` too).

- :func:`vif_facts` (pure) builds one vif's :class:`~vif_qos.model.VifFacts` from
  the nodes read. ``online``/``add`` (:func:`vif_qos.xen.hotplug.read_facts`) and
  :func:`running_vifs` both call it, so a guest is named and shaped the same by
  its hotplug run and by ``reload``, ``check``, ``set``, drift repair and
  ``record``. :func:`domain_identity` is the one place a domain's name and UUID
  are decided; :func:`read_nodes` reads what it needs.
- :func:`running_vifs`: every vif backend whose netdev exists -- the PV vif
  (``vif<domid>.<devid>``, or the backend's ``vifname``:
  ``tools/hotplug/Linux/vif-common.sh``) and an HVM guest's emulated NIC, the
  twin ``<vif>-emu`` -- read in ONE ``xenstore-ls -f`` run and one
  ``xenstore-read`` run for the domains, each with its state (:data:`UP`,
  :data:`STARTING`, :data:`REMOVING`).
- :func:`ready_vifs` (pure): of those, the ones vif-qos may shape now. A vif whose
  ``online`` is still in progress is left to that ``online``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from vif_qos.constants import DEFAULT_BRIDGE
from vif_qos.core.ifname import check_ifname
from vif_qos.errors import InputError
from vif_qos.model import VifFacts
from vif_qos.xen.xenstore import XenstoreMissing

BACKEND_ROOT = "/local/domain/0/backend/vif"
#: The backend keys a vif's facts come from (written by libxl, owned by dom0).
BACKEND_KEYS = ("bridge", "rate", "mac", "vifname", "frontend-id", "type")

#: A vif's state: its ``online`` finished (the backend's ``hotplug-status`` is
#: ``connected``, which vif-bridge writes after the hook's ``online``; for the HVM
#: tap: it is a port of a bridge, vif-bridge's ``add``).
UP = "up"
#: Its ``online`` is in progress (or failed): ``hotplug-status`` not ``connected``.
STARTING = "starting"
#: libxl is removing it: the backend's ``online`` is ``0``.
REMOVING = "removing"


@dataclass(frozen=True)
class RunningVif:
    """One vif (or HVM tap) whose netdev exists: its facts, its backend directory
    (relative to dom0, as libxl names it: ``backend/vif/3/0``), whether it is the
    HVM tap, and its state (:data:`UP`, :data:`STARTING`, :data:`REMOVING`)."""

    facts: VifFacts
    backend: str
    tap: bool
    state: str


@dataclass(frozen=True)
class Skipped:
    """A backend whose vif is not handled, and why (one line)."""

    backend: str
    vif: Optional[str]
    reason: str


# -- the domain: name and UUID ------------------------------------------------------


def domain_paths(domid: int) -> Tuple[str, str]:
    """The domain's own ``name`` and ``vm`` nodes, read first."""
    return f"/local/domain/{domid}/name", f"/local/domain/{domid}/vm"


def _vm_path(domid: int, values: Mapping[str, str]) -> Optional[str]:
    """``/vm/<uuid>`` from the domain's ``vm`` node, when it is one."""
    vm = values.get(f"/local/domain/{domid}/vm")
    if vm and vm.startswith("/vm/") and vm[4:] and "/" not in vm[4:]:
        return vm
    return None


def vm_name_path(domid: int, values: Mapping[str, str]) -> Optional[str]:
    """The node to read next for the domain's name: ``/vm/<uuid>/name`` when
    ``/local/domain/<domid>/name`` is missing from ``values``; else None."""
    if f"/local/domain/{domid}/name" in values:
        return None
    vm = _vm_path(domid, values)
    return f"{vm}/name" if vm else None


def domain_identity(domid: int, values: Mapping[str, str]
                    ) -> Tuple[Optional[str], Optional[str]]:
    """``(name, uuid)`` of domain ``domid`` from the nodes read (pure): the name is
    ``/local/domain/<domid>/name``, else ``/vm/<uuid>/name``; the UUID comes from
    ``/local/domain/<domid>/vm`` (``/vm/<uuid>``). None when xenstore has none."""
    vm = _vm_path(domid, values)
    name = values.get(f"/local/domain/{domid}/name")
    if name is None and vm:
        name = values.get(f"{vm}/name")
    return name, (vm[4:] if vm else None)


def read_nodes(xs, paths: Sequence[str], domids: Iterable[int]) -> Dict[str, str]:
    """The values of ``paths`` and of the domains' nodes :func:`domain_identity`
    needs, those that exist: one ``xenstore-read`` run (one more per missing node,
    and one for the ``/vm/<uuid>/name`` of domains without a name of their own).

    :param xs: a :class:`vif_qos.xen.xenstore.Xenstore`.
    :raises XenstoreError: xenstored failed (a missing node is left out).
    """
    domids = list(domids)
    values = xs.read_optional(list(paths) + [p for d in domids for p in domain_paths(d)])
    further = [path for path in (vm_name_path(d, values) for d in domids) if path]
    if further:
        values.update(xs.read_optional(further))
    return values


# -- one vif's facts ---------------------------------------------------------------------


def netdev_name(dev: str, vifname: Optional[str], tap: bool,
                hook_dev: Optional[str] = None) -> str:
    """The netdev's name after vif-common.sh's ``vifname`` rename: the hook's
    ``dev=`` when it passed one, else ``vifname`` (``<vifname>-emu`` for the tap),
    else ``dev`` as netback or libxl made it."""
    if hook_dev:
        return hook_dev
    if vifname:
        return f"{vifname}-emu" if tap else vifname
    return dev


def vif_facts(values: Mapping[str, str], backend: str, domid: int, devid: int, dev: str,
              tap: bool = False, hook_dev: Optional[str] = None,
              bridge_arg: Optional[str] = None,
              bridge_env: Optional[str] = None) -> VifFacts:
    """One vif's facts from the xenstore nodes read (pure).

    :param values: xenstore path -> value of the nodes read: the backend's keys as
        ``<backend>/<key>`` and the domain's (:func:`read_nodes`); a node not in it
        does not exist.
    :param backend: the backend directory as ``values`` names it (``backend/vif/3/0``
        or ``/local/domain/0/backend/vif/3/0``).
    :param dev: the netdev as netback or libxl made it (``vif3.0``, ``vif3.0-emu``).
    :param tap: the HVM emulated NIC (a ``vifname`` renames it ``<vifname>-emu``).
    :param hook_dev: the final name the hook passed (``dev=``), already checked.
    :param bridge_arg: ``bridge=`` of the hook's argv (vif-bridge's final bridge);
        before the backend's ``bridge``. ``bridge_env``: the environment's, after it;
        then ``xenbr0``.
    :raises InputError: ``frontend-id`` is not ``domid``, or the ``vifname`` or
        the bridge is not a netdev name.
    """
    backend = backend.rstrip("/")
    # Sources are named as libxl names the vif (relative to dom0's directory), also
    # for the HVM tap, whose XENBUS_PATH vif-common.sh makes absolute.
    label = backend[len("/local/domain/0/"):] if backend.startswith("/local/domain/0/") \
        else backend
    frontend_id = values.get(f"{backend}/frontend-id")
    if frontend_id is not None and frontend_id.strip() != str(domid):
        raise InputError(f"backend frontend-id is not the vif's domid {domid}",
                         token=frontend_id, source=f"xenstore:{label}/frontend-id")
    bridge, bridge_source = next(
        (value, where) for value, where in (
            (bridge_arg, "argv bridge="),
            (values.get(f"{backend}/bridge"), f"xenstore:{label}/bridge"),
            (bridge_env, "environment bridge"), (DEFAULT_BRIDGE, "built-in default"))
        if value)
    check_ifname(bridge, bridge_source, "bridge")
    vifname = values.get(f"{backend}/vifname")
    vif = netdev_name(dev, vifname, tap, hook_dev)
    if vifname and not hook_dev:
        check_ifname(vif, f"xenstore:{label}/vifname", "vifname")
    name, uuid = domain_identity(domid, values)
    return VifFacts(vif=vif, devid=devid, bridge=bridge, domid=domid, domain_name=name,
                    domain_uuid=uuid, mac=values.get(f"{backend}/mac"),
                    xen_rate=values.get(f"{backend}/rate"),
                    xen_rate_source=f"xenstore:{label}/rate")


# -- every vif -----------------------------------------------------------------------------


def _backend_ids(flat: Mapping[str, str]) -> List[Tuple[int, int]]:
    """(domid, devid) of every backend directory in ``xenstore-ls -f`` output."""
    prefix = BACKEND_ROOT + "/"
    ids = set()
    for path in flat:
        if path.startswith(prefix):
            parts = path[len(prefix):].split("/")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                ids.add((int(parts[0]), int(parts[1])))
    return sorted(ids)


def running_vifs(xs, links: Mapping[str, int]) -> Tuple[List[RunningVif], List[Skipped]]:
    """Every vif whose netdev exists (see the module doc), in domid/devid order,
    PV vif before its tap.

    :param xs: a :class:`vif_qos.xen.xenstore.Xenstore`.
    :param links: netdev name -> ifindex of its master (0: none), in dom0's namespace.
    :returns: ``(vifs, skipped)``: a backend whose facts are bad is skipped with its
        error, whether or not its netdev exists.
    :raises XenstoreError: xenstored failed (no backend directory is no vifs).
    """
    try:
        values = dict(xs.ls(BACKEND_ROOT))
    except XenstoreMissing:
        return [], []
    ids = _backend_ids(values)
    values.update(read_nodes(xs, (), sorted({domid for domid, _ in ids})))
    vifs: List[RunningVif] = []
    skipped: List[Skipped] = []
    for domid, devid in ids:
        backend = f"{BACKEND_ROOT}/{domid}/{devid}"
        label = f"backend/vif/{domid}/{devid}"
        for tap in (False, True):
            try:
                facts = vif_facts(values, backend, domid, devid,
                                  f"vif{domid}.{devid}" + ("-emu" if tap else ""), tap)
            except InputError as err:
                if not tap:
                    skipped.append(Skipped(label, None, err.one_line()))
                break
            if facts.vif not in links:
                continue
            if values.get(f"{backend}/online", "1").strip() == "0":
                state = REMOVING
            elif tap:
                state = UP if links[facts.vif] else STARTING
            else:
                state = UP if values.get(f"{backend}/hotplug-status") == "connected" \
                    else STARTING
            vifs.append(RunningVif(facts, label, tap, state))
    return vifs, skipped


def ready_vifs(vifs: Sequence[RunningVif], shaped: Set[str]
               ) -> Tuple[List[RunningVif], List[Skipped]]:
    """The vifs vif-qos may shape now, and the others with the reason (pure): a vif
    being removed is not; a vif that is not :data:`UP` is only when ``shaped``
    (vif-qos's record, the nftables table) already holds it."""
    ready: List[RunningVif] = []
    skipped: List[Skipped] = []
    for rv in vifs:
        if rv.state == REMOVING:
            skipped.append(Skipped(rv.backend, rv.facts.vif, "being removed (backend online=0)"))
        elif rv.state == UP or rv.facts.vif in shaped:
            ready.append(rv)
        else:
            skipped.append(Skipped(rv.backend, rv.facts.vif, "its online has not finished"))
    return ready, skipped
