"""``vif-qos install`` / ``vif-qos uninstall``: put Xen's side of vif-qos in place.

``install`` writes, under ``--root`` (default ``/``):

- ``/etc/xen/scripts/vif-post.d/00-vif-qos.hook``: sourced by vif-bridge, vif-route
  and vif-nat (``call_hooks vif post``); runs ``vif-qos online|offline|add|remove``;
- ``/etc/xen/scripts/vif-qos``: the ``script=vif-qos`` wrapper around the real
  script (``--wrapped-script``, default ``vif-bridge``);
- ``/etc/xen/scripts/vif-qos-client``: the hook's and the wrapper's client of
  ``vif-qos serve`` (used while the service's socket exists);
- ``/etc/udev/rules.d/85-vif-qos.rules``: orphan cleanup when a guest netdev goes
  (and ``86-vif-qos-udev-hotplug.rules`` with ``--udev-hotplug``);
- ``/etc/xen/vif-qos.conf``: the commented example policy, only when no policy file
  exists (an existing one is never touched);
- ``/etc/systemd/system/<unit>``: every unit of the package's ``systemd/`` folder
  (``*.service``, ``*.socket``, ``*.timer``; ``vif-qos-reload.service`` among
  them), enabled with ``systemctl enable`` when installing into ``/`` on a host
  running systemd;
- ``/var/lib/vif-qos/install-manifest.json``: what was written and its checksum.

The absolute path of the ``vif-qos`` program (``--vif-qos``, default the one
running) is written into the hook, the wrapper and the rules, because Xen's
scripts run with their own ``PATH``.

Neither works against the Debian package: when dpkg's file lists under the root
(``/var/lib/dpkg/info/*.list``) name the hook, the wrapper, the policy file or the
udev rules, a package owns them (``apt`` upgrades and purges them), so ``install``
stops with an error naming the package and the files, and ``uninstall`` keeps
every file a package owns.

``uninstall`` removes exactly what the manifest lists, and only files whose
content is still what install wrote; an edited file is kept and reported. The
policy file is removed only if it is byte-for-byte the installed example. Without
a manifest it removes the hook, wrapper and rules if they carry vif-qos's marker,
and never the policy file. Directories are removed only if install made them and
they are empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from typing import Dict, List, Optional, Tuple

from vif_qos.errors import EnvironmentProblem, InputError

HOOK_PATH = "etc/xen/scripts/vif-post.d/00-vif-qos.hook"
WRAPPER_PATH = "etc/xen/scripts/vif-qos"
#: The hook's client of ``vif-qos serve`` (run with ``sys.executable -IS``).
CLIENT_PATH = "etc/xen/scripts/vif-qos-client"
UDEV_PATH = "etc/udev/rules.d/85-vif-qos.rules"
UDEV_HOTPLUG_PATH = "etc/udev/rules.d/86-vif-qos-udev-hotplug.rules"
POLICY_PATH = "etc/xen/vif-qos.conf"
SYSTEMD_DIR = "etc/systemd/system"
#: Unit file kinds installed from the package's systemd/ folder.
UNIT_SUFFIXES = (".service", ".socket", ".timer")
MANIFEST_PATH = "var/lib/vif-qos/install-manifest.json"

#: (source relative to the data directory, target relative to the root, mode)
_SHIPPED = (
    ("scripts/vif-post.d/00-vif-qos.hook", HOOK_PATH, 0o755),
    ("scripts/vif-qos", WRAPPER_PATH, 0o755),
    ("scripts/vif-qos-client", CLIENT_PATH, 0o755),
    ("udev/85-vif-qos.rules", UDEV_PATH, 0o644),
)
_UDEV_HOTPLUG = ("udev/86-vif-qos-udev-hotplug.rules", UDEV_HOTPLUG_PATH, 0o644)
_MARKER = "vif-qos"
#: dpkg's database, relative to the root: one ``<package>.list`` (or
#: ``<package>:<arch>.list``) per package, every path it installed, one a line.
DPKG_INFO_PATH = "var/lib/dpkg/info"
#: Where the Debian package puts the udev rules (dh_installudev), besides the paths
#: install writes.
_PACKAGE_ONLY_PATHS = ("lib/udev/rules.d/85-vif-qos.rules",
                       "usr/lib/udev/rules.d/85-vif-qos.rules")

#: What a path written into the hook, the wrapper and the udev rules may hold. The
#: hook is SOURCED by vif-bridge (set -e) and the values sit inside double quotes
#: (``"$`\\`` would be expanded or end the string, ``}`` ends ``${...:-word}``);
#: udev splits RUN on white space and substitutes ``%`` and ``$``; a leading ``@``
#: means "not rendered" to the scripts.
_SAFE_PATH = re.compile(r"[A-Za-z0-9._+/,:=~-][A-Za-z0-9._+/,:=~@-]*")


def _check_path_word(value: str, source: str, absolute: bool) -> None:
    """:raises InputError: ``value`` cannot be written into the scripts safely."""
    if not isinstance(value, str) or not _SAFE_PATH.fullmatch(value):
        raise InputError("not a usable script name or path for the installed scripts "
                         "(letters, digits and "
                         "._+/,:=~-@ only: no quotes, $, `, \\, %, white space)",
                         token=str(value), source=source)
    if absolute and not value.startswith("/"):
        raise InputError("must be an absolute path (Xen's scripts and udev do not run in "
                         "this directory)", token=value, source=source)


def configure(parser, name) -> None:
    parser.add_argument("--root", "--prefix", dest="root", default="/", metavar="DIR",
                        help="install under DIR instead of / (a package build root or a "
                             "test tree); Xen's paths below it are fixed")
    if name == "install":
        parser.add_argument("--wrapped-script", default="vif-bridge", metavar="SCRIPT",
                            help="the script the script=vif-qos wrapper runs (a name in "
                                 "/etc/xen/scripts or an absolute path; default vif-bridge)")
        parser.add_argument("--vif-qos", dest="vif_qos", default=None, metavar="PATH",
                            help="the vif-qos program Xen's scripts and udev run "
                                 "(default: this one)")
        parser.add_argument("--udev-hotplug", action="store_true",
                            help="also install the rules for udev-driven hotplug "
                                 "(xend / run_hotplug_scripts=0)")


def data_dir() -> str:
    """Where ``scripts/`` and ``udev/`` are: the source checkout, or
    ``<prefix>/share/vif-qos`` for an installed package.

    :raises EnvironmentProblem: neither has them.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [os.path.dirname(package),
                  os.path.join(sys.prefix, "share", "vif-qos"),
                  "/usr/local/share/vif-qos", "/usr/share/vif-qos"]
    for base in candidates:
        if os.path.isfile(os.path.join(base, "scripts", "vif-qos")):
            return base
    raise EnvironmentProblem("vif-qos's scripts/ and udev/ files were not found",
                             token=", ".join(candidates), source="install")


def example_policy_path() -> str:
    from vif_qos.config.policy import EXAMPLE_PATH
    return EXAMPLE_PATH


def default_vif_qos_path() -> str:
    """The running vif-qos program's absolute path (best guess)."""
    beside = os.path.join(os.path.dirname(sys.executable), "vif-qos")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("vif-qos")
    return os.path.abspath(found) if found else "/usr/local/bin/vif-qos"


def _target(root: str, rel: str) -> str:
    return os.path.join(os.path.abspath(root), rel)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _render(text: str, vif_qos: str, wrapped: str) -> str:
    return text.replace("@VIF_QOS@", vif_qos).replace("@WRAPPED_SCRIPT@", wrapped) \
        .replace("@PYTHON@", sys.executable)


def _makedirs(path: str, made: List[str], root: str) -> None:
    """Make ``path`` and its missing parents; record each one made, relative to
    ``root`` (deepest last)."""
    missing: List[str] = []
    cur = path
    root = os.path.abspath(root)
    while not os.path.isdir(cur) and cur != root and cur != os.path.dirname(cur):
        missing.append(cur)
        cur = os.path.dirname(cur)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        made.append(os.path.relpath(directory, root))


def _write(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.vif-qos-tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def dpkg_owners(root: str, rels) -> Dict[str, str]:
    """Which of the paths ``rels`` (relative to ``root``) a dpkg package owns, by
    dpkg's file lists under ``root``: ``{rel: package}``; ``{}`` without dpkg.

    :raises EnvironmentProblem: dpkg's directory exists but a list cannot be read.
    """
    info = _target(root, DPKG_INFO_PATH)
    try:
        names = sorted(n for n in os.listdir(info) if n.endswith(".list"))
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise EnvironmentProblem(f"cannot read dpkg's database: {err.strerror}",
                                 token=info, source="install")
    wanted = {"/" + rel: rel for rel in rels}
    owners: Dict[str, str] = {}
    for name in names:
        try:
            with open(os.path.join(info, name), encoding="utf-8", errors="replace") as fh:
                for entry in fh:
                    rel = wanted.get(entry.rstrip("\n"))
                    if rel is not None and rel not in owners:
                        owners[rel] = name[:-len(".list")].split(":")[0]
        except OSError as err:
            raise EnvironmentProblem(f"cannot read dpkg's database: {err.strerror}",
                                     token=os.path.join(info, name), source="install")
    return owners


def _refuse_over_package(root: str) -> None:
    """:raises EnvironmentProblem: a dpkg package owns the files install writes."""
    rels = [rel for _src, rel, _mode in _SHIPPED] + [UDEV_HOTPLUG_PATH, POLICY_PATH]
    owners = dpkg_owners(root, rels + list(_PACKAGE_ONLY_PATHS))
    if owners:
        packages = sorted(set(owners.values()))
        raise EnvironmentProblem(
            f"the Debian package {', '.join(packages)} already installs "
            f"{', '.join('/' + rel for rel in sorted(owners))}; apt upgrades and "
            f"removes them: not installing a second copy (to install by hand, 'apt "
            f"remove {packages[0]}' first)", source=_target(root, DPKG_INFO_PATH))


def install(root: str = "/", wrapped_script: str = "vif-bridge",
            vif_qos: Optional[str] = None, udev_hotplug: bool = False) -> List[Tuple[str, str]]:
    """Install; return ``(action, path)`` pairs (``installed``, ``kept``, ``updated``).

    :raises InputError: a ``wrapped_script`` or ``vif_qos`` path that cannot be
        written into the shell scripts and udev rules safely; ``vif_qos`` not absolute.
    :raises EnvironmentProblem: the shipped files or the example policy are missing;
        a dpkg package (the Debian package vif-qos) owns the files install writes.
    """
    _check_path_word(wrapped_script, "--wrapped-script", absolute=False)
    if not os.path.isdir(root):
        raise InputError("the install root is not a directory", token=root, source="--root")
    _refuse_over_package(root)
    vif_qos = default_vif_qos_path() if vif_qos is None else vif_qos
    _check_path_word(vif_qos, "--vif-qos", absolute=True)
    _check_path_word(sys.executable, "the Python interpreter (for vif-qos-client)",
                     absolute=True)
    base = data_dir()
    manifest_file = _target(root, MANIFEST_PATH)
    old = _load_manifest(manifest_file)
    files: Dict[str, str] = dict(old.get("files", {}))
    dirs: List[str] = list(old.get("dirs", []))

    def put(src: str, rel: str, mode: int) -> Tuple[str, str]:
        """Write the shipped file ``src`` rendered to ``rel``; record it."""
        with open(os.path.join(base, src), encoding="utf-8") as fh:
            data = _render(fh.read(), vif_qos, wrapped_script).encode()
        path = _target(root, rel)
        _makedirs(os.path.dirname(path), dirs, root)
        action = "updated" if os.path.exists(path) else "installed"
        _write(path, data, mode)
        files[rel] = _sha256(data)
        return action, path

    shipped = list(_SHIPPED) + ([_UDEV_HOTPLUG] if udev_hotplug else [])
    report = [put(src, rel, mode) for src, rel, mode in shipped]
    units = shipped_units(base)
    report += [put(f"systemd/{name}", f"{SYSTEMD_DIR}/{name}", 0o644) for name in units]
    enabled = _systemctl(root, ["daemon-reload"], []) and \
        _systemctl(root, ["enable"], [u for u in units if _has_install(base, u)])
    report.append(_install_policy(root, files, dirs))
    _makedirs(os.path.dirname(manifest_file), dirs, root)
    manifest = {"files": files, "dirs": dirs, "vif_qos": vif_qos,
                "wrapped_script": wrapped_script,
                "enabled_units": sorted(set(old.get("enabled_units", []))
                                        | set(enabled or []))}
    if enabled:
        report += [("enabled", name) for name in enabled]
    _write(manifest_file, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(),
           0o644)
    return report


def _install_policy(root: str, files: Dict[str, str], dirs: List[str]) -> Tuple[str, str]:
    """The example policy file where none exists (an existing one is kept).

    :raises EnvironmentProblem: the package lacks the example."""
    policy = _target(root, POLICY_PATH)
    if os.path.exists(policy):
        return "kept", policy
    example = example_policy_path()
    if not os.path.isfile(example):
        raise EnvironmentProblem("the example policy file is missing from the package",
                                 token=example, source="install")
    with open(example, "rb") as fh:
        data = fh.read()
    _makedirs(os.path.dirname(policy), dirs, root)
    _write(policy, data, 0o644)
    files[POLICY_PATH] = _sha256(data)
    return "installed", policy


def shipped_units(base: str) -> List[str]:
    """The unit files of the package's ``systemd/`` folder, sorted (a generic
    mechanism: every ``*.service``, ``*.socket``, ``*.timer`` there)."""
    folder = os.path.join(base, "systemd")
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(UNIT_SUFFIXES)
                  and os.path.isfile(os.path.join(folder, n)))


def _has_install(base: str, unit: str) -> bool:
    with open(os.path.join(base, "systemd", unit), encoding="utf-8") as fh:
        return any(line.strip() == "[Install]" for line in fh)


def systemd_running(root: str) -> bool:
    """True when installing into ``/`` on a host booted with systemd (the
    ``/run/systemd/system`` test of sd_booted(3)) that has ``systemctl``."""
    return os.path.abspath(root) == "/" and os.path.isdir("/run/systemd/system") \
        and shutil.which("systemctl") is not None


def _systemctl(root: str, verb: List[str], units: List[str]) -> Optional[List[str]]:
    """``systemctl VERB UNITS`` when :func:`systemd_running`; the units (or ``[]``)
    when it ran, None when systemd is not there (nothing to enable). A failure is
    an EnvironmentProblem naming systemctl's message."""
    import subprocess

    if not systemd_running(root) or (verb != ["daemon-reload"] and not units):
        return None if not systemd_running(root) else []
    proc = subprocess.run(["systemctl", *verb, *units], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise EnvironmentProblem(f"systemctl {' '.join(verb)} failed: "
                                 f"{' '.join(proc.stderr.split())}",
                                 token=" ".join(units) or None, source="install")
    return units


def _inside(rel: object) -> bool:
    """A manifest path that stays below the root: relative, no '..', no NUL."""
    return isinstance(rel, str) and rel != "" and "\0" not in rel and \
        not os.path.isabs(rel) and ".." not in rel.split("/")


def _load_manifest(path: str) -> dict:
    """The manifest, or ``{}`` when it is missing or corrupt (not JSON, wrong types,
    a path that would leave the root): then uninstall goes by the marker instead,
    and never follows a corrupt entry outside the root."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    files = data.get("files", {})
    dirs = data.get("dirs", [])
    if not isinstance(files, dict) or not isinstance(dirs, list) or \
            not all(_inside(rel) and (digest is None or isinstance(digest, str))
                    for rel, digest in files.items()) or \
            not all(_inside(rel) for rel in dirs):
        return {}
    return data


def uninstall(root: str = "/") -> List[Tuple[str, str]]:
    """Remove what :func:`install` put; return ``(action, path)`` pairs
    (``removed``, ``kept (edited)``, ``kept (policy)``, ``kept (package P)``,
    ``absent``). A file a dpkg package owns is never removed."""
    manifest_file = _target(root, MANIFEST_PATH)
    manifest = _load_manifest(manifest_file)
    report: List[Tuple[str, str]] = []
    files: Dict[str, Optional[str]] = dict(manifest.get("files", {}))
    if not manifest:
        # No manifest: the files carrying our marker, never the policy file.
        for _src, rel, _mode in list(_SHIPPED) + [_UDEV_HOTPLUG]:
            files[rel] = None
    owners = dpkg_owners(root, list(files))
    enabled = [u for u in manifest.get("enabled_units", []) if isinstance(u, str)
               and "/" not in u and u.endswith(UNIT_SUFFIXES)]
    if enabled and _systemctl(root, ["disable"], enabled):
        report += [("disabled", name) for name in enabled]
    for rel, digest in files.items():
        path = _target(root, rel)
        if rel in owners:
            report.append((f"kept (package {owners[rel]})", path))
            continue
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            report.append(("absent", path))
            continue
        ours = (_sha256(data) == digest) if digest else (
            rel != POLICY_PATH and _MARKER.encode() in data[:4096])
        if not ours:
            report.append(("kept (policy)" if rel == POLICY_PATH else "kept (edited)", path))
            continue
        os.unlink(path)
        report.append(("removed", path))
    if any(rel.startswith(SYSTEMD_DIR + "/") for rel in files):
        _systemctl(root, ["daemon-reload"], [])
    if manifest:
        os.unlink(manifest_file)
        report.append(("removed", manifest_file))
    for rel in reversed(manifest.get("dirs", [])):
        directory = _target(root, rel)
        try:
            os.rmdir(directory)
            report.append(("removed", directory))
        except OSError:
            pass  # not empty (someone else's files) or already gone
    return report


def run(args) -> int:
    if os.path.abspath(args.root) == "/" and os.geteuid() != 0:
        raise EnvironmentProblem("installing into / needs root", source="install")
    if getattr(args, "wrapped_script", None) is not None:
        report = install(args.root, args.wrapped_script, args.vif_qos, args.udev_hotplug)
        for action, path in report:
            print(f"{action:10} {path}")
        print("vif-qos runs from the hook for every vif; or set script=vif-qos on a vif "
              "line to use the wrapper. udev: run 'udevadm control --reload' to load the "
              "rules.")
    else:
        for action, path in uninstall(args.root):
            print(f"{action:18} {path}")
    return 0
