"""The xenstored double, driven by Debian's real xenstore tools (xenstore-utils).

Every test talks to the double through the unmodified binaries and
``XENSTORED_PATH`` (plus a raw wire-protocol client for the message types the
tools do not send), and checks the answers against xenstored's documented
behaviour (tools/xenstored/core.c, xs_wire.h).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from vif_qos.sim import xsdouble
from vif_qos.sim.xsdouble import XsErr




def tool(xs, *args, check=True, timeout=10):
    env = dict(os.environ, **xs.env())
    env.pop("XENSTORED_RUNDIR", None)
    return subprocess.run(list(args), env=env, capture_output=True, text=True,
                          check=check, timeout=timeout)


class Raw:
    """A minimal wire-protocol client (xs_wire.h) for the double."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.req = 0

    def recv(self):
        head = b""
        while len(head) < 16:
            head += self.sock.recv(16 - len(head))
        msg_type, req_id, tx_id, length = struct.unpack("<IIII", head)
        body = b""
        while len(body) < length:
            body += self.sock.recv(length - len(body))
        return msg_type, req_id, tx_id, body

    def call(self, msg_type, body, tx_id=0):
        self.req += 1
        self.sock.sendall(struct.pack("<IIII", msg_type, self.req, tx_id, len(body)) + body)
        reply = self.recv()
        assert reply[1] == self.req
        return reply[0], reply[3]

    def close(self):
        self.sock.close()


def test_real_tools_read_write_list_rm_through_xenstored_path(xs):
    tool(xs, "xenstore-write", "/tool/vq/a", "1", "/tool/vq/b/c", "two words")
    assert tool(xs, "xenstore-read", "/tool/vq/a", "/tool/vq/b/c").stdout == "1\ntwo words\n"
    assert tool(xs, "xenstore-list", "/tool/vq").stdout.split() == ["a", "b"]
    # Implicit parents exist with empty values, as xenstored makes them.
    assert tool(xs, "xenstore-read", "/tool/vq/b").stdout == "\n"
    assert tool(xs, "xenstore-exists", "/tool/vq/b/c").returncode == 0
    tool(xs, "xenstore-rm", "/tool/vq/b")
    assert tool(xs, "xenstore-exists", "/tool/vq/b/c", check=False).returncode == 1
    assert xs.read("/tool/vq/b") is None
    out = tool(xs, "xenstore-ls", "/tool").stdout
    assert out == 'vq = ""\n a = "1"\n'


def test_relative_paths_resolve_under_dom0(xs):
    tool(xs, "xenstore-write", "backend/vif/7/0/x", "y")
    assert xs.read("/local/domain/0/backend/vif/7/0/x") == "y"
    assert tool(xs, "xenstore-read", "/local/domain/0/backend/vif/7/0/x").stdout == "y\n"


def test_missing_key_and_rm_rules(xs):
    res = tool(xs, "xenstore-read", "/nope/key", check=False)
    assert res.returncode == 1
    assert "couldn't read path /nope/key" in res.stderr
    # rm of a missing node is fine while its parent exists, ENOENT otherwise.
    assert tool(xs, "xenstore-rm", "/tool/absent", check=False).returncode == 0
    res = tool(xs, "xenstore-rm", "/tool/absent/deeper", check=False)
    assert res.returncode == 1 and "could not remove path" in res.stderr


def test_tools_report_daemon_down(tmp_path):
    res = subprocess.run(["xenstore-read", "x"], capture_output=True, text=True,
                         env=dict(os.environ, XENSTORED_PATH=str(tmp_path / "none")))
    assert res.returncode == 1 and "xs_open" in res.stderr


def test_seed_vif_writes_exactly_libxl_keys(xs):
    back = xs.seed_vif(3, 1, name="web1", rate="250000,50000", vifname="web1e1",
                       ip="192.0.2.10 192.0.2.11", mtu=9000, bridge="xenbr1",
                       mac="00:16:3e:aa:bb:cc")
    assert back == "/local/domain/0/backend/vif/3/1"
    keys = tool(xs, "xenstore-list", "backend/vif/3/1").stdout.split()
    assert sorted(keys) == sorted([
        "frontend-id", "frontend", "online", "state", "script", "mac", "vifname", "ip",
        "rate", "mtu", "bridge", "handle", "type", "hotplug-status"])
    values = dict(zip(keys, tool(xs, "xenstore-read", *[f"{back}/{k}" for k in keys])
                      .stdout.split("\n")))
    assert values["frontend-id"] == "3" and values["handle"] == "1"
    assert values["frontend"] == "/local/domain/3/device/vif/1"
    assert values["hotplug-status"] == "" and values["type"] == "vif"
    assert values["rate"] == "250000,50000" and values["ip"] == "192.0.2.10 192.0.2.11"
    assert xs.read("/local/domain/3/name") == "web1"
    vm = xs.read("/local/domain/3/vm")
    assert vm.startswith("/vm/") and xs.read(f"{vm}/name") == "web1"
    front = sorted(tool(xs, "xenstore-list", "/local/domain/3/device/vif/1").stdout.split())
    assert front == ["backend", "backend-id", "handle", "mac", "mtu", "state", "trusted"]
    # Optional keys absent when not given; mtu 1500 is not written (libxl's default).
    xs.seed_vif(4, 0, mtu=1500)
    keys = tool(xs, "xenstore-list", "backend/vif/4/0").stdout.split()
    assert not {"vifname", "ip", "rate", "mtu", "gatewaydev"} & set(keys)


def test_netback_probe_and_close_vif_leave_the_nodes_as_real_xen_showed(xs):
    # What a hook saw under Xen 4.17 (Debian 12 dom0): at xl create's online, netback's
    # feature keys and backend state 2, the frontend at state 1; at offline, the backend
    # still readable with online=0, state=6 and no hotplug-status, the frontend gone.
    back = xs.seed_vif(5, 0, name="web5", rate="62500,50000")
    xs.netback_probe(5, 0)
    keys = set(tool(xs, "xenstore-list", "backend/vif/5/0").stdout.split())
    assert {"feature-sg", "feature-rx-copy", "feature-ctrl-ring",
            "multi-queue-max-queues"} <= keys
    assert xs.read(f"{back}/state") == "2"
    assert xs.read("/local/domain/5/device/vif/0/state") == "1"
    assert xs.read(f"{back}/hotplug-status") == ""
    xs.close_vif(5, 0)
    assert (xs.read(f"{back}/online"), xs.read(f"{back}/state")) == ("0", "6")
    assert xs.read(f"{back}/hotplug-status") is None
    assert not xs.exists("/local/domain/5/device/vif/0")
    assert tool(xs, "xenstore-read", f"{back}/rate").stdout.strip() == "62500,50000"
    xs.close_vif(6, 0)  # no such vif: nothing to do
    # After xl network-detach the frontend is still there, at state 6.
    back = xs.seed_vif(7, 1, name="web7")
    xs.close_vif(7, 1, detach=True)
    assert xs.read("/local/domain/7/device/vif/1/state") == "6"
    assert xs.read(f"{back}/hotplug-status") is None


def test_permissions_backend_dom0_frontend_guest(xs):
    xs.seed_vif(5, 0, name="g5")
    perms = tool(xs, "xenstore-ls", "-p", "backend/vif/5").stdout
    assert "(n0,r5)" in perms
    # The guest owns its frontend directory and may write anything there (C09) ...
    xs.guest_write(5, "/local/domain/5/device/vif/0/rate", "1,1")
    assert xs.read("/local/domain/5/device/vif/0/rate") == "1,1"
    # ... but not the backend directory, nor its domain name.
    with pytest.raises(XsErr) as err:
        xs.guest_write(5, "/local/domain/0/backend/vif/5/0/rate", "1,1")
    assert err.value.name == "EACCES"
    with pytest.raises(XsErr):
        xs.guest_write(5, "/local/domain/5/name", "evil")
    tool(xs, "xenstore-chmod", "/local/domain/5/data", "n5", "r0")
    assert xs.store.get_perms("/local/domain/5/data") == ["n5", "r0"]


def test_watch_fires_initial_event_and_on_changes(xs):
    env = dict(os.environ, **xs.env())
    proc = subprocess.Popen(["xenstore-watch", "-n", "3", "backend/vif/9"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        xs.write("/local/domain/0/backend/vif/9/0/state", "4")
        xs.write("/local/domain/0/backend/other", "x")  # not below the watch
        xs.write("/local/domain/0/backend/vif/9/0/hotplug-status", "connected")
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert out.split("\n")[:3] == ["backend/vif/9", "backend/vif/9/0/state",
                                   "backend/vif/9/0/hotplug-status"]


def test_large_directory_via_directory_part(xs):
    names = [f"child-with-a-long-name-{i:04d}" for i in range(300)]  # > 4096 bytes
    for name in names:
        xs.write(f"/tool/big/{name}", "v")
    listed = tool(xs, "xenstore-list", "/tool/big").stdout.split()
    assert listed == names


def test_raw_protocol_messages(xs):
    raw = Raw(xs.socket_path)
    try:
        assert raw.call(xsdouble.XS_READ, b"/nope\0") == (xsdouble.XS_ERROR, b"ENOENT\0")
        assert raw.call(xsdouble.XS_READ, b"bad//path\0") == (xsdouble.XS_ERROR, b"EINVAL\0")
        assert raw.call(xsdouble.XS_GET_DOMAIN_PATH, b"7\0") == (
            xsdouble.XS_GET_DOMAIN_PATH, b"/local/domain/7\0")
        t, tid = raw.call(xsdouble.XS_TRANSACTION_START, b"\0")
        assert t == xsdouble.XS_TRANSACTION_START and tid.rstrip(b"\0").isdigit()
        txid = int(tid.rstrip(b"\0"))
        assert raw.call(xsdouble.XS_WRITE, b"/tool/t\0val", tx_id=txid) == (
            xsdouble.XS_WRITE, b"OK\0")
        assert raw.call(xsdouble.XS_TRANSACTION_END, b"T\0", tx_id=txid) == (
            xsdouble.XS_TRANSACTION_END, b"OK\0")
        assert raw.call(xsdouble.XS_READ, b"/tool/t\0") == (xsdouble.XS_READ, b"val")
        assert raw.call(xsdouble.XS_MKDIR, b"/tool/d\0") == (xsdouble.XS_MKDIR, b"OK\0")
        assert raw.call(xsdouble.XS_DIRECTORY, b"/tool\0") == (xsdouble.XS_DIRECTORY, b"t\0d\0")
        t, body = raw.call(xsdouble.XS_DIRECTORY_PART, b"/tool\0" + b"0\0")
        gen, rest = body.split(b"\0", 1)
        assert gen.isdigit() and rest == b"t\0d\0\0"
        assert raw.call(xsdouble.XS_SET_PERMS, b"/tool/d\0n0\0r3\0")[1] == b"OK\0"
        assert raw.call(xsdouble.XS_GET_PERMS, b"/tool/d\0") == (
            xsdouble.XS_GET_PERMS, b"n0\0r3\0")
        # WATCH: the ack, then the initial event.
        assert raw.call(xsdouble.XS_WATCH, b"/tool/d\0tok\0") == (xsdouble.XS_WATCH, b"OK\0")
        event = raw.recv()
        assert event[0] == xsdouble.XS_WATCH_EVENT and event[3] == b"/tool/d\0tok\0"
        assert raw.call(xsdouble.XS_UNWATCH, b"/tool/d\0tok\0") == (
            xsdouble.XS_UNWATCH, b"OK\0")
        assert raw.call(xsdouble.XS_RM, b"/tool/d\0") == (xsdouble.XS_RM, b"OK\0")
        assert raw.call(xsdouble.XS_CONTROL, b"print\0hello\0")[0] == xsdouble.XS_CONTROL
        assert raw.call(xsdouble.XS_INTRODUCE, b"1\0")[0] == xsdouble.XS_ERROR
    finally:
        raw.close()


def test_runs_as_a_process(tmp_path):
    sock = tmp_path / "xs.sock"
    proc = subprocess.Popen([sys.executable, "-m", "vif_qos.sim.xsdouble", "--socket", str(sock),
                             "--seed-vif", "3.0:name=web1,rate=250000,50000"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "listening" in proc.stdout.readline()
        env = dict(os.environ, XENSTORED_PATH=str(sock))
        out = subprocess.run(["xenstore-read", "backend/vif/3/0/rate", "/local/domain/3/name"],
                             env=env, capture_output=True, text=True, check=True).stdout
        assert out == "250000,50000\nweb1\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0 and not sock.exists()


def test_removing_a_parent_fires_watches_below_it(xs):
    raw = Raw(xs.socket_path)
    try:
        xs.write("/tool/w/a/b", "1")
        assert raw.call(xsdouble.XS_WATCH, b"/tool/w/a/b\0t\0")[1] == b"OK\0"
        assert raw.recv()[3] == b"/tool/w/a/b\0t\0"  # the initial event
        xs.rm("/tool/w")
        assert raw.recv()[3] == b"/tool/w/a/b\0t\0"
        # A malformed request gets an error, and the connection stays usable.
        assert raw.call(xsdouble.XS_SET_PERMS, b"/tool\0xyz\0") == (xsdouble.XS_ERROR, b"EINVAL\0")
        assert raw.call(xsdouble.XS_READ, b"/local/domain/0/name\0")[1] == b"Domain-0"
    finally:
        raw.close()
