"""Which vifs are running, and their facts, read from dom0-owned sources only.

What ``vif-qos reload``, ``check`` and ``set`` work on. Not our own record (the
nftables table may have been flushed, the host rebooted): the vif backend
directories in dom0's xenstore (``/local/domain/0/backend/vif/<domid>/<devid>``,
written by libxl, owned by dom0) read in ONE ``xenstore-ls -f`` run, the domains'
``name``/``vm`` nodes in one ``xenstore-read`` run, and the netdevs that exist.

A backend's vif is *running* when its netdev (``vif<domid>.<devid>`` or the
backend's ``vifname``) exists and its backend ``online`` is not ``0`` (libxl sets
0 when it removes the device). Of the running ones, a vif is *up* (vif-qos may
shape it) when its backend ``hotplug-status`` is ``connected`` (vif-bridge wrote
it after the hook's ``online``), or the caller's record already shapes it: a vif
whose ``online`` is still in progress is left to that ``online``. An HVM guest's
emulated NIC (``<vif>-emu``) is running when that netdev exists and is up when
it is a port of a bridge (vif-bridge's ``add``), and is shaped like its twin.

The facts are built as :func:`vif_qos.xen.hotplug.read_facts` builds them, from the
same keys (``bridge``, ``rate``, ``mac``, ``vifname``, ``frontend-id``;
``/local/domain/<domid>/name`` and ``vm``), except that no argv/environment
``bridge`` exists here: the backend's ``bridge`` or ``xenbr0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Set, Tuple

from vif_qos.core.ifname import ifname_problem
from vif_qos.errors import InputError
from vif_qos.model import VifFacts
from vif_qos.xen.xenstore import XenstoreMissing

BACKEND_ROOT = "/local/domain/0/backend/vif"


@dataclass(frozen=True)
class RunningVif:
    """One running vif (or HVM tap): its facts, its backend directory (relative to
    dom0, as libxl names it) and whether vif-qos may shape it now (``up``)."""

    facts: VifFacts
    backend: str
    tap: bool
    up: bool


@dataclass(frozen=True)
class Skipped:
    """A backend whose vif is not handled, and why (one line)."""

    backend: str
    vif: Optional[str]
    reason: str


def read_backends(xs) -> Dict[Tuple[int, int], Dict[str, str]]:
    """(domid, devid) -> backend key: value for every vif backend of dom0.

    :raises XenstoreError: xenstored failed (no backend directory is no vifs).
    """
    try:
        flat = xs.ls(BACKEND_ROOT)
    except XenstoreMissing:
        return {}
    backends: Dict[Tuple[int, int], Dict[str, str]] = {}
    prefix = BACKEND_ROOT + "/"
    for path, value in flat.items():
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix):].split("/")
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        keys = backends.setdefault((int(parts[0]), int(parts[1])), {})
        if len(parts) == 3:
            keys[parts[2]] = value
    return backends


def build_facts(domid: int, devid: int, keys: Mapping[str, str], name: Optional[str],
                uuid: Optional[str], tap: bool) -> VifFacts:
    """The facts of one backend's vif (``tap``: its ``-emu`` twin). Pure.

    :raises InputError: ``frontend-id`` contradicts the directory's domid, or the
        ``vifname``/``bridge`` is not a netdev name.
    """
    label = f"backend/vif/{domid}/{devid}"
    frontend_id = keys.get("frontend-id")
    if frontend_id is not None and frontend_id.strip() != str(domid):
        raise InputError(f"backend frontend-id does not match the directory's domid {domid}",
                         token=frontend_id, source=f"xenstore:{label}/frontend-id")
    bridge = keys.get("bridge") or "xenbr0"
    problem = ifname_problem(bridge)
    if problem:
        raise InputError(f"bridge: {problem}", token=bridge,
                         source=f"xenstore:{label}/bridge")
    vifname = keys.get("vifname")
    vif = vifname or f"vif{domid}.{devid}"
    if tap:
        vif = f"{vif}-emu"
    problem = ifname_problem(vif)
    if problem:
        raise InputError(f"vifname: {problem}", token=vif,
                         source=f"xenstore:{label}/vifname")
    return VifFacts(vif=vif, devid=devid, bridge=bridge, domid=domid, domain_name=name,
                    domain_uuid=uuid, mac=keys.get("mac"), xen_rate=keys.get("rate"),
                    xen_rate_source=f"xenstore:{label}/rate")


def running_vifs(xs, links: Mapping[str, int], shaped: Set[str]
                 ) -> Tuple[List[RunningVif], List[Skipped]]:
    """Every running vif (see the module doc), in domid/devid order.

    :param xs: a :class:`vif_qos.xen.xenstore.Xenstore`.
    :param links: netdev name -> ifindex of its master (0: none), in dom0's namespace.
    :param shaped: vif names vif-qos's record (the nftables table) holds.
    :returns: ``(running, skipped)``; a backend with bad facts is skipped with its
        error, a vif whose ``online`` is in progress or that is being removed is
        skipped with that reason.
    """
    backends = read_backends(xs)
    domids = sorted({domid for domid, _ in backends})
    paths = [f"/local/domain/{d}/{key}" for d in domids for key in ("name", "vm")]
    values = xs.read_optional(paths) if paths else {}
    running: List[RunningVif] = []
    skipped: List[Skipped] = []
    for (domid, devid) in sorted(backends):
        keys = backends[(domid, devid)]
        backend = f"backend/vif/{domid}/{devid}"
        vm_path = values.get(f"/local/domain/{domid}/vm")
        uuid = vm_path[4:] if vm_path and vm_path.startswith("/vm/") and \
            "/" not in vm_path[4:] and vm_path[4:] else None
        name = values.get(f"/local/domain/{domid}/name")
        for tap in (False, True):
            try:
                facts = build_facts(domid, devid, keys, name, uuid, tap)
            except InputError as err:
                if not tap:
                    skipped.append(Skipped(backend, None, err.one_line()))
                break
            if facts.vif not in links:
                continue
            if keys.get("online", "1").strip() == "0":
                skipped.append(Skipped(backend, facts.vif, "being removed (backend online=0)"))
                continue
            if tap:
                up = bool(links.get(facts.vif)) or facts.vif in shaped
            else:
                up = keys.get("hotplug-status") == "connected" or facts.vif in shaped
            if not up:
                skipped.append(Skipped(backend, facts.vif, "its online has not finished"))
                continue
            running.append(RunningVif(facts, backend, tap, up))
    return running, skipped
