"""Frames from a shaped guest, through the real bridge: C04 (mark mask) and C05
(IPv6, ARP classified like IPv4; nothing goes direct).

A test table (``bridge vqtest``) sets a foreign mark before vif-qos's chain
(priority -300) and counts what vif-qos left behind after it (priority -100).
"""

from __future__ import annotations

import re
import sys

import pytest

from kerneltopo import UPLINK, add_vif, make_dom0, vif_plan
from nsutil import inside, nft_json, sh, tc_json

from vif_qos.kernel import apply as A
from vif_qos.model import HostSettings

pytestmark = pytest.mark.kernel

MASK = 0x3F00


@pytest.fixture(autouse=True)
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VIF_QOS_RUN_DIR", str(tmp_path / "run"))


def counters(ns: str) -> dict:
    """comment -> packets of the rules in table bridge vqtest."""
    out = {}
    for item in nft_json(ns, "list", "table", "bridge", "vqtest"):
        rule = item.get("rule")
        if rule and "comment" in rule:
            for expr in rule["expr"]:
                if "counter" in expr:
                    out[rule["comment"]] = expr["counter"]["packets"]
    return out


def set_foreign_mark(ns: str, vif: str, mark: int) -> None:
    sh("nft", "-f", "-", ns=ns, input=f"""
flush chain bridge vqtest pre
add rule bridge vqtest pre iifname "{vif}" meta mark set {mark:#x}
""")


def class_packets(ns: str, dev: str, classid: str) -> int:
    out = sh("tc", "-s", "class", "show", "dev", dev, ns=ns).stdout
    m = re.search(rf"class htb {classid} .*?\n\s*Sent (\d+) bytes (\d+) pkt", out)
    assert m, out
    return int(m.group(2))


SENDER = """
import socket, sys, time
dest, count = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in dest else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(b"vif-qos test %d" % i, (dest, 9))
    time.sleep(0.05)
"""


def direct_packets(ns: str) -> int:
    """The uplink HTB's direct_packets_stat: frames sent without a class. Only
    frames in the moment the tree is made, before its default class exists, can
    go there (a direct queue, so that moment drops nothing); none afterwards."""
    htb = [q for q in tc_json(ns, "-s", "qdisc", "show", "dev", UPLINK) if q.get("root")][0]
    return htb["options"]["direct_packets_stat"]


def ping(ns: str, dest: str, count: int = 3) -> None:
    """Send ``count`` UDP datagrams to ``dest`` port 9 from namespace ``ns``
    (no ping binary needed; the first one makes the guest resolve ARP/NDP)."""
    sh(sys.executable, "-c", SENDER, dest, str(count), ns=ns)


def test_c04_c05_mark_mask_ipv6_arp_and_no_direct_packets(netns):
    d = make_dom0(netns)
    host = HostSettings(mark_mask=MASK)
    first = add_vif(netns, d, 1, guest=True)
    vif = add_vif(netns, d, 2, guest=True)
    guest = d.guests[vif]
    with inside(d.dom0):
        assert A.apply_vif(vif_plan(first, host=host)).mark == 0x100
        applied = A.apply_vif(vif_plan(vif, host=host, out_rate=10 ** 7, in_rate=10 ** 7))
    direct_before = direct_packets(d.dom0)
    assert applied.mark == 0x200 and applied.classid == 0x7A510101
    sh("nft", "-f", "-", ns=d.dom0, input=f"""
table bridge vqtest {{
  chain pre {{
    type filter hook prerouting priority -300;
    iifname "{vif}" meta mark set 0x4000
  }}
  chain post {{
    type filter hook prerouting priority -100;
    iifname "{vif}" meta mark 0x4200 counter comment "mark"
    iifname "{vif}" meta mark and 0x3f00 == 0x200 counter comment "value"
    iifname "{vif}" ether type ip meta priority 7a51:101 counter comment "ip"
    iifname "{vif}" ether type ip6 meta priority 7a51:101 counter comment "ip6"
    iifname "{vif}" ether type arp meta priority 7a51:101 counter comment "arp"
    iifname "{vif}" counter comment "all"
  }}
}}""")  # one transaction: every counted frame had the foreign mark first
    ping(guest, "10.99.0.1")
    ping(guest, "fd99::1")
    after_4000 = counters(d.dom0)
    assert after_4000["all"] >= 6
    assert after_4000["mark"] == after_4000["all"]   # 0x4000 -> 0x4200
    assert after_4000["ip"] >= 3 and after_4000["ip6"] >= 3 and after_4000["arp"] >= 1
    assert after_4000["ip"] + after_4000["ip6"] + after_4000["arp"] == after_4000["all"]

    set_foreign_mark(d.dom0, vif, 0x4300)
    ping(guest, "10.99.0.1")
    after_4300 = counters(d.dom0)
    assert after_4300["all"] - after_4000["all"] >= 3
    assert after_4300["mark"] - after_4000["mark"] == after_4300["all"] - after_4000["all"]

    # vif-qos's own counter saw every frame from the vif.
    with inside(d.dom0):
        mine = {a.vif: a for a in A.list_applied()}[vif]
    assert mine.packets >= after_4300["all"]

    # C05: the leaf class carried the guest's frames; nothing went direct.
    assert class_packets(d.dom0, UPLINK, "7a51:101") >= after_4300["ip"] + after_4300["ip6"]
    assert direct_packets(d.dom0) == direct_before
    # Frames toward the guest go through its TBF.
    tbf = [q for q in tc_json(d.dom0, "-s", "qdisc", "show", "dev", vif) if q.get("root")][0]
    ping(d.inet, "10.99.0.3", 5)
    tbf = [q for q in tc_json(d.dom0, "-s", "qdisc", "show", "dev", vif) if q.get("root")][0]
    assert tbf["kind"] == "tbf" and tbf["packets"] >= 5


def test_unshaped_and_dom0_traffic_take_the_default_class(netns):
    d = make_dom0(netns)
    shaped = add_vif(netns, d, 1, guest=True)
    unshaped = add_vif(netns, d, 2, guest=True)
    with inside(d.dom0):
        A.apply_vif(vif_plan(shaped))
    direct_before = direct_packets(d.dom0)
    ping(d.guests[unshaped], "10.99.0.1")
    ping(d.guests[unshaped], "fd99::1")
    assert class_packets(d.dom0, UPLINK, "7a51:2") >= 6
    htb = [q for q in tc_json(d.dom0, "-s", "qdisc", "show", "dev", UPLINK) if q.get("root")][0]
    assert direct_packets(d.dom0) == direct_before
    # Frames that find no class while the tree is being built (or after an apply
    # killed then) pass direct, unshaped, rather than being dropped: a direct
    # queue; with the default class in place nothing goes there (above).
    assert htb["options"]["direct_qlen"] == A.DIRECT_QLEN_PACKETS > 0
