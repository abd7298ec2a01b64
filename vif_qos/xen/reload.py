"""Running guests: re-resolve their shaping from the current sources and make the
kernel match (``reload``), compare only (``check``), and change operator overrides
live (``set``/``assign``/``unset``).

Every operation here runs under the host lock (:mod:`vif_qos.kernel.alloc`), as
``online``/``offline``/``cleanup`` do, from reading which vifs run to the last
kernel change, so a reload racing with onlines and offlines neither loses nor
duplicates a vif. The running vifs come from xenstore and the netdevs
(:mod:`vif_qos.xen.inventory`), never from our own record; their plans from the
policy file, the domain config files, the backend ``rate`` as it is now
(netback re-reads it live; both directions follow it) and the overrides file
(:mod:`vif_qos.config.overrides`); the kernel is changed in place by
:mod:`vif_qos.kernel.reconcile`.

The API for other code (usage accounting moving a guest into an overage pool and
back, say): :func:`set_override`, :func:`unset_override` and :func:`reload`,
each returning a :class:`Report`; errors are :class:`vif_qos.errors.VifQosError`
(bad input: nothing changed, neither the file nor the kernel).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from vif_qos.config import overrides as ovr
from vif_qos.config import xlcfg
from vif_qos.config.planning import plan_for_facts
from vif_qos.config.policy import load_policy
from vif_qos.core import guarantee
from vif_qos.core import spec as specmod
from vif_qos.core.settings import Policy
from vif_qos.errors import AdmissionRefused, InputError, VifQosError
from vif_qos.kernel import alloc
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import reconcile
from vif_qos.kernel import tc as tcadapter
from vif_qos.model import VifPlan
from vif_qos.xen import inventory
from vif_qos.xen.inventory import RunningVif, Skipped


@dataclass
class Report:
    """What an operation found and did.

    ``result``: the kernel comparison/changes per vif, uplink and leftover;
    ``failed``: vifs whose plan could not be made (``(vif, message, status)``),
    left as they were; ``skipped``: backends not handled and why; ``warnings``:
    oversold guaranteed rates and plan corrections; ``applied``: whether the
    kernel was changed (False for ``check`` and ``--dry-run``).
    """

    result: reconcile.Result
    applied: bool
    failed: List[Tuple[str, str, int]] = field(default_factory=list)
    skipped: List[Skipped] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    running: int = 0

    @property
    def status(self) -> int:
        """0 all done/in sync; 2 when a vif's input was bad; 1 when the kernel
        refused something (``check`` adds 1 for differences itself)."""
        codes = [status for _v, _m, status in self.failed]
        codes += [v.status or 1 for v in self.result.vifs if v.error]
        if any(code == 2 for code in codes):
            return 2
        return 1 if codes else 0

    def to_json(self) -> dict:
        return {
            "applied": self.applied,
            "running": self.running,
            "vifs": [v.to_json() for v in self.result.vifs]
            + [{"vif": vif, "changes": [], "error": message}
               for vif, message, _s in self.failed],
            "uplinks": list(self.result.uplinks),
            "leftovers": list(self.result.leftovers),
            "skipped": [{"backend": s.backend, "vif": s.vif, "reason": s.reason}
                        for s in self.skipped],
            "warnings": list(self.warnings),
            "differences": self.result.differences + len(self.failed),
        }


@dataclass
class _Scene:
    """What runs now and what applies to it (read under the host lock)."""

    policy: Policy
    overrides: ovr.Overrides
    running: List[RunningVif]
    skipped: List[Skipped]
    shaped: Set[str]
    links: List[tcadapter.LinkInfo]


def default_xenstore():
    from vif_qos.xen.xenstore import Xenstore
    return Xenstore()


def _scene(conf: Optional[str], xs, policy: Optional[Policy] = None) -> _Scene:
    policy = policy or load_policy(conf)
    overrides = ovr.load()
    ipr = tcadapter.open_ipr()
    try:
        links = tcadapter.list_links(ipr)
    finally:
        ipr.close()
    shaped = set(nftadapter.read_table().entries)
    found, bad = inventory.running_vifs(xs or default_xenstore(),
                                        {link.name: link.master for link in links})
    running, not_ready = inventory.ready_vifs(found, shaped)
    return _Scene(policy, overrides, running, bad + not_ready, shaped, links)


def _plans(scene: _Scene, overrides: ovr.Overrides, now: _dt.datetime
           ) -> Tuple[List[VifPlan], List[Tuple[str, str, int]]]:
    plans, failed = [], []
    for rv in scene.running:
        try:
            plans.append(_plan(rv, scene.policy, overrides, now))
        except VifQosError as err:
            failed.append((rv.facts.vif, err.one_line(), err.exit_status))
    return plans, failed


def _plan(rv: RunningVif, policy: Policy, overrides: ovr.Overrides,
          now: _dt.datetime) -> VifPlan:
    return plan_for_facts(rv.facts, policy, overrides, now)


def _keep(scene: _Scene, failed: Sequence[Tuple[str, str, int]]) -> Set[str]:
    return {vif for vif, _m, _s in failed} | {s.vif for s in scene.skipped if s.vif}


def reload(conf: Optional[str] = None, *, apply: bool = True, xs=None,
           now: Optional[_dt.datetime] = None, policy: Optional[Policy] = None) -> Report:
    """Re-resolve every running vif and bring the kernel to it (``apply``), or only
    compare (``apply=False``: ``check``, ``reload --dry-run``). What ``vif-qos
    reload`` and ``vif-qos serve``'s drift repair run.

    Leftovers (entries of vifs whose netdev is gone, unrecorded leaves and TBFs)
    are removed when applying, reported otherwise. A vif whose plan fails is
    reported and left as it is; so is a vif whose ``online`` has not finished
    (:func:`vif_qos.xen.inventory.ready_vifs`).

    :param policy: the policy already loaded (the service's); default: read ``conf``.

    :raises ConfigError: the policy file or the overrides file is malformed.
    :raises XenstoreError, KernelError, EnvironmentProblem: see their modules.
    """
    now = now or ovr.utc_now()
    with alloc.host_lock():
        scene = _scene(conf, xs, policy)
        plans, failed = _plans(scene, scene.overrides, now)
        result = reconcile.reconcile(plans, scene.policy.host, apply=apply,
                                     keep=_keep(scene, failed), links=scene.links)
    warnings = guarantee.plans_problems(plans)
    for plan in plans:
        warnings += [f"{plan.vif}: {note}" for note in plan.notes]
    return Report(result, apply, failed, scene.skipped, warnings, len(scene.running))


def check(conf: Optional[str] = None, xs=None) -> Report:
    """:func:`reload` without changing anything."""
    return reload(conf, apply=False, xs=xs)


# -- targets ---------------------------------------------------------------------------


def resolve_target(text: str, running: Sequence[RunningVif], policy: Policy) -> ovr.Target:
    """The :class:`~vif_qos.config.overrides.Target` a ``TARGET`` argument names.

    ``domain:NAME``, ``device:NAME:DEVID`` and ``vif:NETDEV`` are taken as
    written; otherwise ``NAME:DEVID`` is a device, a running domain's name is
    that domain, a running vif's netdev name that vif, and a name an xl config
    file in ``domain_config_dirs`` gives is that (not running) domain.

    :raises InputError: none of these (exit 2).
    """
    word = text.strip()
    if not word:
        raise InputError("empty target", token=text, source="TARGET")
    if word.split(":", 1)[0] in ovr.KINDS and ":" in word:
        return ovr.parse_section(word, "TARGET")
    names = {rv.facts.domain_name for rv in running if rv.facts.domain_name}
    name, sep, devid = word.rpartition(":")
    if sep and devid.isdigit() and devid.isascii():
        if name in names or _configured(name, policy):
            return ovr.Target("device", name, int(devid))
        raise InputError("unknown domain (not running, and no domain config file names "
                         "it)", token=name, source="TARGET")
    if word in names:
        return ovr.Target("domain", word)
    if word in {rv.facts.vif for rv in running}:
        return ovr.Target("vif", word)
    if _configured(word, policy):
        return ovr.Target("domain", word)
    raise InputError("unknown domain or vif (no running domain or vif netdev has this "
                     "name, and no domain config file names it)", token=word,
                     source="TARGET")


def _configured(name: str, policy: Policy) -> bool:
    config, _others = xlcfg.find_domain_config(name, policy.domain_config_dirs)
    return config is not None


def current_user() -> str:
    """Who is changing an override: ``$SUDO_USER``, else the login name."""
    for key in ("SUDO_USER", "LOGNAME", "USER"):
        if os.environ.get(key):
            return os.environ[key]
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return f"uid {os.getuid()}"


# -- changing overrides -------------------------------------------------------------------


def change_overrides(edit: Callable[[ovr.Overrides, _Scene], ovr.Overrides],
                     conf: Optional[str] = None, xs=None,
                     now: Optional[_dt.datetime] = None) -> Report:
    """Change the overrides file with ``edit`` and apply the result to the running
    vifs whose plan it changes, all under the host lock.

    Checked before anything is written: every affected vif's new plan resolves,
    and fits admission (``[host] admission = refuse`` refuses an oversold
    guarantee). Then the file is written atomically and the affected vifs are
    changed in place.

    :raises InputError: from ``edit`` or a new plan (nothing changed).
    :raises AdmissionRefused: a guarantee that does not fit (nothing changed).
    """
    now = now or ovr.utc_now()
    with alloc.host_lock():
        scene = _scene(conf, xs)
        new = edit(scene.overrides, scene)
        affected: List[VifPlan] = []
        for rv in scene.running:
            try:
                before = _plan(rv, scene.policy, scene.overrides, now)
            except VifQosError:
                before = None
            after = _plan(rv, scene.policy, new, now)  # bad input raises: nothing changed
            if before is None or (before.inbound, before.outbound, before.uplink) != \
                    (after.inbound, after.outbound, after.uplink):
                affected.append(after)
        host = scene.policy.host
        dry = reconcile.reconcile(affected, host, apply=False, sweep=False, admit=True,
                                  links=scene.links)
        for vif in dry.vifs:
            if vif.error and vif.status == 2:
                raise AdmissionRefused(vif.error)
        saved = ovr.save(new)
        plans = [_plan(rv, scene.policy, saved, now) for rv in scene.running
                 if rv.facts.vif in {p.vif for p in affected}]
        result = reconcile.reconcile(plans, host, apply=True, sweep=False,
                                     links=scene.links)
    warnings = [line for line in guarantee.plans_problems(plans)]
    return Report(result, True, [], scene.skipped, warnings, len(scene.running))


def _check_pool(spec_text: str, policy: Policy) -> None:
    for word, value, source in specmod.split_spec(spec_text, "SPEC"):
        if word.strip().lower() == "pool":
            unknown = specmod.unknown_pool(
                specmod.parse_items([(word, value, source)]).get("pool"), policy.pools)
            if unknown is not None:
                raise unknown


def set_override(target: str, spec_text: str, *, who: Optional[str] = None,
                 reason: str = "", for_s: Optional[int] = None,
                 conf: Optional[str] = None, xs=None,
                 now: Optional[_dt.datetime] = None) -> Report:
    """``vif-qos set TARGET SPEC [--for DURATION] [--reason TEXT]``: set qos keys
    (``rate=20mbit``, ``pool=overage``, ``rate_out=none``...) for ``target`` (see
    :func:`resolve_target`), merged into its existing override, with who/when/why
    and an expiry ``for_s`` seconds from now (None: until unset); applied at once
    to the running vifs it changes, and at every later online.

    :raises InputError: unknown target or pool, a bad spec (nothing changed).
    :raises AdmissionRefused: see :func:`change_overrides`.
    """
    now = now or ovr.utc_now()

    def edit(old: ovr.Overrides, scene: _Scene) -> ovr.Overrides:
        resolved = resolve_target(target, scene.running, scene.policy)
        _check_pool(spec_text, scene.policy)
        return ovr.with_set(old, resolved, spec_text, who=who or current_user(),
                            reason=reason, for_s=for_s, now=now)

    return change_overrides(edit, conf, xs, now)


def unset_override(target: str, keys: Sequence[str] = (), *, conf: Optional[str] = None,
                   xs=None, now: Optional[_dt.datetime] = None) -> Report:
    """``vif-qos unset TARGET [KEY ...]``: remove those keys from ``target``'s
    override, or the whole override; the affected running vifs go back to what
    their other sources give (Xen's ``rate=``, the policy) at once.

    ``target`` is matched against the overrides as they are written first (so an
    override of a domain that no longer runs can be removed).

    :raises InputError: no such override or key (nothing changed).
    """
    def edit(old: ovr.Overrides, scene: _Scene) -> ovr.Overrides:
        resolved = _existing_target(target, old) or resolve_target(
            target, scene.running, scene.policy)
        return ovr.with_unset(old, resolved, keys)

    return change_overrides(edit, conf, xs, now)


def _existing_target(text: str, overrides: ovr.Overrides) -> Optional[ovr.Target]:
    word = text.strip()
    candidates: List[ovr.Target] = []
    if word.split(":", 1)[0] in ovr.KINDS and ":" in word:
        try:
            candidates.append(ovr.parse_section(word, "TARGET"))
        except VifQosError:
            return None
    else:
        name, sep, devid = word.rpartition(":")
        if sep and devid.isdigit():
            candidates.append(ovr.Target("device", name, int(devid)))
        candidates += [ovr.Target("domain", word), ovr.Target("vif", word)]
    for target in candidates:
        if overrides.get(target) is not None:
            return target
    return None


def list_overrides(now: Optional[_dt.datetime] = None) -> Dict[str, object]:
    """The overrides file as the ``vif-qos overrides --json`` object."""
    now = now or ovr.utc_now()
    current = ovr.load()
    return {"path": current.path, "now": ovr.format_time(now),
            "overrides": [o.to_json(now) for o in current.items]}
