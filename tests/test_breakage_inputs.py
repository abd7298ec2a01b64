"""Bad and odd input, from every place an admin or xenstore can feed it.

Each test here reproduces a defect found by deliberately feeding vif-qos bad
input: the rule is exit status 2 and one line naming the bad token and its
source, never a traceback, a kernel error or a broken installed script. The
kernel side is a recording stand-in (names are refused before netlink sees them),
except in the netdev name rule's check against the kernel, which makes bridges in
a namespace of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from vif_qos import cli
from vif_qos.config import policy as policymod
from vif_qos.config import xlcfg
from vif_qos.cli.install import HOOK_PATH, WRAPPER_PATH, install
from vif_qos.errors import ConfigError, InputError
from vif_qos.xen.hotplug import hotplug_main, parse_invocation, xenbus_ids
from vif_qos.xen.services import Services
from vif_qos.core.ifname import check_ifname, ifname_problem
from vif_qos.model import VifPlan
from vif_qos.xen.xenstore import Xenstore


# Every test: hotplug logs go to a file of its own (conftest.quiet_logs).
pytestmark = pytest.mark.usefixtures("quiet_logs")


def run_cli(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- netdev names --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a:b", "a b", "a\tb", "a\nb",
                                  "a\x00b", "abcdefghijklmnop", "x" * 40, "é" * 8])
def test_invalid_netdev_names_refused(name):
    assert ifname_problem(name) is not None
    with pytest.raises(InputError) as err:
        check_ifname(name, "--vif")
    assert err.value.source == "--vif" and err.value.exit_status == 2


@pytest.mark.parametrize("name", ["vif3.0", "vif3.0-emu", "abcdefghijklmno", "xenbr0",
                                  "é" * 7, "web-1_e0"])
def test_valid_netdev_names_pass(name):
    assert check_ifname(name, "--vif") == name


PV_ENV = {"vif": "vif3.0", "XENBUS_PATH": "backend/vif/3/0", "XENBUS_TYPE": "vif",
          "XENBUS_BASE_PATH": "backend", "netdev": "",
          "script": "/etc/xen/scripts/vif-bridge"}


class Kernel:
    """A recording stand-in for apply/remove; the policy and resolver are real."""

    def __init__(self):
        self.applied = []
        self.removed = []

    def services(self, xs):
        from vif_qos.config import planning

        def apply_vif(plan: VifPlan, owner=None):
            self.applied.append(plan)

        def remove_vif(vif, host=None, owner=None, only_if_gone=False):
            self.removed.append(vif)
            return True
        return Services(policymod.load_policy, planning.plan_for_facts, apply_vif,
                        remove_vif, Xenstore(env=dict(os.environ, **xs.env())))


def online(xs, kernel, tmp_path, argv=("type_if=vif",), env=PV_ENV, command="online"):
    policy = tmp_path / "vif-qos.conf"
    if not policy.exists():
        policy.write_text("")
    full_env = dict(env, VIF_QOS_CONFIG=str(policy), **xs.env())
    return hotplug_main(command, list(argv), env=full_env, services=kernel.services(xs))


def test_vifname_too_long_in_xenstore_refused_naming_the_key(xs, tmp_path):
    # Before: the 16-byte name went to netlink; the kernel said ERANGE (exit 1,
    # "Numerical result out of range"), naming neither the token nor the key.
    xs.seed_vif(3, 0, name="web1", rate="62500,50000", vifname="abcdefghijklmnop")
    kernel = Kernel()
    assert online(xs, kernel, tmp_path) == 2
    assert kernel.applied == []
    error = xs.read("backend/vif/3/0/hotplug-error")
    assert "xenstore:backend/vif/3/0/vifname" in error and "'abcdefghijklmnop'" in error
    assert xs.read("backend/vif/3/0/hotplug-status") == "error"


def test_tap_name_from_vifname_too_long_refused(xs, tmp_path):
    # vifname 12 bytes is fine for the PV vif, but its tap is vifname-emu: 16 bytes.
    xs.seed_vif(12, 1, name="win", vifname="abcdefghijkl")
    kernel = Kernel()
    env = dict(PV_ENV, INTERFACE="vif12.1-emu", vif="vif12.1")
    assert online(xs, kernel, tmp_path, argv=["type_if=tap"], env=env, command="add") == 2
    assert kernel.applied == []
    assert "vifname" in xs.read("backend/vif/12/1/hotplug-error")


def test_bridge_name_from_xenstore_checked(xs, tmp_path):
    xs.seed_vif(3, 0, name="web1", rate="62500,50000", bridge="bridge with space")
    kernel = Kernel()
    assert online(xs, kernel, tmp_path) == 2
    assert kernel.applied == []
    assert "xenstore:backend/vif/3/0/bridge" in xs.read("backend/vif/3/0/hotplug-error")


def test_hook_dev_word_checked(xs, tmp_path):
    xs.seed_vif(3, 0, name="web1", rate="62500,50000")
    kernel = Kernel()
    assert online(xs, kernel, tmp_path, argv=["type_if=vif", "dev=" + "d" * 16]) == 2
    assert kernel.applied == []


def test_offline_with_bad_name_still_exits_0(xs, tmp_path):
    xs.seed_vif(3, 0, name="web1", vifname="abcdefghijklmnop")
    kernel = Kernel()
    assert online(xs, kernel, tmp_path, command="offline") == 0


@pytest.mark.parametrize("path", ["backend/vif/3/0\n", "backend/vif/\u0663/0",
                                  "backend/vif/3/0\n/x"])
def test_xenbus_path_with_newline_or_non_ascii_digits_refused(path):
    # Before: '$' let a trailing newline through and '\d' took Arabic-Indic digits.
    with pytest.raises(InputError) as err:
        xenbus_ids(path)
    assert err.value.source == "XENBUS_PATH"
    with pytest.raises(InputError):
        parse_invocation("online", [], dict(PV_ENV, XENBUS_PATH=path))


@pytest.mark.parametrize("name", ["vif3.0-emu\n", "vif\u0663.0-emu"])
def test_tap_name_with_newline_or_non_ascii_digits_refused(name):
    with pytest.raises(InputError):
        parse_invocation("add", ["type_if=tap"], dict(PV_ENV, INTERFACE=name))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_odd_hotplug_timeout_does_not_break_offline_or_online(xs, tmp_path, monkeypatch,
                                                             value):
    # Before: float('nan') reached setitimer: ValueError -> exit 1 for offline
    # (which must always exit 0), "internal error" for online.
    xs.seed_vif(3, 0, name="web1", rate="62500,50000")
    kernel = Kernel()
    env = dict(PV_ENV, VIF_QOS_HOTPLUG_TIMEOUT=value)
    assert online(xs, kernel, tmp_path, env=env, command="offline") == 0
    assert kernel.removed == ["vif3.0"]
    assert online(xs, kernel, tmp_path, env=env) == 0
    assert [p.vif for p in kernel.applied] == ["vif3.0"]


# -- plan / cleanup options -------------------------------------------------------------

@pytest.mark.parametrize("argv, token", [
    (["--vif", "abcdefghijklmnop"], "--vif"),
    (["--bridge", "br/0"], "--bridge"),
    (["--devid", "-1"], "--devid"),
])
def test_plan_refuses_bad_names_and_devid(capsys, argv, token):
    status, out, err = run_cli(capsys, "plan", "--qos", "rate=1mbit", *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and token in err


def test_cleanup_refuses_a_name_no_netdev_can_have(capsys, xs):
    # Before: the name went to netlink and the kernel's ERANGE gave exit 1.
    import argparse
    from vif_qos.cli import cleanup
    kernel = Kernel()
    services = kernel.services(xs)
    services.cleanup_orphans = lambda host=None: kernel.removed.append("*") or []
    for bad in ("abcdefghijklmnopqrstu", "a\x00b"):
        parser = argparse.ArgumentParser()
        cleanup.configure(parser, "cleanup")
        with pytest.raises(InputError) as err:
            cleanup.run(parser.parse_args(["--vif", bad]), services=services)
        assert err.value.exit_status == 2 and err.value.source == "--vif"
        assert len(err.value.one_line().splitlines()) == 1
    assert kernel.removed == []


@pytest.mark.parametrize("argv, token", [
    (["plan", "--devid", "x"], "--devid"),
    (["plan", "--bogus"], "--bogus"),
    (["status", "--zzz"], "--zzz"),
    (["check-config", "--config", "a", "b"], "unrecognized arguments: b"),
])
def test_option_errors_are_one_line(capsys, argv, token):
    # Before: argparse printed its usage block and then the error (several lines).
    status, out, err = run_cli(capsys, *argv)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and token in lines[0] and lines[0].startswith(f"vif-qos {argv[0]}:")


# -- policy file -------------------------------------------------------------------------

@pytest.mark.parametrize("uplink", ["eth0 eth1", "abcdefghijklmnopq", "a/b"])
def test_policy_uplink_must_be_a_netdev_name(tmp_path, uplink):
    path = tmp_path / "vif-qos.conf"
    path.write_text(f"[bridges]\n  [[xenbr0]]\n  rate = 1gbit\n  uplink = '{uplink}'\n")
    policy, problems = policymod.check_policy(str(path))
    assert policy is None
    assert [p.source for p in problems] == [f"{path}:4"]
    assert "uplink" in problems[0].message and problems[0].token == uplink


def test_policy_empty_uplink_refused(tmp_path):
    path = tmp_path / "vif-qos.conf"
    path.write_text("[bridges]\nuplink = ''\n")
    policy, problems = policymod.check_policy(str(path))
    assert policy is None and [p.source for p in problems] == [f"{path}:2"]


def test_policy_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "vif-qos.conf"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("blocked on a FIFO"))
    signal.alarm(5)
    try:
        policy, problems = policymod.check_policy(str(fifo))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert policy is None and len(problems) == 1 and "regular file" in problems[0].message


def test_policy_file_too_large_refused(tmp_path):
    path = tmp_path / "vif-qos.conf"
    with open(path, "wb") as fh:
        fh.write(b"# padding\n" * (policymod.MAX_FILE_BYTES // 10 + 1))
    policy, problems = policymod.check_policy(str(path))
    assert policy is None and "larger than" in problems[0].message


def test_policy_file_dev_zero_refused(capsys):
    status, out, err = run_cli(capsys, "check-config", "--config", "/dev/zero")
    assert status == 2 and "/dev/zero" in out and "regular file" in out


# -- xl domain config files ---------------------------------------------------------------

def test_deeply_nested_list_is_a_config_error_not_a_recursion_error():
    # Before: RecursionError -> "internal error", exit 1.
    text = 'name = "d"\nqos = ' + "[" * 5000 + "\n"
    with pytest.raises(ConfigError) as err:
        xlcfg.parse_xl_config(text, "/etc/xen/d.cfg")
    assert err.value.source == "/etc/xen/d.cfg:2"


def test_nesting_within_the_limit_still_parses():
    text = "x = " + "[" * 20 + "]" * 20 + "\n"
    assert isinstance(xlcfg.parse_xl_config(text, "f").settings["x"], xlcfg.XlList)


def test_check_config_reports_deeply_nested_domain_file(tmp_path, capsys):
    xen = tmp_path / "xen"
    xen.mkdir()
    (xen / "d.cfg").write_text('name = "d"\nqos = ' + "[" * 5000 + "\n")
    conf = tmp_path / "vif-qos.conf"
    conf.write_text(f"[host]\ndomain_config_dirs = {xen}\n")
    status, out, err = run_cli(capsys, "check-config", "--config", str(conf))
    assert status == 2 and f"{xen}/d.cfg:2" in out and err == ""


# -- install -------------------------------------------------------------------------------

@pytest.mark.parametrize("program", ['/usr/bin/vif"qos', "/usr/bin/vif-qos $(id)",
                                     "/usr/bin/`id`", "/opt/my tools/vif-qos",
                                     "/usr/bin/vif\\qos", "/usr/bin/vif-qos\n", "bin/vif-qos",
                                     ""])
def test_install_refuses_a_program_path_that_breaks_the_scripts(tmp_path, program):
    # Before: written verbatim into the hook that vif-bridge SOURCES (set -e): a
    # quote made every vif's hotplug fail, $(...) ran as root, a space split the
    # udev RUN command.
    with pytest.raises(InputError) as err:
        install(str(tmp_path), vif_qos=program)
    assert err.value.source == "--vif-qos"
    assert not (tmp_path / HOOK_PATH).exists()


@pytest.mark.parametrize("script", ["vif-bridge$(id)", "vif-`id`", "vif bridge", "a\\b",
                                    "vif-bridge\t"])
def test_install_refuses_a_wrapped_script_that_breaks_the_wrapper(tmp_path, script):
    with pytest.raises(InputError) as err:
        install(str(tmp_path), wrapped_script=script, vif_qos="/usr/bin/vif-qos")
    assert err.value.source == "--wrapped-script"
    assert not (tmp_path / WRAPPER_PATH).exists()


def test_install_with_odd_but_safe_paths_gives_valid_shell(tmp_path):
    install(str(tmp_path), wrapped_script="/usr/lib/xen-4.17/bin/vif-bridge+x",
            vif_qos="/opt/vq_1.0/bin/vif-qos")
    for rel in (HOOK_PATH, WRAPPER_PATH):
        assert subprocess.run(["sh", "-n", str(tmp_path / rel)]).returncode == 0


def test_install_bad_program_via_cli_is_one_line(tmp_path, capsys):
    status, out, err = run_cli(capsys, "install", "--root", str(tmp_path),
                               "--vif-qos", "/usr/bin/vif-qos $(id)")
    assert status == 2 and "--vif-qos" in err and len(err.strip().splitlines()) == 1


def test_policy_file_with_a_utf8_bom_is_read(tmp_path):
    # Before: '\ufeff[host]' was an "Invalid line" (exit 2 at every online): an editor's
    # BOM, which ConfigObj itself strips when it reads a file.
    path = tmp_path / "vif-qos.conf"
    path.write_bytes(b"\xef\xbb\xbf[host]\nmtu = 9000\n")
    policy, problems = policymod.check_policy(str(path))
    assert problems == [] and policy.mtu_bytes == 9000


def test_domain_config_with_a_latin1_comment_is_read_as_xl_reads_it(tmp_path, capsys):
    # xl's lexer is 8-bit (libxlu_cfg_l.l: %option 8bit; '#.*\n'): a comment saved in
    # ISO-8859-1 is fine for xl. Before: "not UTF-8 text", exit 2 -- the guest's vif
    # was refused at online although xl started the domain.
    xen = tmp_path / "xen"
    xen.mkdir()
    (xen / "web.cfg").write_bytes(b'# VM f\xfcr M\xfcller\nname = "web"\n'
                                  b"qos = [ 'rate=2mbit' ]\n")
    conf = tmp_path / "vif-qos.conf"
    conf.write_text(f"[host]\ndomain_config_dirs = {xen}\n")
    config, _others = xlcfg.find_domain_config("web", [str(xen)])
    assert xlcfg.qos_entry(config, 0) == ("rate=2mbit", f"{xen}/web.cfg:3")
    status, out, err = run_cli(capsys, "check-config", "--config", str(conf))
    assert status == 0, out


def test_non_utf8_bytes_inside_a_qos_string_name_the_line(tmp_path):
    path = tmp_path / "web.cfg"
    path.write_bytes(b'name = "web"\nqos = [ \'rate=2\xffmbit\' ]\n')
    config = xlcfg.load_xl_config(str(path))
    text, where = xlcfg.qos_entry(config, 0)
    from vif_qos.core import spec
    with pytest.raises(InputError) as err:
        spec.parse_spec(text, where)
    assert err.value.source == f"{path}:2"
    assert "\n" not in err.value.one_line()
    err.value.one_line().encode("ascii")  # printable anywhere (syslog, xenstore)


def test_tap_name_too_long_refused():
    with pytest.raises(InputError) as err:
        parse_invocation("add", ["type_if=tap"], dict(PV_ENV, INTERFACE="vif123456.78901-emu"))
    assert err.value.source == "INTERFACE"


@pytest.mark.parametrize("manifest", [
    '{"files": [1, 2]}', '{"dirs": 5}', '{"files": {"a\\u0000b": "x"}}',
    '{"files": {"../../outside/victim": null}}', '{"files": {"/abs/victim": null}}',
    '{"dirs": ["../outside"]}', '{"files": {"etc/x": 5}}'])
def test_corrupt_install_manifest_is_ignored_not_followed(tmp_path, capsys, manifest):
    # Before: a list or a number where the manifest has a dict raised TypeError
    # ("internal error", exit 1) in install and uninstall, and a path with '..'
    # made uninstall remove a marked file outside --root.
    from vif_qos.cli.install import MANIFEST_PATH
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("# vif-qos\n")
    install(str(root), vif_qos="/usr/bin/vif-qos")
    (root / MANIFEST_PATH).write_text(manifest)
    status, out, err = run_cli(capsys, "uninstall", "--root", str(root))
    assert status == 0 and err == ""
    assert (outside / "victim").exists() and outside.is_dir()
    assert not (root / HOOK_PATH).exists()          # still found by its marker
    (root / MANIFEST_PATH).parent.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_PATH).write_text(manifest)
    status, out, err = run_cli(capsys, "install", "--root", str(root),
                               "--vif-qos", "/usr/bin/vif-qos")
    assert status == 0 and err == "" and (root / HOOK_PATH).exists()


def test_huge_bad_token_still_reaches_hotplug_error(xs, tmp_path):
    # Before: the one-line message quoted the whole 6000-byte token; xenstore refuses
    # a request above 4096 bytes (E2BIG), so neither hotplug-error nor
    # hotplug-status=error was written (one transaction) and xl showed no reason.
    xs.seed_vif(3, 0, name="web1")
    policy = tmp_path / "vif-qos.conf"
    policy.write_text("[defaults]\nrate = 1" + "x" * 6000 + "\n")
    kernel = Kernel()
    assert online(xs, kernel, tmp_path) == 2
    assert xs.read("backend/vif/3/0/hotplug-status") == "error"
    error = xs.read("backend/vif/3/0/hotplug-error")
    assert error.startswith(f"vif-qos: {policy}:2: rate: ") and len(error) <= 2048


@pytest.mark.parametrize("line", ["mark_mask = 0x0fff_0000", "classid_min = 1_000",
                                  "classid_max = \u0661\u0660\u0660\u0660", "mtu = \u0661\u0665\u0660\u0660",
                                  "mtu = 1_500", "qdisc_major = 0x\uff11"])
def test_policy_integers_are_plain_ascii_digits(tmp_path, line):
    # Before: Python's int() took '_' separators and any Unicode digit, so these
    # passed check-config and meant what a reader could only guess.
    path = tmp_path / "vif-qos.conf"
    path.write_text(f"[host]\n{line}\n", encoding="utf-8")
    policy, problems = policymod.check_policy(str(path))
    assert policy is None and [p.source for p in problems] == [f"{path}:2"]


def test_policy_integers_still_take_decimal_and_hex(tmp_path):
    path = tmp_path / "vif-qos.conf"
    path.write_text("[host]\nmark_mask = 0X00FF0000\nclassid_min = 300\nmtu = 9000\n")
    policy, problems = policymod.check_policy(str(path))
    assert problems == []
    assert (policy.host.mark_mask, policy.host.classid_min, policy.mtu_bytes) == (
        0xFF0000, 300, 9000)


def test_pool_named_none_is_refused(tmp_path):
    # 'pool = none' means "no pool", so a pool called none could never be used.
    path = tmp_path / "vif-qos.conf"
    path.write_text("[pools]\n  [[None]]\n  rate = 10mbit\n")
    policy, problems = policymod.check_policy(str(path))
    assert policy is None and [p.source for p in problems] == [f"{path}:2"]
    assert problems[0].token == "None"


def test_empty_policy_file_name_is_refused(capsys, tmp_path, monkeypatch):
    # Before: '' fell back to /etc/xen/vif-qos.conf (or the built-in policy) silently.
    for argv in (["check-config", "--config", ""], ["plan", "--config", "", "--qos", "rate=1mbit"]):
        status, out, err = run_cli(capsys, *argv)
        assert status == 2 and "empty policy file name" in out + err


@pytest.mark.parametrize("devid", ["1_0", "\u0661", " 1", "+1"])
def test_plan_devid_is_plain_digits(capsys, devid):
    status, out, err = run_cli(capsys, "plan", "--qos", "rate=1mbit", "--devid", devid)
    assert status == 2 and "--devid" in err and len(err.strip().splitlines()) == 1


def test_on_failure_warn_with_bad_input_removes_a_stale_entry_of_the_same_name(xs, tmp_path):
    # A guest that had vifname web1 went without offline or udev cleanup; a new guest
    # gets web1 and a typo in its qos entry. Before: "the vif stays unshaped" was
    # logged, but nothing removed the old guest's leaf and map element, so the new
    # guest's traffic was held to the old guest's limits (C06).
    xs.seed_vif(3, 0, name="web1", vifname="web1")
    xen = tmp_path / "xen"
    xen.mkdir()
    (xen / "web1.cfg").write_text("name = 'web1'\nqos = [ 'rate=10mbitt' ]\n")
    (tmp_path / "vif-qos.conf").write_text(
        f"[host]\non_failure = warn\ndomain_config_dirs = {xen}\n")
    kernel = Kernel()
    assert online(xs, kernel, tmp_path) == 0
    assert kernel.applied == [] and kernel.removed == ["web1"]
    assert xs.read("backend/vif/3/0/hotplug-status") == ""


@pytest.mark.parametrize("entry", ["mac:00:16:3e:*", "mac:00-16-3e-00-00-01", "mac:00:16:3e:0:0:1",
                                   "uuid:5c0b*", "uuid:not-a-uuid"])
def test_mac_and_uuid_entries_must_be_exact_values(tmp_path, entry):
    # mac: and uuid: entries match exactly (vif-qos.conf.example); a glob or a typo
    # there silently matched nothing and check-config said OK.
    path = tmp_path / "vif-qos.conf"
    path.write_text(f"[domains]\n  [[{entry}]]\n  rate = 1mbit\n")
    policy, problems = policymod.check_policy(str(path))
    assert policy is None and [p.source for p in problems] == [f"{path}:2"]


def test_exact_mac_and_uuid_entries_match(tmp_path):
    from vif_qos.model import VifFacts
    path = tmp_path / "vif-qos.conf"
    path.write_text("[domains]\n  [[mac:00:16:3E:12:34:56]]\n  rate = 1mbit\n"
                    "  [[uuid:5C0B5F64-5717-4562-B3FC-2C963F66AFA6]]\n  rate = 2mbit\n")
    policy, problems = policymod.check_policy(str(path))
    assert problems == []
    facts = VifFacts(vif="vif3.0", devid=0, mac="00:16:3e:12:34:56",
                     domain_uuid="5c0b5f64-5717-4562-b3fc-2c963f66afa6")
    assert len(policy.matching_entries(facts)) == 2


@pytest.mark.parametrize("bridge", ["xen br0", "abcdefghijklmnopq", "br/0"])
def test_bridge_section_must_be_a_netdev_name(tmp_path, bridge):
    # A [[...]] under [bridges] no bridge can be called silently applied to nothing.
    path = tmp_path / "vif-qos.conf"
    path.write_text(f"[bridges]\n  [['{bridge}']]\n  uplink = peth0\n")
    policy, problems = policymod.check_policy(str(path))
    assert policy is None and [p.source for p in problems] == [f"{path}:2"]
    assert problems[0].token == bridge


@pytest.mark.parametrize("dirs", ["xen/auto", "/etc/xen, auto", "''"])
def test_domain_config_dirs_must_be_absolute(tmp_path, dirs):
    # A relative directory is looked up from the caller's working directory: one
    # thing for check-config in the admin's shell, another for the hotplug run.
    path = tmp_path / "vif-qos.conf"
    path.write_text(f"[host]\ndomain_config_dirs = {dirs}\n")
    policy, problems = policymod.check_policy(str(path))
    assert policy is None and [p.source for p in problems] == [f"{path}:2"]


@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "-1", "abc"])
def test_odd_xenstore_timeout_falls_back_to_the_default(value):
    # Before: inf or 1e300 reached subprocess's timeout: OverflowError on every
    # xenstore call, so every online failed with "internal error".
    from vif_qos.xen.services import DEFAULT_XENSTORE_TIMEOUT_S, default_services
    services = default_services({"VIF_QOS_XENSTORE_TIMEOUT": value})
    assert services.xenstore.timeout_s == DEFAULT_XENSTORE_TIMEOUT_S


@pytest.mark.parametrize("text, line", [
    ("[bridges]\nrate = 8bit\n", 2),
    ("[bridges]\n  [[xenbr0]]\n  default_rate = 1kbit\n", 3),
    ("[pools]\n  [[p]]\n  rate = 10mbit\n  member_rate = 2kbit\n", 4),
    ("[pools]\n  [[p]]\n  rate = 16bit\n", 3),
])
def test_class_rates_too_slow_for_one_frame_are_refused(tmp_path, text, line):
    # The rule vif rates already follow (resolve.check_rate_floor): one full frame
    # must pass within the 4.29 s a bucket can hold. Before: [bridges] rate = 8bit
    # passed check-config and plan gave 1-byte/s HTB classes with 1514-byte buckets
    # (1514 s of traffic), and a vif's rate was "corrected" down to it.
    path = tmp_path / "vif-qos.conf"
    path.write_text(text)
    policy, problems = policymod.check_policy(str(path))
    assert policy is None and [p.source for p in problems] == [f"{path}:{line}"]
    assert "too slow" in problems[0].message


# -- the netdev name rule against the real kernel ------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_NAME_CHARS = st.sampled_from(list("abcXYZ019.-_:/ \t@#") + ["\u00e9", "\u00e0", "\u00a0",
                                                              "\u20ac", "\U0001f600"])


def test_netdev_name_rule_is_the_kernels(namespaces):
    """ifname_problem() says yes exactly when the kernel creates a bridge of that
    name (dev_valid_name), inside a namespace made for the test."""
    from vif_qos.sim.net import in_netns
    from vif_qos.kernel import tc as tcadapter
    ns = namespaces.make("ifname")
    with in_netns(ns):
        ipr = tcadapter.open_ipr()
        try:
            @settings(max_examples=150, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(st.one_of(st.text(_NAME_CHARS, min_size=1, max_size=18),
                             st.sampled_from([".", "..", "a" * 15, "a" * 16, "\u00e9" * 7,
                                              "\u00e9" * 8])))
            def check(name):
                try:
                    ipr.link("add", ifname=name, kind="bridge")
                    created = True
                except Exception:
                    created = False
                if created:
                    ipr.link("del", ifname=name)
                assert created == (ifname_problem(name) is None), (name, created)
            check()
        finally:
            ipr.close()


# -- structured junk through policy + resolver --------------------------------------------

_SECTIONS = ["[host]", "[bridges]", "[defaults]", "[pools]", "[domains]", "  [[xenbr0]]",
             "  [[p]]", "  [[web*]]", "  [[vif:vif3.*]]", "    [[[x]]]", "[bogus]"]
_KEYS = ["mark_mask", "classid_min", "classid_max", "on_failure", "mtu", "max_burst_time",
         "uplink", "rate", "default_rate", "default_ceil", "ceil", "member_rate",
         "member_ceil", "rate_in", "rate_out", "burst", "latency", "limit", "peak",
         "minburst", "cburst", "quantum", "pool", "bogus"]
_VALUES = ["0", "1", "-1", "0x10", "0x0f000000", "0x3", "0xffffffff", "9000", "1mbit",
           "100gbit", "1tbit", "2tbit", "8bit", "abc", "", "none", "p", "zz", "warn", "1s",
           "5s", "50ms", "1514", "1gb", "4gb", "10Mb/s@50ms", "1B/s", "'a, b'", "a, b",
           "auto", "peth0", "1.5", "eth 0"]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.sampled_from(_SECTIONS),
                          st.builds("{} = {}".format, st.sampled_from(_KEYS),
                                    st.sampled_from(_VALUES))), max_size=12),
       st.one_of(st.none(), st.sampled_from(["62500,50000", "1,1", "4294967295,0",
                                             "125000000000,1000000"])))
def test_any_policy_gives_config_errors_or_a_sane_plan(lines, xen_rate):
    from vif_qos.core import resolve
    from vif_qos.model import VifFacts
    policy, problems = policymod.check_policy_text("\n".join(lines) + "\n", "fuzz.conf")
    assert all(isinstance(p, ConfigError) and "\n" not in p.one_line() for p in problems)
    if policy is None:
        assert problems
        return
    facts = VifFacts(vif="vif3.0", devid=0, domain_name="web1", xen_rate=xen_rate,
                     xen_rate_source="xenstore:backend/vif/3/0/rate")
    try:
        plan = resolve.plan_vif(facts, policy)
    except InputError:
        return
    if plan.inbound is not None:
        i = plan.inbound
        assert 0 < i.rate_bits_per_s and i.rate_bits_per_s % 8 == 0
        assert 0 < i.burst_bytes <= 2 ** 32 - 1 and 0 < i.limit_bytes <= 2 ** 32 - 1
        assert i.peak_bits_per_s is None or i.peak_bits_per_s > i.rate_bits_per_s
    if plan.outbound is not None:
        o = plan.outbound
        assert 0 < o.rate_bits_per_s <= o.ceil_bits_per_s
        assert 0 < o.burst_bytes <= 2 ** 32 - 1 and 0 < o.cburst_bytes <= 2 ** 32 - 1
        for cls in (plan.uplink.root, plan.uplink.default) + plan.uplink.pools:
            assert 0 < cls.rate_bits_per_s <= cls.ceil_bits_per_s
            assert cls.burst_bytes > 0 and cls.quantum_bytes > 0
