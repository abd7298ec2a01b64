"""Breakage found by trying to break the kernel and lifecycle side: each test is a
scenario that once went wrong, against the real kernel inside namespaces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from helpers import UPLINK, cls, uplink_plan, vif_plan
from vif_qos.sim.net import in_netns, run
from helpers import htb_classes, root_qdisc

from vif_qos.kernel import apply as A
from vif_qos.kernel.status import status

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("run_dir")]

HERE = os.path.dirname(os.path.abspath(__file__))


def test_auto_uplink_ignores_the_renamed_vif_itself_and_hvm_taps(host):
    """vif-bridge puts the vif on the bridge before the hook runs; with a backend
    ``vifname`` its name is not vif*: "auto" once counted the vif being shaped as
    a second uplink candidate and refused every renamed guest."""
    d = host
    web = d.add_guest(1, vifname="web1e0").vif
    auto = uplink_plan(device=None)
    with in_netns(d.dom0):
        assert A.apply_vif(vif_plan(web, uplink=auto)).uplink == UPLINK
        A.remove_vif(web)
    # An HVM guest with vifname w3: its PV vif w3 and its tap w3-emu, nothing
    # shaped on the bridge yet (no hint from an earlier entry).
    run("ip", "link", "set", web, "nomaster", ns=d.dom0)
    pv = d.add_guest(3, vifname="w3").vif
    run("ip", "link", "add", "w3-emu", "type", "veth", "peer", "name", "g3e", ns=d.dom0)
    run("ip", "link", "set", "w3-emu", "master", "xenbr0", ns=d.dom0)
    with in_netns(d.dom0):
        assert A.apply_vif(vif_plan(pv, uplink=auto)).uplink == UPLINK
        assert A.apply_vif(vif_plan("w3-emu", uplink=auto)).uplink == UPLINK
    assert sorted(c for c in htb_classes(d.dom0, UPLINK)
                  if int(c.split(":")[1], 16) >= 0x100) == ["7a51:100", "7a51:101"]


KILL_AFTER = r'''
import importlib, os, signal, sys
sys.path.insert(0, sys.argv[1])
from helpers import vif_plan
from vif_qos.kernel import apply as A
module_name, name = sys.argv[2].split(".")
module = importlib.import_module("vif_qos.kernel." + module_name)
real = getattr(module, name)
calls = []
def step(*args, **kw):
    real(*args, **kw)
    calls.append(1)
    if len(calls) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
setattr(module, name, step)
A.apply_vif(vif_plan(sys.argv[4]))
'''


@pytest.mark.parametrize("step,nth", [("sched_htb.add_qdisc", 1), ("sched_htb.set_class", 1)])
def test_apply_killed_while_building_the_tree_then_cleanup_restores_the_uplink(
        host, tmp_path, step, nth):
    """SIGKILL right after our HTB root qdisc (or its root class) was made: the
    root has no default class yet (with direct_qlen 0, as vif-qos once made it,
    it dropped every frame of the uplink, dom0's own included). ``cleanup`` once
    left it so; an incomplete tree that no entry uses is ours to take away."""
    d = host
    vif = d.add_guest(1).vif
    run("tc", "qdisc", "add", "dev", vif, "root", "handle", "5:", "tbf", "rate", "1mbit",
       "burst", "10k", "latency", "50ms", ns=d.dom0)  # foreign: must stay
    env = dict(os.environ, VIF_QOS_RUN_DIR=str(tmp_path / "run"))
    proc = subprocess.run(["ip", "netns", "exec", d.dom0, sys.executable, "-c", KILL_AFTER,
                           HERE, step, str(nth), vif], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert root_qdisc(d.dom0, UPLINK)["kind"] == "htb"
    assert "7a51:2" not in htb_classes(d.dom0, UPLINK)
    with in_netns(d.dom0):
        assert A.cleanup_orphans() == [f"htb 7a51:0 on {UPLINK} (incomplete tree)"]
        assert A.cleanup_orphans() == []
    assert root_qdisc(d.dom0, UPLINK).get("kind") != "htb"
    assert root_qdisc(d.dom0, vif)["handle"] == "5:"
    # The next apply builds the whole tree again.
    with in_netns(d.dom0):
        assert A.apply_vif(vif_plan(vif, in_rate=None)).classid == 0x7A510100
    assert {"7a51:1", "7a51:2", "7a51:100"} <= set(htb_classes(d.dom0, UPLINK))


def test_cleanup_keeps_a_complete_tree_and_one_an_entry_uses(host):
    d = host
    a = d.add_guest(1).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a))
        A.remove_vif(a)
        assert A.cleanup_orphans() == []  # the shared tree stays
    assert {"7a51:1", "7a51:2"} <= set(htb_classes(d.dom0, UPLINK))
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a))
    run("tc", "class", "del", "dev", UPLINK, "classid", "7a51:2", ns=d.dom0)
    with in_netns(d.dom0):
        assert A.cleanup_orphans() == []  # a vif still uses it: never pulled away
    assert root_qdisc(d.dom0, UPLINK)["kind"] == "htb"


def test_a_pool_added_before_another_in_the_policy_never_takes_over_its_class(host):
    """Pool classes were ``0x10 + position in the policy``: adding a pool above
    "overage" made the next apply change overage's class (members still under
    it) to the new pool's rates and put the new pool's members beside them."""
    d = host
    a, b, c = (d.add_guest(n).vif for n in (1, 2, 3))
    before = uplink_plan(pools=(cls("overage", 10 ** 7),))
    after = uplink_plan(pools=(cls("gold", 5 * 10 ** 8), cls("overage", 10 ** 7)))
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a, pool="overage", uplink=before))
        A.apply_vif(vif_plan(b, pool="gold", uplink=after))
        A.apply_vif(vif_plan(c, pool="overage", uplink=after))
    classes = htb_classes(d.dom0, UPLINK)
    overage, gold = classes["7a51:100"]["parent"], classes["7a51:101"]["parent"]
    assert overage != gold
    assert classes["7a51:102"]["parent"] == overage  # the pool kept its class
    assert classes[overage]["rate"] == "10Mbit" and classes[gold]["rate"] == "500Mbit"
    # Once overage's last member left, its class may serve another pool.
    with in_netns(d.dom0):
        A.remove_vif(a)
        A.remove_vif(c)
        A.apply_vif(vif_plan(c, pool="overage", uplink=after))
    classes = htb_classes(d.dom0, UPLINK)
    assert classes["7a51:100"]["parent"] != classes["7a51:101"]["parent"]
    assert classes[classes["7a51:100"]["parent"]]["rate"] == "10Mbit"
    assert classes[classes["7a51:101"]["parent"]]["rate"] == "500Mbit"


def test_a_long_pool_name_still_fits_the_128_character_nft_comment(host):
    d = host
    vif = d.add_guest(1, vifname="abcdefghijklmno").vif  # 15: IFNAMSIZ - 1
    name = "p" * 80
    plan = vif_plan(vif, pool=name, uplink=uplink_plan(pools=(cls(name, 10 ** 7),)))
    with in_netns(d.dom0):
        applied = A.apply_vif(plan)
        assert [e.vif for e in A.list_applied()] == [vif]
    assert htb_classes(d.dom0, UPLINK)[f"7a51:{applied.classid & 0xFFFF:x}"]["parent"] \
        == "7a51:10"


def test_udev_cleanup_of_a_name_racing_the_new_guests_online_keeps_the_new_shaping(
        host, capsys):
    """Reboot with a ``vifname``: udev's ``cleanup --vif web1e0`` for the old
    netdev ran while the new guest's online (same name) held the lock. It had
    checked "no such netdev" before waiting for the lock, then removed the new
    guest's fresh shaping."""
    import argparse
    import threading
    import time

    from vif_qos.kernel import alloc
    from vif_qos.cli import cleanup as cmd_cleanup

    d = host
    old = d.add_guest(1, vifname="web1e0").vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(old, out_rate=10 ** 6))
    d.remove_guest(d.guests[old])  # the old guest is gone, no offline
    done = []

    def udev_cleanup():
        with in_netns(d.dom0):
            done.append(cmd_cleanup.run(argparse.Namespace(vif=old, config=None)))

    with in_netns(d.dom0), alloc.host_lock():  # the new guest's online is under way
        worker = threading.Thread(target=udev_cleanup)
        worker.start()
        time.sleep(0.5)
        d.add_guest(11, vifname="web1e0").vif
        A.apply_vif(vif_plan(old, out_rate=3 * 10 ** 6))
    worker.join(30)
    assert done == [0]
    with in_netns(d.dom0):
        assert [(e.vif, e.classid) for e in A.list_applied()] == [(old, 0x7A510100)]
    assert htb_classes(d.dom0, UPLINK)["7a51:100"]["rate"] == "3Mbit"
    assert root_qdisc(d.dom0, old)["kind"] == "tbf"


def test_what_apply_logs_reaches_the_hotplug_log_as_warning_and_info(tmp_path):
    """A foreign qdisc replaced on the vif, a stale entry replaced (C06): vif_qos.kernel.apply
    logs them through Python's logging, which a hotplug run never configured, so
    they reached neither syslog nor the hotplug log's format (the warning went
    bare to stderr, the info nowhere)."""
    import re

    from vif_qos.sim.dom0 import Dom0

    policy = ("[bridges]\nuplink = peth0\n[domains]\n    [[web*]]\n    rate_in = 2mbit\n"
              "    rate_out = 1mbit\n")
    with Dom0(str(tmp_path / "tree"), policy=policy) as d:
        d.host.add_guest(domid=3, attach=False)
        d.xs.seed_vif(3, 0, name="web3")
        run("tc", "qdisc", "add", "dev", "vif3.0", "root", "handle", "5:", "tbf", "rate",
           "1mbit", "burst", "10k", "latency", "50ms", ns=d.host.dom0)
        for _ in range(2):  # the second online finds the first one's entry
            res = d.hotplug("online", 3)
            assert res.returncode == 0, res.stderr
        text = d.hotplug_log()
    assert re.search(r"vif-qos\[\d+\] warning: online vif3\.0: vif3\.0: replacing its "
                     r"root qdisc tbf 5:0", text), text
    assert re.search(r"vif-qos\[\d+\] info: online vif3\.0: vif3\.0: replacing the "
                     r"stale entry", text), text
    assert "\nvif-qos: " not in text  # nothing bare on stderr any more


def test_a_jumbo_mtu_vif_gets_a_tbf_bucket_of_at_least_one_frame(host, caplog):
    """vif-bridge gives the vif the bridge's MTU (or the backend's ``mtu``); a plan
    made for the policy's 1500 gave a 2 Mbit/s TBF a 2500-byte bucket, and TBF drops
    every frame longer than its bucket: a jumbo-frame guest received nothing."""
    d = host
    vif = d.add_guest(1).vif
    for dev, ns in (("eth0", d.internet), (UPLINK, d.dom0), ("xenbr0", d.dom0), (vif, d.dom0),
                    ("eth0", d.guests[vif].ns)):
        run("ip", "link", "set", dev, "mtu", "9000", ns=ns)
    plan = vif_plan(vif, in_rate=2 * 10 ** 6, burst=2500, limit=15000, out_rate=None)
    with in_netns(d.dom0):
        A.apply_vif(plan)
    q = root_qdisc(d.dom0, vif)
    assert q["kind"] == "tbf" and q["options"]["burst"] >= 9014, q
    assert any("burst" in r.getMessage() and "9014" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")
    # Five 8000-byte UDP datagrams (not fragmented: the path's MTU is 9000).
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", d.guests[vif].ns, sys.executable, "-c", UDP_COUNT,
         d.guests[vif].ipv4],
        stdout=subprocess.PIPE, text=True)
    try:
        run(sys.executable, "-c", UDP_SEND, d.guests[vif].ipv4, ns=d.internet)
        got = int(receiver.communicate(timeout=30)[0])
    finally:
        receiver.kill()
    assert got == 5


UDP_COUNT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999)); s.settimeout(3)
n = 0
try:
    while n < 5:
        if len(s.recv(65536)) == 8000:
            n += 1
except socket.timeout:
    pass
print(n)
"""
UDP_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
time.sleep(0.3)
for _ in range(5):
    s.sendto(b"x" * 8000, (sys.argv[1], 9999)); time.sleep(0.1)
"""


def test_after_nft_flush_ruleset_a_cleanup_sweep_keeps_live_guests_tbfs(host):
    """``systemctl restart nftables`` runs ``flush ruleset`` and takes our table
    with it. A ``vif-qos cleanup`` sweep then saw every live guest's TBF as a
    leftover of a killed apply and stripped them all: the guests lost their
    inbound shaping too. Without the table nothing tells a leftover TBF from a
    live guest's: the sweep keeps them (the leaves, which nothing classifies
    into any more, go)."""
    d = host
    a, b, c = (d.add_guest(n).vif for n in (1, 2, 3))
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a))
        A.apply_vif(vif_plan(b))
    run("nft", "flush", "ruleset", ns=d.dom0)
    with in_netns(d.dom0):
        assert sorted(A.cleanup_orphans()) == ["leaf 7a51:100 on peth0",
                                               "leaf 7a51:101 on peth0"]
        assert status()["vifs"] == []
    assert root_qdisc(d.dom0, a)["kind"] == root_qdisc(d.dom0, b)["kind"] == "tbf"
    with in_netns(d.dom0):  # the next online still works
        assert A.apply_vif(vif_plan(c)).classid == 0x7A510100
        assert [v["vif"] for v in status()["vifs"]] == [a, b, c]
        assert A.remove_vif(c) is True


def test_auto_uplink_ignores_other_renamed_guests_not_shaped_yet(host):
    """Many guests with ``vifname`` started at once (host boot): vif-bridge has put
    all their vifs on the bridge before any is shaped, so neither the name nor
    our table tells them from the uplink and every online was refused. Netback
    gives every vif the MAC fe:ff:ff:ff:ff:ff (drivers/net/xen-netback/
    interface.c); an uplink never has it."""
    d = host
    names = ["web1e0", "db2e0", "mail3e0"]
    for n, name in enumerate(names, 1):
        d.add_guest(n, vifname=name).vif
        run("ip", "link", "set", name, "address", "fe:ff:ff:ff:ff:ff", ns=d.dom0)
    with in_netns(d.dom0):
        assert A.apply_vif(vif_plan("db2e0", uplink=uplink_plan(device=None))).uplink \
            == UPLINK


def test_after_nft_flush_ruleset_the_next_online_records_live_tbfs_again(host):
    """After ``flush ruleset`` the next online made a fresh table holding only its
    own vif; udev's full sweep (run whenever any guest's backend goes) then
    took every other live guest's TBF for a killed apply's leftover. The online
    that recreates the table records the vifs still carrying our TBF again
    (inbound only: which leaf was whose is lost)."""
    d = host
    a, b, c = (d.add_guest(n).vif for n in (1, 2, 3))
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a))
        A.apply_vif(vif_plan(b, out_rate=None))
    run("nft", "flush", "ruleset", ns=d.dom0)
    with in_netns(d.dom0):
        # The online repairs the uplink it touches: a's leaf, which nothing
        # classifies into any more, goes, and c takes its minor.
        A.apply_vif(vif_plan(c))
        assert A.cleanup_orphans() == []
        assert [(x.vif, x.inbound, x.classid) for x in A.list_applied()] == [
            (a, True, None), (b, True, None), (c, True, 0x7A510100)]
    assert root_qdisc(d.dom0, a)["kind"] == root_qdisc(d.dom0, b)["kind"] == "tbf"
    with in_netns(d.dom0):  # offline of a recorded-again vif takes its TBF away
        assert A.remove_vif(a) is True
    assert root_qdisc(d.dom0, a).get("kind") != "tbf"


@pytest.mark.parametrize("step,nth", [("sched_htb.set_class", 3), ("sched_tbf.replace", 1)])
def test_first_apply_killed_then_netdev_gone_then_cleanup_leaves_only_the_tree(
        host, tmp_path, step, nth):
    d = host
    vif = d.add_guest(1).vif
    env = dict(os.environ, VIF_QOS_RUN_DIR=str(tmp_path / "run"))
    proc = subprocess.run(["ip", "netns", "exec", d.dom0, sys.executable, "-c", KILL_AFTER,
                           HERE, step, str(nth), vif], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    d.remove_guest(d.guests[vif])  # libxl fails the device: netdev gone
    with in_netns(d.dom0):  # the entry was written before the leaf: it is recorded
        assert A.cleanup_orphans() == [vif]
    assert sorted(htb_classes(d.dom0, UPLINK)) == ["7a51:1", "7a51:2"]
    assert vif not in run("nft", "list", "ruleset", ns=d.dom0).stdout
