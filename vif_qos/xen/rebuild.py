"""Drift repair: shape every live vif again from xenstore, as its ``online`` did.

:func:`repair_drift` is the one entry point ``vif-qos serve`` calls when
:func:`vif_qos.kernel.drift.find_drift` reports something missing; it calls
:func:`reload_from_xenstore`, a minimal rebuild: for each vif backend in dom0's
xenstore (``backend/vif/<domid>/<devid>``) whose netdev exists (the PV vif and the
HVM ``-emu`` tap, after a ``vifname`` rename), read the facts exactly as
``online`` does (:func:`vif_qos.xen.hotplug.read_facts`: dom0-owned nodes only),
plan with the given policy and apply. ``apply_vif`` replaces the vif's stale
entry, so a vif that kept its shaping is re-applied in place (its TBF replaced,
never removed first). Then :func:`vif_qos.kernel.apply.cleanup_orphans` removes
what no entry records any more (the leaves of a flushed table's entries). Failures
are logged per vif and never written to xenstore (the guest is running;
``hotplug-error`` is for a starting vif).

Cost: one ``xenstore-list`` per domain and two or three tool runs per vif (run
:data:`XENSTORE_READERS` at a time), plus one apply per vif (about 15 ms each on an
idle dom0).
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import List, Optional, Tuple

from vif_qos.errors import VifQosError
from vif_qos.xen.hotlog import HotplugLog
from vif_qos.xen.hotplug import final_dev_name, parse_invocation, read_facts


#: xenstore tool runs at once while gathering the facts.
XENSTORE_READERS = 8


def _exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def _line(err: BaseException) -> str:
    if isinstance(err, VifQosError):
        return err.one_line()
    return f"internal error: {type(err).__name__}: {' '.join(str(err).split())}"


def reload_from_xenstore(xs, policy, log: HotplugLog) -> Tuple[List[str], List[str]]:
    """Shape every live vif again; return ``(shaped names, failure lines)``.

    :param xs: a :class:`vif_qos.xen.xenstore.Xenstore`.
    :param policy: the loaded policy (:func:`vif_qos.config.policy.load_policy`).
    """
    from vif_qos.config.planning import plan_for_facts
    from vif_qos.kernel.apply import apply_vif
    from vif_qos.xen.xenstore import XenstoreMissing

    shaped: List[str] = []
    failed: List[str] = []
    try:
        domids = xs.list("backend/vif")
    except XenstoreMissing:
        return shaped, failed

    def devids_of(domid: str) -> List[str]:
        try:
            return xs.list(f"backend/vif/{domid}")
        except XenstoreMissing:
            return []

    def targets_of(domid: str, devid: str) -> List:
        inv = parse_invocation("online", ["type_if=vif"],
                               {"vif": f"vif{domid}.{devid}",
                                "XENBUS_PATH": f"backend/vif/{domid}/{devid}"})
        facts = read_facts(xs, inv)
        targets = [facts] if _exists(facts.vif) else []
        tap = parse_invocation("add", ["type_if=tap"], {"INTERFACE": f"vif{domid}.{devid}-emu"})
        tap_name = final_dev_name(tap, None if facts.vif == inv.dev else facts.vif)
        if _exists(tap_name):
            targets.append(replace(facts, vif=tap_name))
        return targets

    # The xenstore tools run in parallel (each is a process; a dom0 with many
    # guests would otherwise wait for them one after the other); the applies one
    # after the other (they take the host lock anyway).
    order = lambda d: (len(d), d)  # noqa: E731  numeric order of decimal names
    with ThreadPoolExecutor(max_workers=XENSTORE_READERS) as pool:
        domids = sorted(domids, key=order)
        vifs = [(domid, devid) for domid, devids in zip(domids, pool.map(devids_of, domids))
                for devid in sorted(devids, key=order)]
        futures = [pool.submit(targets_of, domid, devid) for domid, devid in vifs]
    log.debug(f"rebuild: facts of {len(vifs)} vif backend(s) read")
    for (domid, devid), future in zip(vifs, futures):
        try:
            targets = future.result()
        except Exception as err:
            failed.append(f"backend/vif/{domid}/{devid}: {_line(err)}")
            continue
        for target in targets:
            try:
                apply_vif(plan_for_facts(target, policy))
                shaped.append(target.vif)
            except Exception as err:
                failed.append(f"{target.vif}: {_line(err)}")
    for line in failed:
        log.error(f"rebuild: {line}")
    return shaped, failed


def repair_drift(xs, policy, log: HotplugLog, reasons: List[str],
                 reload=None) -> Optional[List[str]]:
    """Log ``reasons`` and rebuild; return the failure lines (empty: all shaped).

    ``reload`` is the rebuild entry point, ``reload(xs, policy, log) -> (shaped,
    failed)``; default :func:`reload_from_xenstore`.
    """
    from vif_qos.kernel.apply import cleanup_orphans
    from vif_qos.xen.hotplug import library_log_to

    started = time.monotonic()
    log.warning("drift: " + "; ".join(reasons) + "; shaping every live vif again")
    with library_log_to(log):
        shaped, failed = (reload or reload_from_xenstore)(xs, policy, log)
        try:
            # The leaves of entries the flushed table held are recorded nowhere now.
            for what in cleanup_orphans(host=policy.host):
                log.info(f"drift repair removed {what}")
        except Exception as err:
            failed = failed + [f"sweep: {_line(err)}"]
            log.error(f"drift repair: sweep failed: {_line(err)}")
    log.info(f"drift repaired: {len(shaped)} vif(s) shaped again"
             + (f", {len(failed)} failed" if failed else "")
             + f" ({(time.monotonic() - started) * 1000:.0f} ms)")
    return failed
