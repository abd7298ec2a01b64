"""vif-qos install / uninstall into a temporary root: exactly what is installed goes.

Also checks the shipped hook and wrapper are valid bash, and that the hook, when
sourced the way vif-bridge's call_hooks does, runs (never execs) vif-qos and handles
its status under set -e.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from vif_qos import cli
from vif_qos.cli import install as cmd_install
from vif_qos.errors import EnvironmentProblem
from vif_qos.cli.install import (CLIENT_PATH, HOOK_PATH, MANIFEST_PATH, POLICY_PATH,
                                 UDEV_HOTPLUG_PATH, UDEV_PATH, WRAPPER_PATH, install,
                                 uninstall)

FAKE_BIN = "/opt/vq/bin/vif-qos"


def tree(root):
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def test_install_puts_everything_in_place(tmp_path):
    report = install(str(tmp_path), vif_qos=FAKE_BIN)
    assert {a for a, _ in report} == {"installed"}
    hook = (tmp_path / HOOK_PATH).read_text()
    wrapper = (tmp_path / WRAPPER_PATH).read_text()
    rules = (tmp_path / UDEV_PATH).read_text()
    assert f'_vif_qos_bin="{FAKE_BIN}"' in hook and "@VIF_QOS@" not in hook
    assert f'vif_qos="{FAKE_BIN}"' in wrapper
    assert 'wrapped="${VIF_QOS_WRAPPED_SCRIPT:-vif-bridge}"' in wrapper
    assert f'RUN+="{FAKE_BIN} cleanup --vif=%k"' in rules
    client = (tmp_path / CLIENT_PATH).read_text()
    assert client.startswith(f"#!{sys.executable} -IS\n")
    assert f'VIF_QOS = "{FAKE_BIN}"' in client and "@" not in client.split("\n", 1)[0]
    for rel in (HOOK_PATH, WRAPPER_PATH, CLIENT_PATH):
        assert stat.S_IMODE(os.stat(tmp_path / rel).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / UDEV_PATH).st_mode) == 0o644
    with open(cmd_install.example_policy_path()) as fh:
        assert (tmp_path / POLICY_PATH).read_text() == fh.read()
    assert not (tmp_path / UDEV_HOTPLUG_PATH).exists()


def test_uninstall_removes_exactly_what_install_put(tmp_path):
    (tmp_path / "etc/xen/scripts").mkdir(parents=True)
    (tmp_path / "etc/xen/scripts/vif-bridge").write_text("#!/bin/bash\n")
    (tmp_path / "etc/xen/xl.conf").write_text("# admin's\n")
    before = tree(tmp_path)
    install(str(tmp_path), vif_qos=FAKE_BIN, udev_hotplug=True)
    assert (tmp_path / UDEV_HOTPLUG_PATH).exists()
    # Someone else's hook in the same directory survives, and so does the directory.
    (tmp_path / "etc/xen/scripts/vif-post.d/50-other.hook").write_text("true\n")
    report = uninstall(str(tmp_path))
    assert ("removed", str(tmp_path / POLICY_PATH)) in report
    assert tree(tmp_path) == before | {"etc/xen/scripts/vif-post.d",
                                       "etc/xen/scripts/vif-post.d/50-other.hook"}
    os.unlink(tmp_path / "etc/xen/scripts/vif-post.d/50-other.hook")
    install(str(tmp_path), vif_qos=FAKE_BIN)
    uninstall(str(tmp_path))
    assert tree(tmp_path) == before | {"etc/xen/scripts/vif-post.d"}


def test_admin_policy_is_never_overwritten_nor_removed(tmp_path):
    policy = tmp_path / POLICY_PATH
    policy.parent.mkdir(parents=True)
    policy.write_text("[host]\non_failure = warn\n")
    report = install(str(tmp_path), vif_qos=FAKE_BIN)
    assert ("kept", str(policy)) in report
    assert policy.read_text() == "[host]\non_failure = warn\n"
    uninstall(str(tmp_path))
    assert policy.read_text() == "[host]\non_failure = warn\n"


def test_policy_edited_after_install_is_kept(tmp_path):
    install(str(tmp_path), vif_qos=FAKE_BIN)
    policy = tmp_path / POLICY_PATH
    policy.write_text(policy.read_text() + "\n[domains]\n")
    hook = tmp_path / HOOK_PATH
    hook.write_text(hook.read_text() + "# local change\n")
    report = dict((path, action) for action, path in uninstall(str(tmp_path)))
    assert report[str(policy)] == "kept (policy)"
    assert report[str(hook)] == "kept (edited)"
    assert policy.exists() and hook.exists()
    assert not (tmp_path / WRAPPER_PATH).exists()
    assert not (tmp_path / MANIFEST_PATH).exists()


def test_reinstall_is_idempotent_and_keeps_policy(tmp_path):
    install(str(tmp_path), vif_qos=FAKE_BIN)
    report = install(str(tmp_path), vif_qos="/usr/bin/vif-qos", wrapped_script="vif-route")
    assert ("kept", str(tmp_path / POLICY_PATH)) in report
    assert 'vif_qos="/usr/bin/vif-qos"' in (tmp_path / WRAPPER_PATH).read_text()
    assert "vif-route" in (tmp_path / WRAPPER_PATH).read_text()
    uninstall(str(tmp_path))
    assert tree(tmp_path) == set()


def test_uninstall_without_manifest_removes_marked_files_only(tmp_path):
    install(str(tmp_path), vif_qos=FAKE_BIN)
    os.unlink(tmp_path / MANIFEST_PATH)
    uninstall(str(tmp_path))
    assert not (tmp_path / HOOK_PATH).exists() and not (tmp_path / UDEV_PATH).exists()
    assert (tmp_path / POLICY_PATH).exists()


def test_missing_root_refused(tmp_path):
    with pytest.raises(Exception, match="not a directory"):
        install(str(tmp_path / "absent"))


def test_bad_wrapped_script_refused(tmp_path):
    with pytest.raises(Exception, match="usable script name"):
        install(str(tmp_path), wrapped_script='a"b')


def test_cli_install_and_uninstall(tmp_path, capsys):
    assert cli.main(["install", "--root", str(tmp_path), "--vif-qos", FAKE_BIN]) == 0
    assert "installed" in capsys.readouterr().out
    assert cli.main(["uninstall", "--prefix", str(tmp_path)]) == 0
    assert tree(tmp_path) == set()


def test_shipped_scripts_are_valid_bash():
    base = cmd_install.data_dir()
    for rel in ("scripts/vif-qos", "scripts/vif-post.d/00-vif-qos.hook"):
        subprocess.run(["bash", "-n", os.path.join(base, rel)], check=True)


HARNESS = r"""
set -e
log() { echo "log $*" >> "$OUT"; }
fatal() { echo "fatal $*" >> "$OUT"; exit 1; }
xenstore_read_default() { echo "${FAKE_STATUS:-}"; }
trap 'echo ERRTRAP >> "$OUT"' ERR
command=$1 type_if=$2 dev=$3 vif=vif3.0 XENBUS_PATH=backend/vif/3/0 bridge=xenbr0
. "$HOOK"
echo "after-hook $command" >> "$OUT"
"""


@pytest.mark.parametrize("command, rc, status, expect", [
    ("online", 0, "", ["args online type_if=vif dev=web1 vif=vif3.0 XENBUS_PATH=backend/vif/3/0 "
                       "bridge=xenbr0", "after-hook online"]),
    ("online", 2, "error", ["args", "log err vif-qos online failed for web1 (exit status 2)"]),
    ("online", 1, "", ["args", "fatal vif-qos online failed for web1 (exit status 1)"]),
    ("offline", 1, "", ["args", "after-hook offline"]),
])
def test_hook_runs_vif_qos_and_handles_status(tmp_path, command, rc, status, expect):
    out = tmp_path / "out"
    fake = tmp_path / "vif-qos"
    fake.write_text(f'#!/bin/sh\necho "args $*" >> "{out}"\nexit {rc}\n')
    fake.chmod(0o755)
    (tmp_path / "root").mkdir()
    install(str(tmp_path / "root"), vif_qos=str(fake))
    env = dict(os.environ, OUT=str(out), HOOK=str(tmp_path / "root" / HOOK_PATH),
               FAKE_STATUS=status)
    env.pop("VIF_QOS_WRAPPED", None)
    proc = subprocess.run(["bash", "-c", HARNESS, "hook", command, "vif", "web1"], env=env)
    lines = out.read_text().splitlines()
    assert proc.returncode == (rc if command == "online" else 0)
    assert "ERRTRAP" not in lines
    assert len(lines) == len(expect)
    for line, want in zip(lines, expect):
        assert line.startswith(want)


@pytest.mark.parametrize("command, wrapped_rc, qos_rc, want_rc, qos_runs", [
    ("online", 0, 0, 0, True),
    ("online", 0, 2, 2, True),     # shaping failed: the device fails
    ("online", 1, 0, 1, False),    # vif-bridge failed: nothing shaped
    ("add", 0, 1, 1, True),
    ("offline", 3, 1, 3, True),    # the wrapped script's status; vif-qos best effort
    ("remove", 0, 1, 0, True),
])
def test_wrapper_runs_the_real_script_then_vif_qos(tmp_path, command, wrapped_rc, qos_rc,
                                                    want_rc, qos_runs):
    out = tmp_path / "out"
    root = tmp_path / "root"
    root.mkdir()
    fake_qos = tmp_path / "vif-qos"
    fake_qos.write_text(f'#!/bin/sh\necho "qos $* wrapped=${{VIF_QOS_WRAPPED:-}} '
                        f'vif=$vif" >> "{out}"\nexit {qos_rc}\n')
    fake_qos.chmod(0o755)
    install(str(root), vif_qos=str(fake_qos))
    scripts = root / "etc/xen/scripts"
    bridge = scripts / "vif-bridge"
    bridge.write_text(f'#!/bin/sh\necho "bridge $* wrapped=$VIF_QOS_WRAPPED vif=$vif" >> "{out}"\n'
                      f'exit {wrapped_rc}\n')
    bridge.chmod(0o755)
    type_if = "tap" if command in ("add", "remove") else "vif"
    env = dict(os.environ, vif="vif3.0", XENBUS_PATH="backend/vif/3/0")
    env.pop("VIF_QOS_WRAPPED", None)
    env.pop("VIF_QOS_WRAPPED_SCRIPT", None)
    rc = subprocess.run([str(scripts / "vif-qos"), command, f"type_if={type_if}"],
                        env=env).returncode
    assert rc == want_rc
    lines = out.read_text().splitlines()
    assert lines[0] == f"bridge {command} type_if={type_if} wrapped=1 vif=vif3.0"
    if qos_runs:
        assert lines[1:] == [f"qos {command} {command} type_if={type_if} wrapped= vif=vif3.0"]
    else:
        assert lines[1:] == []


def test_wrapper_wrapped_script_is_configurable(tmp_path):
    out = tmp_path / "out"
    root = tmp_path / "root"
    root.mkdir()
    install(str(root), vif_qos="/bin/true", wrapped_script="vif-route")
    route = root / "etc/xen/scripts/vif-route"
    route.write_text(f'#!/bin/sh\necho route >> "{out}"\n')
    route.chmod(0o755)
    other = tmp_path / "my-script"
    other.write_text(f'#!/bin/sh\necho mine >> "{out}"\n')
    other.chmod(0o755)
    wrapper = str(root / "etc/xen/scripts/vif-qos")
    env = dict(os.environ)
    env.pop("VIF_QOS_WRAPPED_SCRIPT", None)
    subprocess.run([wrapper, "online"], env=env, check=True)
    subprocess.run([wrapper, "online"], env=dict(env, VIF_QOS_WRAPPED_SCRIPT=str(other)),
                   check=True)
    assert out.read_text().splitlines() == ["route", "mine"]


def dpkg_list(root, package, paths):
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True, exist_ok=True)
    (info / f"{package}.list").write_text("".join(p + "\n" for p in ["/.", "/etc"] + paths))


def test_install_refuses_on_top_of_the_debian_package(tmp_path):
    dpkg_list(tmp_path, "vif-qos", ["/" + HOOK_PATH, "/" + WRAPPER_PATH, "/" + POLICY_PATH,
                                    "/lib/udev/rules.d/85-vif-qos.rules"])
    dpkg_list(tmp_path, "xen-utils-common:amd64", ["/etc/xen/scripts/vif-bridge"])
    before = tree(tmp_path)
    with pytest.raises(EnvironmentProblem) as err:
        install(str(tmp_path), vif_qos=FAKE_BIN)
    message = err.value.one_line()
    assert "Debian package vif-qos already installs" in message
    for path in (HOOK_PATH, WRAPPER_PATH, POLICY_PATH, "lib/udev/rules.d/85-vif-qos.rules"):
        assert "/" + path in message
    assert "apt remove vif-qos" in message
    assert tree(tmp_path) == before  # nothing written


def test_install_refuses_when_only_the_package_udev_rules_are_owned(tmp_path):
    dpkg_list(tmp_path, "vif-qos", ["/lib/udev/rules.d/85-vif-qos.rules"])
    with pytest.raises(EnvironmentProblem, match="85-vif-qos.rules"):
        install(str(tmp_path), vif_qos=FAKE_BIN)


def test_install_ignores_other_packages_lists(tmp_path):
    dpkg_list(tmp_path, "xen-utils-common", ["/etc/xen/scripts/vif-bridge"])
    assert {a for a, _ in install(str(tmp_path), vif_qos=FAKE_BIN)} == {"installed"}


def test_uninstall_never_removes_a_packaged_file(tmp_path):
    install(str(tmp_path), vif_qos=FAKE_BIN)
    dpkg_list(tmp_path, "vif-qos", ["/" + HOOK_PATH])  # the package came afterwards
    report = {os.path.relpath(path, tmp_path): action
              for action, path in uninstall(str(tmp_path))}
    assert report[HOOK_PATH] == "kept (package vif-qos)"
    assert (tmp_path / HOOK_PATH).exists()
    assert report[WRAPPER_PATH] == "removed"


def test_cli_install_on_top_of_the_package_exits_1_with_one_line(tmp_path, capsys):
    dpkg_list(tmp_path, "vif-qos", ["/" + HOOK_PATH])
    assert cli.main(["install", "--root", str(tmp_path), "--vif-qos", FAKE_BIN]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vif-qos install:" in err and HOOK_PATH in err


def test_every_systemd_unit_is_installed_and_uninstalled(tmp_path, monkeypatch):
    # The mechanism is generic: a unit another change adds to systemd/ goes too.
    import shutil
    data = tmp_path / "data"
    shutil.copytree(cmd_install.data_dir(), data, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "tests", "vif_qos", "benchmarks"))
    (data / "systemd" / "vif-qos-extra.timer").write_text(
        "[Timer]\nOnCalendar=*:0/5\n[Install]\nWantedBy=timers.target\n")
    shipped = set(cmd_install.shipped_units(cmd_install.data_dir()))
    monkeypatch.setattr(cmd_install, "data_dir", lambda: str(data))
    root = tmp_path / "root"
    root.mkdir()
    install(str(root), vif_qos=FAKE_BIN)
    units = root / cmd_install.SYSTEMD_DIR
    assert sorted(os.listdir(units)) == sorted(shipped | {"vif-qos-extra.timer"})
    service = (units / "vif-qos-reload.service").read_text()
    assert f"ExecStart={FAKE_BIN} reload" in service and "@VIF_QOS@" not in service
    assert "PartOf=nftables.service" in service and "After=nftables.service" in service
    assert "Type=oneshot" in service
    manifest = (root / MANIFEST_PATH).read_text()
    assert "vif-qos-reload.service" in manifest and "vif-qos-extra.timer" in manifest
    uninstall(str(root))
    assert not units.exists()


def test_shipped_units_are_the_systemd_folder():
    assert "vif-qos-reload.service" in cmd_install.shipped_units(cmd_install.data_dir())
    setup = open(os.path.join(cmd_install.data_dir(), "setup.cfg")).read()
    for unit in cmd_install.shipped_units(cmd_install.data_dir()):
        assert f"systemd/{unit}" in setup  # an installed package has it too
