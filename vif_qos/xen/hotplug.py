"""``vif-qos online|offline|add|remove``: what Xen's toolstack runs for a vif.

Run by the ``vif-post.d`` hook inside Xen's ``vif-bridge``/``vif-route``/``vif-nat``
or by the ``script=vif-qos`` wrapper (see README.rst, "How vif-qos is run by Xen"), with the
environment and arguments libxl gives a vif script (``tools/libs/light/
libxl_linux.c: libxl__hotplug_nic``): ``vif=vif<domid>.<devid>``,
``XENBUS_PATH=backend/vif/<domid>/<devid>``, for the HVM emulated NIC
``INTERFACE=vif<domid>.<devid>-emu``, ``netdev``, ``script``; argv
``online|offline type_if=vif`` or ``add|remove type_if=tap``.

The conventions are those of ``tools/hotplug/Linux/vif-common.sh``:

- the first word without ``=`` is the command; ``key=value`` words override the
  environment (``evalVariables``); ``type_if`` defaults to ``vif``;
- ``online``/``offline`` act only for ``type_if=vif``, ``add``/``remove`` only for
  ``type_if=tap``; any other combination exits 0 doing nothing;
- the device is ``$vif`` (``type_if=vif``) or ``$INTERFACE`` (``tap``); a backend
  ``vifname`` renames it to ``vifname`` (``vifname-emu`` for the tap). The tap's
  domid and devid come from its name, ``vif<domid>.<devid>-emu`` (or the pre-4.2
  ``tap<domid>.<devid>``), and its backend is the PV twin's,
  ``/local/domain/0/backend/vif/<domid>/<devid>``: the tap is shaped like its twin.

What is trusted: only dom0-owned nodes are read -- the backend
directory (``bridge``, ``rate``, ``mac``, ``vifname``, ``frontend-id``, ``type``),
``/local/domain/<domid>/name``, ``/local/domain/<domid>/vm`` and
``/vm/<uuid>/name`` -- never the guest's ``device/vif/<devid>/`` directory (the
guest owns it and can write anything there, a ``rate`` too).

``online``/``add`` resolve the plan and apply it. On failure they undo what was
applied, write ``hotplug-error`` (the one line ``xl create`` shows) and
``hotplug-status=error`` into the backend directory, log, and exit non-zero (2 for
bad input, 1 otherwise) -- unless the policy's ``on_failure = warn``, which logs a
warning and exits 0 with the vif unshaped. ``offline``/``remove`` are best effort
and always exit 0, also when the netdev is already gone or ``online`` never ran.

A whole run has a time budget for its own work (``VIF_QOS_HOTPLUG_TIMEOUT``,
default 30 s): past it ``online``/``add`` fail with that reason, undone. Waiting
for the host lock while other guests' runs take their turn does not count, up to
a wall of 36 s (libxl kills the script at 40 s); a lock held still for the whole
budget (a stuck run) does.

Environment knobs: ``VIF_QOS_CONFIG`` (the policy file, default
``/etc/xen/vif-qos.conf``, see :mod:`vif_qos.config.policy`), ``VIF_QOS_XENSTORE_TIMEOUT``
(seconds per xenstore tool run, default 5), and those of :mod:`vif_qos.xen.hotlog`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from vif_qos.core.ifname import check_ifname
from vif_qos.errors import InputError, VifQosError, XenstoreError, one_line
from vif_qos.model import ON_FAILURE_WARN, VifFacts
from vif_qos.xen.budget import (DEFAULT_HOTPLUG_TIMEOUT_S, UNDO_TIMEOUT_S, HotplugTimeout,
                                deadline, hotplug_budget)
from vif_qos.xen.hotlog import HotplugLog, library_log_to
from vif_qos.xen.inventory import BACKEND_KEYS, netdev_name, read_nodes, vif_facts
from vif_qos.xen.services import Services, default_services

HOTPLUG_COMMANDS = ("online", "offline", "add", "remove")
UP_COMMANDS = ("online", "add")

# [0-9], not \d (which takes any Unicode digit); used with fullmatch (a '$' would let
# a trailing newline through).
_XENBUS_RE = re.compile(r"(?:/local/domain/([0-9]+)/)?backend/vif/([0-9]+)/([0-9]+)")
_TAP_RES = (re.compile(r"vif([0-9]+)\.([0-9]+)-emu"), re.compile(r"tap([0-9]+)\.([0-9]+)"))

USAGE = """usage: vif-qos {command} [type_if=vif|tap] [key=value ...]

Run by Xen's vif-bridge/vif-route/vif-nat hook (vif-post.d) or by the script=vif-qos
wrapper, with libxl's environment: vif, XENBUS_PATH, INTERFACE (HVM tap), netdev.
online/add shape the vif (failure: hotplug-error, hotplug-status=error, exit 1 or 2);
offline/remove take the shaping away (always exit 0). See README.rst, "How vif-qos is run by Xen"."""

#: The ``key=value`` words (or environment variables) :func:`parse_invocation` reads:
#: ``(key, metavar, meaning)``; vif-qos(8) lists them (man/mkman.py).
HOTPLUG_WORDS = (
    ("type_if", "vif|tap", "vif (the default) for online and offline, tap for add and "
     "remove; any other combination exits 0 doing nothing"),
    ("vif", "NAME", "type_if=vif: the netdev as netback made it, vif<domid>.<devid> "
     "(libxl's environment); required"),
    ("XENBUS_PATH", "PATH", "type_if=vif: the backend directory, backend/vif/<domid>/<devid> "
     "(libxl's environment); required"),
    ("INTERFACE", "NAME", "type_if=tap: the HVM emulated NIC's tap, vif<domid>.<devid>-emu "
     "(or the pre-4.2 tap<domid>.<devid>); required"),
    ("dev", "NAME", "the netdev's final name after vif-common.sh's vifname= rename (the "
     "vif-post.d hook passes it)"),
    ("bridge", "NAME", "the bridge vif-bridge joined the vif to (the hook passes it; else "
     "the backend's bridge key)"),
)

@dataclass(frozen=True)
class Invocation:
    """One hotplug run, parsed from argv and the environment (no I/O).

    ``dev`` is the netdev name as libxl/netback made it (``vif3.0``,
    ``vif3.0-emu``); ``hook_dev`` the final name when the hook passed it
    (``dev=`` after vif-common.sh's rename), else ``None``. ``xenbus_path`` is the
    backend directory (relative or absolute, as given). ``bridge_arg`` is a
    ``bridge=`` word from argv (the hook passes vif-bridge's final bridge).
    """

    command: str
    type_if: str
    dev: str
    xenbus_path: str
    domid: int
    devid: int
    hook_dev: Optional[str] = None
    bridge_arg: Optional[str] = None
    bridge_env: Optional[str] = None
    variables: Dict[str, str] = field(default_factory=dict)




def parse_words(command: str, argv: Sequence[str]) -> Tuple[str, Dict[str, str]]:
    """Split a hotplug argv the way ``findCommand``/``evalVariables`` do.

    ``command`` is the word the front door already took; a further word without
    ``=`` is ignored, as the shell scripts ignore it. ``key=value`` words (``=``
    not first) become variables; the last one of a key wins.
    """
    variables: Dict[str, str] = {}
    for word in argv:
        if "=" in word and not word.startswith("="):
            key, _, value = word.partition("=")
            variables[key] = value
    return command, variables


def xenbus_ids(path: str) -> Tuple[int, int]:
    """``(domid, devid)`` of a vif backend path (``backend/vif/3/0`` or absolute).

    :raises InputError: not a vif backend path.
    """
    match = _XENBUS_RE.fullmatch(path.rstrip("/"))
    if not match:
        raise InputError("XENBUS_PATH is not a vif backend path "
                         "(backend/vif/<domid>/<devid>)", token=path, source="XENBUS_PATH")
    return int(match.group(2)), int(match.group(3))


def tap_ids(name: str) -> Tuple[int, int]:
    """``(domid, devid)`` from an emulated NIC's tap name (``vif3.0-emu``, ``tap3.0``).

    :raises InputError: another name.
    """
    for regex in _TAP_RES:
        match = regex.fullmatch(name)
        if match:
            return int(match.group(1)), int(match.group(2))
    raise InputError("INTERFACE is not an emulated NIC tap name (vif<domid>.<devid>-emu)",
                     token=name, source="INTERFACE")


def parse_invocation(command: str, argv: Sequence[str],
                     env: Mapping[str, str]) -> Optional[Invocation]:
    """The run described by ``command``, ``argv`` and ``env``; ``None``: nothing to do.

    :raises InputError: a required variable (``vif``, ``XENBUS_PATH``,
        ``INTERFACE``) is missing or malformed.
    """
    if command not in HOTPLUG_COMMANDS:
        raise InputError("not a hotplug command", token=command, source="argv")
    _cmd, words = parse_words(command, argv)
    merged: Dict[str, str] = {k: v for k, v in env.items()}
    merged.update(words)
    type_if = merged.get("type_if") or "vif"
    if type_if not in ("vif", "tap"):
        return None
    if command in ("online", "offline") and type_if != "vif":
        return None
    if command in ("add", "remove") and type_if != "tap":
        return None
    if type_if == "vif":
        dev = merged.get("vif", "")
        if not dev:
            raise InputError("the vif variable (netdev name) is missing", source="environment")
        check_ifname(dev, "vif", "the vif variable")
        xenbus_path = merged.get("XENBUS_PATH", "")
        if not xenbus_path:
            raise InputError("XENBUS_PATH is missing", source="environment")
        domid, devid = xenbus_ids(xenbus_path)
    else:
        dev = merged.get("INTERFACE", "")
        if not dev:
            raise InputError("INTERFACE (the -emu tap's name) is missing", source="environment")
        domid, devid = tap_ids(dev)
        check_ifname(dev, "INTERFACE", "the INTERFACE variable")
        # vif-common.sh: XENBUS_PATH="/local/domain/0/backend/vif/$domid/$devid"
        xenbus_path = f"/local/domain/0/backend/vif/{domid}/{devid}"
    hook_dev = words.get("dev") or None
    if hook_dev is not None:
        check_ifname(hook_dev, "argv dev=", "the hook's dev")
    return Invocation(command=command, type_if=type_if, dev=dev, xenbus_path=xenbus_path,
                      domid=domid, devid=devid, hook_dev=hook_dev,
                      bridge_arg=words.get("bridge") or None,
                      bridge_env=env.get("bridge") or None, variables=words)


def final_dev_name(inv: Invocation, vifname: Optional[str]) -> str:
    """The netdev's name after vif-common.sh's ``vifname`` rename."""
    return netdev_name(inv.dev, vifname, inv.type_if == "tap", inv.hook_dev)


def read_facts(xs, inv: Invocation) -> VifFacts:
    """Read the vif's facts from dom0-owned xenstore nodes only
    (:func:`vif_qos.xen.inventory.vif_facts`, as every other reader of them).

    :param xs: a :class:`vif_qos.xen.xenstore.Xenstore`.
    :raises XenstoreError: the backend directory is missing or xenstored failed.
    :raises InputError: ``frontend-id`` contradicts ``XENBUS_PATH``, or a name is bad.
    """
    from vif_qos.xen.xenstore import XenstoreMissing

    backend = inv.xenbus_path.rstrip("/")
    try:
        present = set(xs.list(backend))
    except XenstoreMissing:
        raise XenstoreError("the vif's backend directory does not exist",
                            token=backend, source="xenstore") from None
    values = read_nodes(xs, [f"{backend}/{key}" for key in BACKEND_KEYS if key in present],
                        [inv.domid])
    return vif_facts(values, backend, inv.domid, inv.devid, inv.dev, inv.type_if == "tap",
                     hook_dev=inv.hook_dev, bridge_arg=inv.bridge_arg,
                     bridge_env=inv.bridge_env)


# -- the services hotplug and cleanup call (the one seam for tests) -----------------



#: Longest hotplug-error value written: xenstored refuses a request above 4096 bytes
#: (XENSTORE_PAYLOAD_MAX, xs_wire.h) -- path, value and status share one request.
HOTPLUG_ERROR_MAX_BYTES = 2048


def _fit_xenstore(text: str) -> str:
    """``text`` cut to :data:`HOTPLUG_ERROR_MAX_BYTES` (UTF-8), marked with '...'."""
    raw = text.encode("utf-8", errors="surrogateescape")
    if len(raw) <= HOTPLUG_ERROR_MAX_BYTES:
        return text
    return raw[:HOTPLUG_ERROR_MAX_BYTES - 3].decode("utf-8", errors="ignore") + "..."


def _summary(plan) -> str:
    parts: List[str] = []
    inbound = getattr(plan, "inbound", None)
    outbound = getattr(plan, "outbound", None)
    if inbound is not None:
        parts.append(f"inbound {inbound.rate_bits_per_s} bit/s")
    if outbound is not None:
        pool = f" in pool {outbound.pool}" if outbound.pool else ""
        parts.append(f"outbound {outbound.rate_bits_per_s} bit/s (ceil "
                     f"{outbound.ceil_bits_per_s}){pool} on {plan.bridge}")
    return ", ".join(parts)


def hotplug_main(command: str, argv: Sequence[str], env: Optional[Mapping[str, str]] = None,
                 services: Optional[Services] = None) -> int:
    """Run one hotplug command; return the exit status (never raises).

    :param command: ``online``, ``offline``, ``add`` or ``remove``.
    :param argv: the words after the command (``type_if=vif``, ...).
    :param env: the environment (default ``os.environ``).
    :param services: injected policy/resolver/kernel/xenstore (default the real ones).
    :returns: 0 on success, on anything ``offline``/``remove`` did, on a combination
        that does nothing, and on an ``online`` failure under ``on_failure = warn``;
        otherwise 2 (bad input) or 1.
    """
    env = dict(os.environ if env is None else env)
    if any(word in ("-h", "--help") for word in argv):
        print(USAGE.format(command=command))
        return 0
    log = HotplugLog(context=f"{command} {env.get('vif') or env.get('INTERFACE') or '?'}")
    try:
        inv = parse_invocation(command, argv, env)
    except VifQosError as err:
        log.error(err.one_line())
        if command in UP_COMMANDS:
            # With a valid XENBUS_PATH (a bad vif or dev= beside it) xl still gets
            # the reason; without one there is nowhere to write hotplug-error.
            _report_bad_invocation(command, argv, env, err, services, log)
            return err.exit_status
        return 0
    if inv is None:
        log.debug(f"nothing to do for {command} with type_if={env.get('type_if', 'vif')}")
        return 0
    log.context = f"{command} {inv.hook_dev or inv.dev}"
    try:
        services = services or default_services(env)
    except Exception as err:  # pragma: no cover - an import problem
        log.error(one_line(err))
        return 1 if command in UP_COMMANDS else 0
    conf = env.get("VIF_QOS_CONFIG") or None
    with library_log_to(log):
        if command in UP_COMMANDS:
            _sweep_after_lost_service(env, services, conf, log)
            return _bring_up(inv, services, conf, log, hotplug_budget(env))
        try:
            with deadline(hotplug_budget(env), f"vif-qos {command}"):
                return _take_down(inv, services, conf, log)
        except HotplugTimeout as err:
            log.warning(f"{err.one_line()}; udev's vif-qos cleanup will finish the removal")
            return 0


def _report_bad_invocation(command: str, argv: Sequence[str], env: Mapping[str, str],
                           err: VifQosError, services: Optional[Services],
                           log: HotplugLog) -> None:
    """Write ``err`` as hotplug-error when the run's XENBUS_PATH is a valid vif
    backend path (or, for the tap, INTERFACE names one)."""
    _cmd, words = parse_words(command, argv)
    merged = dict(env, **words)
    path = merged.get("XENBUS_PATH", "")
    try:
        if (merged.get("type_if") or "vif") == "tap":
            domid, devid = tap_ids(merged.get("INTERFACE", ""))
            path = f"/local/domain/0/backend/vif/{domid}/{devid}"
        else:
            xenbus_ids(path)
    except VifQosError:
        return
    try:
        xenstore = (services or default_services(env)).xenstore
    except Exception as xs_err:
        log.error(f"could not write hotplug-error: {one_line(xs_err)}")
        return
    _write_hotplug_error(xenstore, path, err.one_line(), log)


@dataclass
class _Progress:
    """How far an online/add got: what a failure must undo."""

    policy: Optional[object] = None
    known_vif: Optional[str] = None
    applied_to: Optional[str] = None


def _bring_up(inv: Invocation, sv: Services, conf: Optional[str], log: HotplugLog,
              budget_s: float = DEFAULT_HOTPLUG_TIMEOUT_S) -> int:
    progress = _Progress()
    try:
        with deadline(budget_s, f"vif-qos {inv.command}"):
            plan = _shape(inv, sv, conf, log, progress)
    except Exception as err:  # every failure: undo, report, and decide the status
        return _failed_up(inv, sv, log, progress, err)
    from vif_qos.kernel.alloc import LOCK_WAIT
    log.debug(f"host lock: waited {LOCK_WAIT.total_s() * 1000:.0f} ms, held "
              f"{LOCK_WAIT.held_s * 1000:.0f} ms")
    if plan.inbound is None and plan.outbound is None:
        log.info("not shaped: no limit is set for this vif (stale shaping removed)")
    else:
        log.info(f"shaped: {_summary(plan)}")
    return 0


def _shape(inv: Invocation, sv: Services, conf: Optional[str], log: HotplugLog,
           progress: _Progress):
    """Load the policy, read the facts, plan and apply; ``progress`` says how far."""
    progress.policy = policy = sv.load_policy(conf)
    log.set_debug(bool(getattr(policy.host, "debug", False)))
    facts = read_facts(sv.xenstore, inv)
    log.context = f"{inv.command} {facts.vif}"
    progress.known_vif = facts.vif
    log.debug(f"facts: domid={facts.domid} devid={facts.devid} "
              f"name={facts.domain_name!r} bridge={facts.bridge} "
              f"rate={facts.xen_rate!r} mac={facts.mac}")
    plan = sv.plan_for_facts(facts, policy)
    for note in getattr(plan, "notes", ()) or ():
        log.warning(note)
    for name, source in sorted((getattr(plan, "sources", None) or {}).items()):
        log.debug(f"{name} from {source}")
    progress.applied_to = facts.vif
    sv.apply_vif(plan, owner=(inv.domid, inv.devid))
    return plan


def _failed_up(inv: Invocation, sv: Services, log: HotplugLog, progress: _Progress,
               err: Exception) -> int:
    """Undo what the online/add applied, report ``err``; the exit status."""
    message = one_line(err)
    host = getattr(progress.policy, "host", None)
    warn = host is not None and getattr(host, "on_failure", None) == ON_FAILURE_WARN
    undo = progress.applied_to
    if undo is None and warn:
        # "stays unshaped" must be true: an earlier guest's entry under the same
        # name (no offline, no udev cleanup) would otherwise hold this one.
        undo = progress.known_vif
    if undo is not None:
        try:
            with deadline(UNDO_TIMEOUT_S, "undoing the partial shaping",
                          hard_wall_s=UNDO_TIMEOUT_S):
                sv.remove_vif(undo, host=host, owner=(inv.domid, inv.devid))
        except Exception as undo_err:
            log.warning(f"undoing the partial shaping failed: {one_line(undo_err)}")
    if warn:
        log.warning(f"{message} (on_failure = warn: the vif stays unshaped)")
        return 0
    log.error(message)
    _write_hotplug_error(sv.xenstore, inv.xenbus_path, message, log)
    return (err.exit_status if isinstance(err, VifQosError) else 1) or 1


def _write_hotplug_error(xenstore, backend: str, message: str, log: HotplugLog) -> None:
    """``hotplug-error`` (the line ``xl create`` shows) and ``hotplug-status=error``
    in the backend directory, in one transaction; a failure is logged."""
    try:
        xenstore.write_many([(f"{backend}/hotplug-error",
                              _fit_xenstore(f"vif-qos: {message}")),
                             (f"{backend}/hotplug-status", "error")])
    except Exception as xs_err:
        log.error(f"could not write hotplug-error: {one_line(xs_err)}")


#: What offline/remove logs when nothing of vif-qos holds the vif (any more).
NOTHING_LEFT = ("no shaping left to remove (already removed when the netdev went, or "
                "never shaped)")


def _take_down(inv: Invocation, sv: Services, conf: Optional[str], log: HotplugLog) -> int:
    name = inv.hook_dev
    if name is None:
        try:
            name = final_dev_name(inv, sv.xenstore.read_default(f"{inv.xenbus_path}/vifname"))
        except Exception as err:
            name = inv.dev
            log.warning(f"backend vifname not readable ({one_line(err)}); using {name}")
    log.context = f"{inv.command} {name}"
    if _nothing_recorded(sv, name):
        # The usual case on a real Xen host: netback freed the netdev first and
        # udev's cleanup --vif already took the shaping (and its ledger note) away.
        log.info(NOTHING_LEFT)
        return 0
    host = None
    try:
        host = sv.load_policy(conf).host
        log.set_debug(bool(getattr(host, "debug", False)))
    except Exception as err:
        log.warning(f"policy not loaded ({one_line(err)}); removing with built-in settings")
    try:
        removed = sv.remove_vif(name, host=host, owner=(inv.domid, inv.devid))
        if removed:
            log.info("shaping removed")
        else:
            log.info(NOTHING_LEFT)
    except Exception as err:
        log.warning(f"removal incomplete (udev's vif-qos cleanup will retry): {one_line(err)}")
    return 0


def _nothing_recorded(sv: Services, name: str) -> bool:
    """Whether the ledger says ``name`` holds nothing of vif-qos: then an offline or
    remove returns without loading the policy, pyroute2 or the nftables bindings."""
    if sv.may_hold is None:
        return False
    try:
        return not sv.may_hold(name)
    except Exception:  # an unreadable ledger: look in the kernel
        return False


#: Set by the hook's client (scripts/vif-qos-client) when it falls back to this
#: in-process run because ``vif-qos serve`` went away in the middle of the request.
SERVICE_LOST_ENV = "VIF_QOS_SERVICE_LOST"


def _sweep_after_lost_service(env: Mapping[str, str], sv: Services, conf: Optional[str],
                              log: HotplugLog) -> None:
    """After the service died mid-request (SIGKILL, a crash), remove what its
    apply left half done -- a leaf or a TBF no entry records, an incomplete HTB
    tree -- before this run applies (:func:`vif_qos.kernel.apply.cleanup_orphans`,
    under the host lock, at most ``UNDO_TIMEOUT_S``). Failures are logged; the apply
    still runs."""
    if env.get(SERVICE_LOST_ENV) != "1":
        return
    try:
        from vif_qos.kernel.apply import cleanup_orphans
        with deadline(UNDO_TIMEOUT_S, "the sweep after the lost vif-qos service"):
            for what in cleanup_orphans(host=sv.load_policy(conf).host):
                log.info(f"removed after the lost vif-qos service: {what}")
    except Exception as err:
        log.warning(f"sweep after the lost vif-qos service failed: {one_line(err)}")
