"""The running vifs of this dom0 and whose they are, read from xenstore.

Only dom0-owned nodes are read (as in :mod:`vif_qos.xen.hotplug`): the backend
directories ``/local/domain/0/backend/vif/<domid>/<devid>/`` (``vifname``, ``bridge``)
and the domain's ``/local/domain/<domid>/name`` and ``vm`` (``/vm/<uuid>``, written
by libxl, ``tools/libs/light/libxl_create.c: libxl__domain_make``). A vif's netdev is
``vifname`` when set, else ``vif<domid>.<devid>`` (tools/hotplug/Linux/vif-common.sh);
an HVM guest's emulated NIC is the twin ``<vif>-emu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from vif_qos.xen.xenstore import Xenstore, XenstoreMissing

BACKEND = "/local/domain/0/backend/vif"


@dataclass(frozen=True)
class RunningVif:
    """One vif xenstore says exists: ``vif`` its dom0 netdev name, ``domain`` the
    guest's name (None when xenstore has none), ``uuid`` from ``vm`` or None."""

    domid: int
    devid: int
    vif: str
    domain: Optional[str]
    uuid: Optional[str]
    bridge: Optional[str]


def running_vifs(xs: Optional[Xenstore] = None) -> List[RunningVif]:
    """Every vif under dom0's backend directory, ordered by domid and devid.

    :raises XenstoreUnreachable, XenstoreTimeout, XenstoreError: xenstore failed
        (a missing backend directory is no vif, not an error).
    """
    xs = xs or Xenstore()
    try:
        domids = sorted((int(d) for d in xs.list(BACKEND) if d.isdigit()))
    except XenstoreMissing:
        return []
    out: List[RunningVif] = []
    for domid in domids:
        try:
            devids = sorted(int(d) for d in xs.list(f"{BACKEND}/{domid}") if d.isdigit())
        except XenstoreMissing:
            continue
        dom = f"/local/domain/{domid}"
        paths = [f"{dom}/name", f"{dom}/vm"]
        for devid in devids:
            paths += [f"{BACKEND}/{domid}/{devid}/vifname", f"{BACKEND}/{domid}/{devid}/bridge"]
        values = xs.read_optional(paths)
        vm = values.get(f"{dom}/vm") or ""
        uuid = vm[4:] if vm.startswith("/vm/") and "/" not in vm[4:] and vm[4:] else None
        for devid in devids:
            base = f"{BACKEND}/{domid}/{devid}"
            out.append(RunningVif(domid=domid, devid=devid,
                                  vif=values.get(f"{base}/vifname") or f"vif{domid}.{devid}",
                                  domain=values.get(f"{dom}/name"), uuid=uuid,
                                  bridge=values.get(f"{base}/bridge")))
    return out
