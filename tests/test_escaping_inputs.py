"""Inputs that escaped the one-line error (issue 8), each kind on every path it can
take: numbers longer than Python converts (4300 digits), text that is not UTF-8
reaching syslog (the real syslog path, a socket at /dev/log in a private mount
namespace), a closed stdout, a bad vif beside a valid XENBUS_PATH, errors that
quoted a converted value instead of what the admin wrote, check-config's vif
lines and skipped files, udev's ``--vif=%k``."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from test_breakage_inputs import PV_ENV, Kernel, online, run_cli

from vif_qos.sim.dom0 import vif_qos_program

pytestmark = pytest.mark.usefixtures("quiet_logs")

HUGE = "1" * 5000
#: What the one line shows of a 5000-digit token: its ends and its length.
SHOWN = "(5004 characters)"


# -- numbers of more than 4300 digits ------------------------------------------------

@pytest.mark.parametrize("argv,source", [
    (["plan", "--qos", f"rate_in={HUGE}kbit"], "--qos: rate_in"),
    (["plan", "--qos", f"rate_in=1.{HUGE}kbit"], "--qos: rate_in"),
    (["plan", "--xen-rate", f"{HUGE}B/s"], "--xen-rate"),
    (["plan", "--xen-rate", f"0{HUGE}B/s"], "--xen-rate"),
    (["plan", "--xen-rate", f"1MB/s@{HUGE}ms"], "--xen-rate"),
])
def test_huge_numbers_on_the_command_line(capsys, argv, source, tmp_path, monkeypatch):
    monkeypatch.setenv("VIF_QOS_CONFIG", str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("")
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and out == "", err
    assert err.count("\n") == 1 and source in err and "characters)" in err, err
    assert len(err) < 400 and "internal error" not in err


@pytest.mark.parametrize("line", [f"mtu = {HUGE}", f"mark_mask = {HUGE}",
                                  f"classid_min = 0x{HUGE}", f"max_burst_time = {HUGE}s"])
def test_huge_numbers_in_the_policy_are_listed_by_check_config(capsys, tmp_path, line):
    path = tmp_path / "vif-qos.conf"
    path.write_text(f"[host]\n{line}\n[defaults]\nrate_in = {HUGE}kbit\nrate_out = fast\n")
    status, out, err = run_cli(capsys, "check-config", "--config", str(path))
    assert status == 2 and err == ""
    lines = out.splitlines()
    assert [ln.split(": ", 1)[0] for ln in lines] == [f"{path}:2", f"{path}:4", f"{path}:5"]
    assert all(len(ln) < 400 for ln in lines), lines


def test_huge_numbers_in_a_domain_config_file(capsys, tmp_path):
    auto = tmp_path / "auto"
    auto.mkdir()
    (auto / "d1.cfg").write_text(
        f'name = "d1"\nvif = ["bridge=xenbr0,rate={HUGE}B/s"]\n'
        f'qos = ["rate_in={HUGE}kbit"]\n')
    path = tmp_path / "vif-qos.conf"
    path.write_text(f"[host]\ndomain_config_dirs = {auto}\n")
    status, out, _err = run_cli(capsys, "check-config", "--config", str(path))
    assert status == 2
    assert [ln.split(": ", 1)[0] for ln in out.splitlines()] == [
        f"{auto}/d1.cfg:2 (vif rate=)", f"{auto}/d1.cfg:3"]
    status, _out, err = run_cli(capsys, "plan", "--config", str(path), "--domain", "d1")
    assert status == 2 and err.count("\n") == 1 and "characters)" in err


def test_huge_number_in_the_xenstore_rate_reaches_hotplug_error(xs, tmp_path):
    # xenstored carries at most 4096 bytes a request: the longest rate it can hold.
    xs.seed_vif(3, 0, name="web1", rate="1" * 4000 + ",50000")
    kernel = Kernel()
    assert online(xs, kernel, tmp_path) == 2
    assert kernel.applied == []
    error = xs.read("backend/vif/3/0/hotplug-error")
    assert "xenstore:backend/vif/3/0/rate" in error and "(4006 characters)" in error
    assert len(error) < 400


# -- what the admin wrote is what the error quotes ----------------------------------

def test_errors_quote_the_value_as_written(capsys, tmp_path, monkeypatch):
    path = tmp_path / "vif-qos.conf"
    path.write_text("[host]\nmax_burst_time = 10s\n")
    status, out, _err = run_cli(capsys, "check-config", "--config", str(path))
    assert status == 2 and out.strip().endswith(": '10s'"), out
    path.write_text("")
    monkeypatch.setenv("VIF_QOS_CONFIG", str(path))
    status, _out, err = run_cli(capsys, "plan", "--xen-rate", "1B/s")
    assert status == 2 and err.strip().endswith(": '1B/s'"), err


# -- check-config: vif lines and files it skips ------------------------------------

def test_check_config_checks_vif_lines_and_names_skipped_files(capsys, tmp_path):
    auto = tmp_path / "auto"
    auto.mkdir()
    (auto / "a.cfg").write_text('name = "a"\nvif = ["rate=fast", "vifname=a/b",\n'
                                '       "bridge=xenbr0,rate=10Mb/s"]\n')
    (auto / "big.cfg").write_text('name = "big"\n' + "#" * (1 << 20))
    path = tmp_path / "vif-qos.conf"
    path.write_text(f"[host]\ndomain_config_dirs = {auto}\n")
    status, out, _err = run_cli(capsys, "check-config", "--config", str(path))
    assert status == 2
    lines = out.splitlines()
    assert lines[0].startswith(f"{auto}/a.cfg:2 (vif rate=): ") and "'fast'" in lines[0]
    assert lines[1].startswith(f"{auto}/a.cfg:2 (vif vifname=): ") and "'a/b'" in lines[1]
    assert lines[2] == (f"warning: {auto}/big.cfg: skipped, larger than 1 MiB (a guest "
                        "named in it gets no qos entry from it)")
    assert len(lines) == 3


# -- a bad vif beside a valid XENBUS_PATH --------------------------------------------

@pytest.mark.parametrize("words", [["vif=a/b"], ["dev=a b"], ["vif=" + "v" * 16]])
def test_bad_vif_with_a_valid_xenbus_path_writes_hotplug_error(xs, tmp_path, words):
    xs.seed_vif(3, 0, name="web1")
    kernel = Kernel()
    assert online(xs, kernel, tmp_path, argv=["type_if=vif", *words]) == 2
    assert xs.read("backend/vif/3/0/hotplug-status") == "error"
    assert words[0].split("=", 1)[1] in xs.read("backend/vif/3/0/hotplug-error")
    assert kernel.applied == []


# -- closed stdout -----------------------------------------------------------------

def test_closed_stdout_is_no_traceback():
    program = vif_qos_program()
    for args in (["--version"], ["plan", "--qos", "rate_in=1mbit"], ["nosuch"]):
        proc = subprocess.run(["sh", "-c", 'exec "$0" "$@" >&-', program, *args],
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, VIF_QOS_CONFIG=os.devnull))
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 2), (args, proc.returncode, proc.stderr)


# -- text that is not UTF-8, through the real syslog path -----------------------------

FAKE_DEV = ('mount --bind /dev/null "$VQ_DEV/null" && mount --bind "$VQ_DEV" /dev && '
            'exec "$@"')


def run_with_syslog(argv, env, devdir):
    """Run ``argv`` with syslog on, /dev/log being a datagram socket we read: the
    private mount namespace (unshare -m) binds ``devdir`` over /dev for it only."""
    (devdir / "null").write_text("")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(devdir / "log"))
    sock.settimeout(0.5)
    try:
        proc = subprocess.run(["unshare", "-m", "sh", "-c", FAKE_DEV, "sh", *argv],
                              env=dict(env, VQ_DEV=str(devdir), VIF_QOS_SYSLOG="1"),
                              capture_output=True, timeout=60)
        received = []
        try:
            while True:
                received.append(sock.recv(65536))
        except socket.timeout:
            pass
        return proc, received
    finally:
        sock.close()


def test_latin1_file_name_reaches_syslog_and_hotplug_error(xs, tmp_path):
    """A Latin-1 domain config file name next to a bad qos entry: with syslog on,
    syslog.syslog raised UnicodeEncodeError, the run crashed and hotplug-error
    never got the reason."""
    if os.geteuid() != 0:
        pytest.fail("needs root (a private mount namespace for /dev/log)")
    auto = tmp_path / "auto"
    auto.mkdir()
    with open(os.path.join(os.fsencode(auto), b"web\xe9.cfg"), "wb") as fh:
        fh.write(b'name = "web1"\nqos = ["rate_in=fast"]\n')
    policy = tmp_path / "vif-qos.conf"
    policy.write_text(f"[host]\ndomain_config_dirs = {auto}\n")
    xs.seed_vif(3, 0, name="web1")
    devdir = tmp_path / "dev"
    devdir.mkdir()
    env = dict(os.environ, **PV_ENV, **xs.env(), VIF_QOS_CONFIG=str(policy),
               VIF_QOS_HOTPLUG_LOG=str(tmp_path / "hotplug.log"))
    proc, received = run_with_syslog([vif_qos_program(), "online", "type_if=vif"], env,
                                     devdir)
    assert proc.returncode == 2, proc.stderr
    assert b"Traceback" not in proc.stderr and b"internal error" not in proc.stderr
    error = xs.read("backend/vif/3/0/hotplug-error")
    assert "rate_in" in error and "'fast'" in error and "web" in error
    assert xs.read("backend/vif/3/0/hotplug-status") == "error"
    lines = [m.decode("utf-8") for m in received]
    assert any("vif-qos[" in ln and "web\\xe9.cfg:2" in ln and "'fast'" in ln
               for ln in lines), lines


def test_non_utf8_vifname_reaches_syslog_and_hotplug_error(xs, namespaces, tmp_path):
    """The hook's dev= (vif-bridge's final name) with a byte that is not UTF-8:
    every line after the facts names it, and syslog.syslog raised on the first;
    the real reason never reached hotplug-error. vif-qos refuses the name (nftables
    takes UTF-8 only)."""
    if os.geteuid() != 0:
        pytest.fail("needs root (a private mount namespace for /dev/log)")
    ns = namespaces.make("sys")
    xs.seed_vif(3, 0, name="web1")
    devdir = tmp_path / "dev"
    devdir.mkdir()
    policy = tmp_path / "vif-qos.conf"
    policy.write_text("[defaults]\nrate_in = 1mbit\n")
    env = dict(os.environ, **PV_ENV, **xs.env(), VIF_QOS_CONFIG=str(policy),
               VIF_QOS_HOTPLUG_LOG=str(tmp_path / "hotplug.log"))
    argv = [b"ip", b"netns", b"exec", ns.encode(), os.fsencode(vif_qos_program()),
            b"online", b"type_if=vif", b"dev=w\xe9b0"]
    proc, received = run_with_syslog(argv, env, devdir)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr, proc.stderr
    error = xs.read("backend/vif/3/0/hotplug-error")
    assert "not UTF-8" in error and "'w\\udce9b0'" in error, error
    lines = [m.decode("utf-8") for m in received]
    assert any("online w\\xe9b0: " in ln and "not UTF-8" in ln for ln in lines), lines
