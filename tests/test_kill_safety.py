"""A hotplug run killed at any instant (SIGKILL: libxl's 40 s timeout, an admin's
Ctrl-C) never cuts the host off, and the next thing Xen runs leaves nothing
unrecorded (issue 8).

Through the simulated dom0: Debian's vif-bridge with the installed hook, the
xenstored double. ``VIF_QOS_TEST_KILL_AT=STEP`` makes vif-qos SIGKILL itself at a
step boundary (:data:`vif_qos.kernel.apply.KILL_STEPS`); the random-moment kills
run vif-qos as the script= wrapper would and ``kill -9`` it after a random delay.
Traffic is a UDP round trip from dom0 (the bridge's address) and from the guest
to the "internet" namespace behind the uplink: out through the uplink's HTB, back
through the vif's TBF.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from vif_qos.sim.dom0 import Dom0
from vif_qos.kernel.apply import KILL_ENV, KILL_STEPS
from vif_qos.sim.net import INTERNET_IPV4

from helpers import DOM0_POLICY_HEAD

pytestmark = pytest.mark.kernel

POLICY = DOM0_POLICY_HEAD + """\
[pools]
    [[overage]]
    rate = 10mbit
[domains]
    [[guest*]]
    rate_in = 20mbit
    rate_out = 20mbit
    pool = overage
"""

APPLY_STEPS = [s for s in KILL_STEPS if not s.startswith("remove-")]
REMOVE_STEPS = [s for s in KILL_STEPS if s.startswith("remove-")]
LEAF_MIN = 0x100

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""

CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
ok = 0
for i in range(int(sys.argv[2])):
    s.sendto(b"vq%d" % i, (sys.argv[1], 7))
    try:
        while s.recv(2048) != b"vq%d" % i:
            pass
        ok += 1
    except socket.timeout:
        pass
print(ok)
"""


def sh(ns, *args, check=True):
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True,
                          text=True, check=check, timeout=60)


@pytest.fixture
def dom0(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("kill-safety tests need root (namespaces, mounts)")
    with Dom0(str(tmp_path / "tree"), policy=POLICY) as d:
        echo = subprocess.Popen(["ip", "netns", "exec", d.host.internet, sys.executable,
                                 "-c", ECHO], stdout=subprocess.PIPE, text=True)
        try:
            assert echo.stdout.readline().strip() == "ready"
            yield d
        finally:
            echo.kill()
            echo.wait()


def round_trips(ns: str, count: int = 3) -> int:
    """UDP datagrams from namespace ``ns`` echoed back by the internet namespace."""
    return int(sh(ns, sys.executable, "-c", CLIENT, INTERNET_IPV4, str(count)).stdout)


def assert_traffic_flows(dom0, guests=()):
    assert round_trips(dom0.host.dom0) == 3, "dom0 cut off from the uplink"
    for guest in guests:
        if guest.vif in dom0.host.link_names():
            assert round_trips(guest.ns) == 3, f"guest {guest.vif} cut off"


def unrecorded(dom0):
    """What vif-qos made that no entry of its table records, read with tc and nft:
    leaves on peth0, TBFs 7a51: on netdevs, an HTB root without its classes."""
    ns = dom0.host.dom0
    text = sh(ns, "nft", "list", "ruleset").stdout
    comments = re.findall(r'comment "(vif-qos vif=[^"]*)"', text)
    leaves_recorded = set(re.findall(r"classid=([0-9a-f]+:[0-9a-f]+)", " ".join(comments)))
    tbf_recorded = {m.group(1) for c in comments
                    if (m := re.match(r"vif-qos vif=(\S+) .*inbound=1", c))}
    found = []
    classes = re.findall(r"^class htb ([0-9a-f]+:[0-9a-f]+) ",
                         sh(ns, "tc", "class", "show", "dev", "peth0").stdout, re.M)
    for handle in classes:
        major, minor = handle.split(":")
        if major == "7a51" and int(minor, 16) >= LEAF_MIN and handle not in leaves_recorded:
            found.append(f"leaf {handle}")
    for q in json.loads(sh(ns, "tc", "-j", "qdisc", "show").stdout or "[]"):
        if not q.get("root") or q.get("handle") != "7a51:":
            continue
        if q["kind"] == "tbf" and q["dev"] not in tbf_recorded:
            found.append(f"tbf on {q['dev']}")
        if q["kind"] == "htb" and not {"7a51:1", "7a51:2"} <= set(classes):
            found.append(f"incomplete htb on {q['dev']}")
    return found


def kill_env(step):
    return {KILL_ENV: step}


def killed_online(dom0, domid, step):
    guest = dom0.host.add_guest(domid=domid, attach=False)
    dom0.xs.seed_vif(domid, 0, name=f"guest{domid}")
    if step == "stale-removed":  # an entry of the vif's name to replace first
        assert dom0.hotplug("online", domid).returncode == 0
    result = dom0.hotplug("online", domid, **kill_env(step))
    assert result.returncode != 0, (step, result.stdout, result.stderr)
    return guest


def netdev_gone_then_udev_then_offline(dom0, guest):
    """Real Xen's order after a failed or ended guest: netback removes the netdev,
    udev runs cleanup --vif, then libxl runs offline (the netdev already gone)."""
    dom0.host.remove_guest(guest)
    cmd = dom0.udev_cleanup_command(guest.vif)
    assert dom0.run(cmd, dom0.base_env()).returncode == 0
    assert dom0.hotplug("offline", guest.domid).returncode == 0


@pytest.mark.parametrize("step", APPLY_STEPS)
def test_online_killed_at_each_step_then_online_again_then_offline(dom0, step):
    guest = killed_online(dom0, 3, step)
    dom0.host.attach(guest.vif)  # vif-bridge had bridged it before the hook ran
    assert_traffic_flows(dom0, [guest])
    result = dom0.hotplug("online", 3)  # retried: the netdev is still there
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert unrecorded(dom0) == []
    assert_traffic_flows(dom0, [guest])
    assert guest.vif in sh(dom0.host.dom0, "nft", "list", "ruleset").stdout
    assert dom0.hotplug("offline", 3).returncode == 0  # vif-bridge unbridges it
    assert unrecorded(dom0) == []
    assert_traffic_flows(dom0)


@pytest.mark.parametrize("step", ["htb-qdisc", "htb-default-class", "entry", "leaf",
                                  "tbf"])
def test_online_killed_then_netdev_gone_udev_offline(dom0, step):
    witness = dom0.host.add_guest(domid=2, attach=False)
    dom0.xs.seed_vif(2, 0, name="guest2")
    if step.startswith("htb-"):
        # The tree must be built by the killed run: the witness comes later.
        guest = killed_online(dom0, 3, step)
        assert_traffic_flows(dom0)
        assert dom0.hotplug("online", 2).returncode == 0
    else:
        assert dom0.hotplug("online", 2).returncode == 0
        guest = killed_online(dom0, 3, step)
    assert_traffic_flows(dom0, [witness])
    netdev_gone_then_udev_then_offline(dom0, guest)
    assert unrecorded(dom0) == []
    text = sh(dom0.host.dom0, "nft", "list", "ruleset").stdout
    assert guest.vif not in text and witness.vif in text
    assert_traffic_flows(dom0, [witness])


@pytest.mark.parametrize("step", REMOVE_STEPS)
def test_offline_killed_at_each_step_then_udev_then_offline_again(dom0, step):
    witness = dom0.host.add_guest(domid=2, attach=False)
    dom0.xs.seed_vif(2, 0, name="guest2")
    guest = dom0.host.add_guest(domid=3, attach=False)
    dom0.xs.seed_vif(3, 0, name="guest3")
    for domid in (2, 3):
        assert dom0.hotplug("online", domid).returncode == 0
    dom0.hotplug("offline", 3, **kill_env(step))  # offline's status is never checked
    assert_traffic_flows(dom0, [witness])  # vif-bridge unbridged the guest first
    netdev_gone_then_udev_then_offline(dom0, guest)
    assert unrecorded(dom0) == []
    assert guest.vif not in sh(dom0.host.dom0, "nft", "list", "ruleset").stdout
    assert_traffic_flows(dom0, [witness])


def test_online_killed_at_random_moments(dom0):
    """kill -9 of vif-qos online (as the script= wrapper runs it, after vif-bridge
    bridged the vif) at random moments; then alternately online again or the
    netdev gone, udev, offline. Traffic always flows, nothing stays unrecorded."""
    rng = random.Random(8)
    witness = dom0.host.add_guest(domid=2)
    dom0.xs.seed_vif(2, 0, name="guest2")
    for trial in range(8):
        domid = 10 + trial
        guest = dom0.host.add_guest(domid=domid)
        dom0.xs.seed_vif(domid, 0, name=f"guest{domid}")
        env = dom0.script_env(domid, 0)
        proc = dom0.popen([dom0.program, "online", "type_if=vif"], env)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert_traffic_flows(dom0, [witness, guest])
        if trial % 2 == 0:
            assert dom0.hotplug("online", domid).returncode == 0
            assert_traffic_flows(dom0, [witness, guest])
            assert dom0.hotplug("offline", domid).returncode == 0
        else:
            netdev_gone_then_udev_then_offline(dom0, guest)
        assert unrecorded(dom0) == [], trial
        if trial == 3:  # also with the witness shaped (tree and entries in place)
            assert dom0.hotplug("online", 2).returncode == 0
    assert_traffic_flows(dom0, [witness])
