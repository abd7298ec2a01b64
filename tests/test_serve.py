"""``vif-qos serve`` (vif_qos/xen/serve.py, its protocol vif_qos/xen/protocol.py) and
the hook's client: Debian's vif-bridge with the hook, in a simulated dom0, asking a
running service (or falling back to the in-process run).

The kernel is read back with ``tc``/``nft``/``ip`` inside the dom0 namespace;
xenstore through the double. The protocol's pure parts are tested directly.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest

from vif_qos.sim.dom0 import WRAPPER, Dom0
from vif_qos.kernel import netlink as nl
from vif_qos.xen import protocol, serve

from helpers import UPLINK_1GBIT

POLICY = UPLINK_1GBIT + """\
[defaults]
rate_in = 10mbit
rate_out = 5mbit
"""

LEAF_MIN = 0x100
NOBODY_UID = 65534


# -- the protocol (pure) ---------------------------------------------------------------


def request(*argv, **env):
    fields = [protocol.PROTOCOL, str(len(argv)).encode()] + [a.encode() for a in argv]
    fields += [f"{k}={v}".encode() for k, v in env.items()]
    return b"\0".join(fields)


def test_a_request_decodes_to_the_hotplug_argv_and_environment():
    req = protocol.decode_request(request("online", "type_if=vif", "dev=vif3.0",
                                       vif="vif3.0", XENBUS_PATH="backend/vif/3/0"))
    assert req.command == "online" and req.argv == ("type_if=vif", "dev=vif3.0")
    assert req.env == {"vif": "vif3.0", "XENBUS_PATH": "backend/vif/3/0"}


@pytest.mark.parametrize("data, word", [
    (b"GET / HTTP/1.0\r\n\r\n", "not a vif-qos/1 request"),
    (b"", "not a vif-qos/1 request"),
    (b"vif-qos/1\0x\0online", "bad argv count"),
    (b"vif-qos/1\0" + b"9" * 20 + b"\0online", "bad argv count"),
    (b"vif-qos/1\x003\0online", "bad argv count"),
    (request("online", PATH="/tmp/evil"), "not an allowed KEY=VALUE"),
    (request("online", LD_PRELOAD="/tmp/x.so"), "not an allowed KEY=VALUE"),
    (request("online") + b"\0novalue", "not an allowed KEY=VALUE"),
    (request("online", vif="a") + b"\0vif=b", "given twice"),
    (request("cleanup", vif="vif3.0"), "not a hotplug command"),
    (request("online", vif="x" * protocol.MAX_REQUEST_BYTES), "larger than"),
])
def test_a_bad_request_is_one_line_naming_the_problem(data, word):
    with pytest.raises(protocol.RequestError) as info:
        protocol.decode_request(data)
    line = info.value.one_line()
    assert word in line and "\n" not in line and len(line) < 400, line


def test_run_env_keeps_the_service_env_and_declines_another_policy_or_xenstored():
    service_env = {"PATH": "/usr/bin", "XENSTORED_PATH": "/s", "vif": "stale"}
    req = protocol.decode_request(request("offline", vif="vif3.0", XENSTORED_PATH="/s"))
    assert protocol.run_env(req, service_env) == {"PATH": "/usr/bin", "XENSTORED_PATH": "/s",
                                               "vif": "vif3.0"}
    other = protocol.decode_request(request("online", vif="vif3.0", VIF_QOS_CONFIG="/x.conf"))
    with pytest.raises(protocol.Declined, match="VIF_QOS_CONFIG"):
        protocol.run_env(other, service_env)
    with pytest.raises(protocol.Declined, match="XENSTORED_PATH"):
        protocol.run_env(protocol.decode_request(request("online", vif="v")), service_env)


def nlmsg(msg_type, body):
    return struct.pack("=IHHII", 16 + len(body), msg_type, 0, 0, 0) + body + \
        b"\0" * (-len(body) % 4)


def nft_deltable(family, name):
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), nl.NFTA_TABLE_NAME) + raw + b"\0" * (-len(raw) % 4)
    return nlmsg(nl.NFNL_SUBSYS_NFTABLES << 8 | nl.NFT_MSG_DELTABLE,
                 struct.pack("=BBH", family, 0, 0) + attr)


def test_drift_is_suspected_only_for_our_root_qdiscs_and_our_table():
    ours = 0x7A51
    root_del = nlmsg(nl.RTM_DELQDISC, struct.pack("=BxxxiIII", 0, 5, ours << 16,
                                                     nl.TC_H_ROOT, 0))
    other_del = nlmsg(nl.RTM_DELQDISC, struct.pack("=BxxxiIII", 0, 5, 0x10000,
                                                      nl.TC_H_ROOT, 0))
    new_q = nlmsg(36, struct.pack("=BxxxiIII", 0, 5, ours << 16, nl.TC_H_ROOT, 0))
    route = nl.NETLINK_ROUTE
    assert serve.drift_suspected(other_del + root_del, route, ours, "vif_qos")
    assert not serve.drift_suspected(other_del + new_q, route, ours, "vif_qos")
    nf = nl.NETLINK_NETFILTER
    assert serve.drift_suspected(nft_deltable(7, "filter") + nft_deltable(7, "vif_qos"),
                                 nf, ours, "vif_qos")
    assert not serve.drift_suspected(nft_deltable(2, "vif_qos"), nf, ours, "vif_qos")
    assert not serve.drift_suspected(nft_deltable(7, "vif_qos2"), nf, ours, "vif_qos")
    assert serve.drift_suspected(b"\xff" * 20, route, ours, "vif_qos")  # not understood


# -- the simulated dom0 with the service --------------------------------------------------

def sh(ns, *args, check=True):
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True,
                          text=True, check=check, timeout=30)


def leaves(dom0):
    """{classid: parent} of the HTB leaves on peth0."""
    out = sh(dom0.host.dom0, "tc", "class", "show", "dev", "peth0", check=False).stdout
    return {f"{m.group(1)}:{m.group(2)}": m.group(3) for m in re.finditer(
        r"class htb ([0-9a-f]+):([0-9a-f]+) parent (\S+)", out)
        if int(m.group(2), 16) >= LEAF_MIN}


def entries(dom0):
    """{vif: classid} recorded in our nftables table (the rule comments)."""
    out = sh(dom0.host.dom0, "nft", "-j", "list", "table", "bridge", "vif_qos",
             check=False)
    if out.returncode != 0:
        return {}
    found = {}
    for item in json.loads(out.stdout)["nftables"]:
        comment = item.get("rule", {}).get("comment", "")
        fields = dict(word.split("=", 1) for word in comment.split() if "=" in word)
        if "vif" in fields:
            found[fields["vif"]] = fields.get("classid")
    return found


def tbf_vifs(dom0):
    out = sh(dom0.host.dom0, "tc", "-j", "qdisc", "show", check=False).stdout
    return {q["dev"] for q in json.loads(out or "[]") if q["kind"] == "tbf" and q.get("root")}


def assert_consistent(dom0):
    """Nothing half applied: every leaf and TBF belongs to a recorded vif."""
    recorded = entries(dom0)
    assert set(leaves(dom0)) == {c for c in recorded.values() if c}, (leaves(dom0), recorded)
    assert tbf_vifs(dom0) <= set(recorded), (tbf_vifs(dom0), recorded)


def run_ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


@pytest.fixture
def dom0(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("service tests need root (namespaces, mounts)")
    with Dom0(str(tmp_path / "tree"), policy=POLICY, prefix="vqs-") as d:
        d.serve_log = str(tmp_path / "serve.log")
        procs = []

        def start(**env):
            proc = d.start_service(d.serve_log, env=env)
            procs.append(proc)
            return proc

        d.start = start
        try:
            yield d
        finally:
            for proc in procs:
                d.stop_service(proc, signal.SIGKILL)


def guest(dom0, domid):
    dom0.host.add_guest(domid=domid, attach=False)
    dom0.xs.seed_vif(domid, 0, name=f"g{domid}")


def served(dom0, what):
    with open(dom0.serve_log, errors="replace") as fh:
        return fh.read().count(f"served {what}")


@pytest.mark.kernel
def test_online_and_offline_through_the_service(dom0):
    dom0.start()
    guest(dom0, 3)
    run_ok(dom0.hotplug("online", 3))
    assert dom0.xs.read("backend/vif/3/0/hotplug-status") == "connected"
    assert set(entries(dom0)) == {"vif3.0"} and len(leaves(dom0)) == 1
    assert tbf_vifs(dom0) == {"vif3.0"}
    assert served(dom0, "online vif3.0: exit status 0") == 1
    # The run's own lines reach the hotplug log through the passed descriptor.
    assert "online vif3.0: shaped: inbound 10000000 bit/s" in dom0.hotplug_log()
    run_ok(dom0.hotplug("offline", 3))
    assert served(dom0, "offline vif3.0") == 1
    assert entries(dom0) == {} and leaves(dom0) == {} and tbf_vifs(dom0) == set()


@pytest.mark.kernel
def test_the_script_wrapper_asks_the_service_too(dom0):
    dom0.start()
    guest(dom0, 16)
    run_ok(dom0.hotplug("online", 16, script=WRAPPER))
    assert served(dom0, "online vif16.0: exit status 0") == 1
    assert set(entries(dom0)) == {"vif16.0"} and tbf_vifs(dom0) == {"vif16.0"}
    run_ok(dom0.hotplug("offline", 16, script=WRAPPER))
    assert served(dom0, "offline vif16.0") == 1 and entries(dom0) == {}


@pytest.mark.kernel
def test_service_down_falls_back_and_the_guest_is_shaped(dom0):
    proc = dom0.start()
    os.killpg(proc.pid, signal.SIGKILL)  # dies; its socket file stays behind
    proc.wait()
    assert os.path.exists(dom0.service_socket())
    guest(dom0, 4)
    run_ok(dom0.hotplug("online", 4))
    assert dom0.xs.read("backend/vif/4/0/hotplug-status") == "connected"
    assert set(entries(dom0)) == {"vif4.0"} and len(leaves(dom0)) == 1
    assert "online vif4.0: shaped" in dom0.hotplug_log()
    assert served(dom0, "online") == 0


@pytest.mark.kernel
def test_service_killed_while_it_holds_an_online_the_run_ends_shaped(dom0):
    proc = dom0.start()
    guest(dom0, 5)
    wait_idle(proc)
    lock_path = os.path.join(dom0.tree, "run", "lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the service's apply waits for the host lock
        online = dom0.popen(["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
                            dom0.script_env(5, 0))
        deadline = time.monotonic() + 20
        while children(proc.pid) == [proc.pid]:
            assert time.monotonic() < deadline, "the request never reached the service"
            time.sleep(0.02)
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # the service and the request it handles
        proc.wait()
    finally:
        os.unlink(lock_path)
        os.close(fd)
    out, err = online.communicate(timeout=120)
    assert online.returncode == 0, (out, err)
    assert dom0.xs.read("backend/vif/5/0/hotplug-status") == "connected"
    assert set(entries(dom0)) == {"vif5.0"} and len(leaves(dom0)) == 1
    assert "went away in the middle of the request" in dom0.hotplug_log()
    assert_consistent(dom0)


def children(pid):
    """Every live process in ``pid``'s session (the service and what it forked), from
    /proc/PID/stat (field 6 is the session id)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


@pytest.mark.kernel
@pytest.mark.parametrize("delay_s", [0.0, 0.03, 0.08, 0.15])
def test_service_killed_at_any_moment_of_an_online_leaves_nothing_half_applied(dom0, delay_s):
    guest(dom0, 6)
    guest(dom0, 7)
    service = dom0.start()
    run_ok(dom0.hotplug("online", 6))  # another guest, shaped before
    wait_idle(service)
    online = dom0.popen(["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
                        dom0.script_env(7, 0))
    deadline = time.monotonic() + 30
    while len(children(service.pid)) < 2 and online.poll() is None:
        assert time.monotonic() < deadline, "the request never reached the service"
        time.sleep(0.005)
    time.sleep(delay_s)
    os.killpg(service.pid, signal.SIGKILL)  # the service and the request it handles
    service.wait()
    out, err = online.communicate(timeout=120)
    status = dom0.xs.read("backend/vif/7/0/hotplug-status")
    if online.returncode == 0:
        assert status == "connected"
        assert set(entries(dom0)) == {"vif6.0", "vif7.0"} and len(leaves(dom0)) == 2
    else:
        assert status == "error" and dom0.xs.read("backend/vif/7/0/hotplug-error")
        assert set(entries(dom0)) == {"vif6.0"}
    assert_consistent(dom0)


def wait_idle(service):
    """Until the service has no forked child (its start-up drift check is done)."""
    deadline = time.monotonic() + 30
    while children(service.pid) != [service.pid]:
        assert time.monotonic() < deadline, children(service.pid)
        time.sleep(0.02)


@pytest.mark.kernel
def test_forty_onlines_at_once_through_the_service_get_distinct_classes(dom0):
    dom0.start()
    domids = list(range(100, 140))
    for domid in domids:
        guest(dom0, domid)
    procs = [dom0.popen(["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
                        dom0.script_env(domid, 0)) for domid in domids]
    results = [(p.wait(timeout=300), p.communicate()) for p in procs]
    assert [code for code, _ in results] == [0] * 40, results
    recorded = entries(dom0)
    assert set(recorded) == {f"vif{d}.0" for d in domids}
    assert len(set(recorded.values())) == 40 and set(recorded.values()) == set(leaves(dom0))
    assert tbf_vifs(dom0) == set(recorded)
    assert served(dom0, "online") == 40
    for domid in domids:
        assert dom0.xs.read(f"backend/vif/{domid}/0/hotplug-status") == "connected"


def raw_exchange(path, data, as_uid=None):
    """Send ``data`` on the service's socket (as ``as_uid`` via setpriv) and return
    the reply fields, or the connection error."""
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)\n"
            "s.settimeout(60)\n"
            "try:\n"
            f"    s.connect({path!r})\n"
            "except OSError as e:\n"
            "    print('connect', e.errno); sys.exit()\n"
            "s.send(sys.stdin.buffer.read())\n"
            "print(repr(s.recv(4096)))\n")
    cmd = [sys.executable, "-I", "-c", code]
    if as_uid is not None:
        cmd = ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups"] + cmd
    out = subprocess.run(cmd, capture_output=True, input=data, timeout=120)
    return (out.stdout.decode(errors="replace").strip()
            or f"no reply: {out.stderr.decode(errors='replace')[-500:]}")


@pytest.fixture
def open_run_dir():
    """A run directory non-root users can reach (pytest's tmp_path is root's 0700)."""
    path = tempfile.mkdtemp(prefix="vqs-run-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.kernel
def test_a_non_root_client_is_refused(dom0, open_run_dir):
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed")
    dom0.start(VIF_QOS_RUN_DIR=open_run_dir)
    path = os.path.join(open_run_dir, "vif-qos.sock")
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path).st_uid == 0
    good = request("online", "type_if=vif", vif="vif8.0", XENBUS_PATH="backend/vif/8/0",
                   **dom0.xs.env())
    # The socket's mode keeps others out ...
    assert raw_exchange(path, good, NOBODY_UID) == "connect 13"  # EACCES
    # ... and where it would not, the peer's uid does.
    os.chmod(path, 0o666)
    reply = raw_exchange(path, good, NOBODY_UID)
    assert "refused" in reply and "peer uid 65534 is not root" in reply, reply
    with open(dom0.serve_log) as fh:
        assert "refused a request from uid 65534" in fh.read()
    # The installed client as nobody reports the refusal before it falls back.
    client = os.path.join(open_run_dir, "client")
    shutil.copy(os.path.join(dom0.tree, "etc/xen/scripts/vif-qos-client"), client)
    os.chmod(client, 0o755)
    env = dict(dom0.script_env(8, 0), VIF_QOS_RUN_DIR=open_run_dir, VIF_QOS_HOTPLUG_LOG="")
    result = subprocess.run(["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_UID}",
                             "--clear-groups", client, "online", "type_if=vif"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert "vif-qos serve refused: peer uid 65534 is not root" in result.stderr, result.stderr
    assert served(dom0, "online") == 0


@pytest.mark.kernel
def test_garbage_on_the_socket_is_refused_and_the_service_keeps_serving(dom0):
    proc = dom0.start()
    path = dom0.service_socket()
    for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(300),
                    b"vif-qos/1\x002\0online", request("online", vif="x" * 70000)):
        reply = raw_exchange(path, garbage)
        assert "refused" in reply, (garbage[:40], reply)
    # connect and close without a word
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    s.close()
    assert proc.poll() is None
    guest(dom0, 9)
    run_ok(dom0.hotplug("online", 9))
    assert served(dom0, "online vif9.0: exit status 0") == 1
    with open(dom0.serve_log) as fh:
        refusals = [line for line in fh if "refused a request" in line]
    assert len(refusals) == 4, refusals


def wait_restored(dom0, vifs, bound_s):
    """Seconds until every vif in ``vifs`` has its entry and its leaf again."""
    start = time.monotonic()
    while time.monotonic() - start < bound_s + 5:
        recorded = entries(dom0)
        if set(recorded) >= set(vifs) and {recorded[v] for v in vifs} <= set(leaves(dom0)):
            return time.monotonic() - start
        time.sleep(0.01)
    return float("inf")


@pytest.mark.kernel
def test_nft_flush_ruleset_is_repaired_within_a_second(dom0):
    dom0.start()
    for domid in (10, 11, 12):
        guest(dom0, domid)
        run_ok(dom0.hotplug("online", domid))
    vifs = ["vif10.0", "vif11.0", "vif12.0"]
    time.sleep(0.3)  # the checks the onlines may have caused are done
    # tc's own view of every qdisc change while the service repairs: the guests'
    # TBFs are replaced in place, never deleted (no moment without their limit).
    monitor = subprocess.Popen(["ip", "netns", "exec", dom0.host.dom0, "tc", "monitor"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.3)
        sh(dom0.host.dom0, "nft", "flush", "ruleset")
        took_s = wait_restored(dom0, vifs, 1.0)
        print(f"nft flush ruleset: shaping restored after {took_s * 1000:.0f} ms")
        assert took_s <= 1.0
        time.sleep(0.3)
    finally:
        monitor.kill()
        changes = monitor.communicate()[0]
    assert not [line for line in changes.splitlines()
                if line.startswith("deleted qdisc tbf")], changes
    assert set(entries(dom0)) == set(vifs) and tbf_vifs(dom0) == set(vifs)
    assert_consistent(dom0)
    # The uplink's tree deleted by hand: the same.
    sh(dom0.host.dom0, "tc", "qdisc", "del", "dev", "peth0", "root")
    took_s = wait_restored(dom0, vifs, 1.0)
    print(f"tc qdisc del dev peth0 root: shaping restored after {took_s * 1000:.0f} ms")
    assert took_s <= 1.0
    time.sleep(0.3)
    assert_consistent(dom0)


def tbf_rate_bits(dom0, dev):
    out = sh(dom0.host.dom0, "tc", "-j", "qdisc", "show", "dev", dev, check=False).stdout
    return next((q["options"]["rate"] * 8 for q in json.loads(out or "[]")
                 if q["kind"] == "tbf" and q.get("root")), None)


@pytest.mark.kernel
def test_drift_repair_is_what_reload_does(dom0):
    """The repair after ``nft flush ruleset`` runs ``vif-qos reload``'s code: an
    operator's override stays in force, and a vif whose online has not finished
    (its netdev there, hotplug-status not yet connected) is left to that online."""
    service = dom0.start()
    guest(dom0, 22)
    run_ok(dom0.hotplug("online", 22))
    run_ok(dom0.vif_qos("set", "g22", "rate_in=3mbit"))
    assert tbf_rate_bits(dom0, "vif22.0") == 3_000_000
    guest(dom0, 23)  # its online is still to come
    wait_idle(service)
    sh(dom0.host.dom0, "nft", "flush", "ruleset")
    assert wait_restored(dom0, ["vif22.0"], 1.0) <= 1.0
    wait_idle(service)
    assert set(entries(dom0)) == {"vif22.0"} and tbf_vifs(dom0) == {"vif22.0"}
    assert tbf_rate_bits(dom0, "vif22.0") == 3_000_000
    assert_consistent(dom0)
    with open(dom0.serve_log) as fh:
        text = fh.read()
    assert "drift repair: vif23.0 left alone: its online has not finished" in text, text
    # Its online, when it comes, shapes it as usual.
    run_ok(dom0.hotplug("online", 23))
    assert set(entries(dom0)) == {"vif22.0", "vif23.0"}


@pytest.mark.kernel
def test_the_policy_is_reread_when_changed_and_a_bad_edit_keeps_the_last_good(dom0):
    dom0.start()
    guest(dom0, 13)
    run_ok(dom0.hotplug("online", 13))
    dom0.set_policy(POLICY.replace("rate_in = 10mbit", "rate_in = 3mbit"))
    guest(dom0, 14)
    run_ok(dom0.hotplug("online", 14))
    assert "online vif14.0: shaped: inbound 3000000 bit/s" in dom0.hotplug_log()
    dom0.set_policy(POLICY.replace("rate_in = 10mbit", "rate_in = 3 parsecs"))
    guest(dom0, 15)
    run_ok(dom0.hotplug("online", 15))
    assert "online vif15.0: shaped: inbound 3000000 bit/s" in dom0.hotplug_log()
    with open(dom0.serve_log) as fh:
        text = fh.read()
    assert "not reloaded, the last good one stays in use" in text and "parsecs" in text


@pytest.mark.kernel
def test_the_service_takes_the_socket_systemd_passes(namespaces, tmp_path):
    """Socket activation as systemd does it: the listening socket is fd 3, with
    LISTEN_PID (the service's own pid) and LISTEN_FDS=1; the service binds nothing."""
    ns = namespaces.make("activate")
    path = str(tmp_path / "activation.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(8)
    run_dir = tmp_path / "run"
    env = dict(os.environ, VIF_QOS_RUN_DIR=str(run_dir), VIF_QOS_SYSLOG="0")
    fd = listener.fileno()
    as_systemd = ("import os, sys\n"
                  "os.dup2(int(sys.argv[1]), 3)\n"
                  "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
                  "os.execv(sys.argv[2], sys.argv[2:])\n")
    service = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", as_systemd, str(fd),
         sys.executable, "-m", "vif_qos", "serve"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, pass_fds=(fd,), start_new_session=True)
    try:
        reply = raw_exchange(path, b"not a request")
        assert "refused" in reply and "not a vif-qos/1 request" in reply, reply
        assert not (run_dir / "vif-qos.sock").exists()
    finally:
        os.killpg(service.pid, signal.SIGKILL)
        out = service.communicate(timeout=30)[0]
        listener.close()
    assert "serving at" in out.decode(errors="replace"), out
