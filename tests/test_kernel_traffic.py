"""Frames from a shaped guest, through the real bridge: C04 (mark mask) and C05
(IPv6, ARP classified like IPv4; nothing goes direct).

A test table (``bridge vqtest``) sets a foreign mark before vif-qos's chain
(priority -300) and counts what vif-qos left behind after it (priority -100).
"""

from __future__ import annotations

import re

import pytest

from helpers import UPLINK, direct_packets, ping, vif_plan
from vif_qos.sim.net import INTERNET_IPV4, INTERNET_IPV6, in_netns, nft_json, run, tc_json

from vif_qos.kernel import apply as A
from vif_qos.kernel.tree import DIRECT_QLEN_PACKETS
from vif_qos.model import HostSettings

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("run_dir")]

MASK = 0x3F00


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
    run("nft", "-f", "-", ns=ns, input=f"""
flush chain bridge vqtest pre
add rule bridge vqtest pre iifname "{vif}" meta mark set {mark:#x}
""")


def class_packets(ns: str, dev: str, classid: str) -> int:
    out = run("tc", "-s", "class", "show", "dev", dev, ns=ns).stdout
    m = re.search(rf"class htb {classid} .*?\n\s*Sent (\d+) bytes (\d+) pkt", out)
    assert m, out
    return int(m.group(2))


def test_c04_c05_mark_mask_ipv6_arp_and_no_direct_packets(host):
    d = host
    host = HostSettings(mark_mask=MASK)
    first = d.add_guest(1).vif
    vif = d.add_guest(2).vif
    guest = d.guests[vif].ns
    with in_netns(d.dom0):
        assert A.apply_vif(vif_plan(first, host=host)).mark == 0x100
        applied = A.apply_vif(vif_plan(vif, host=host, out_rate=10 ** 7, in_rate=10 ** 7))
    direct_before = direct_packets(d.dom0)
    assert applied.mark == 0x200 and applied.classid == 0x7A510101
    run("nft", "-f", "-", ns=d.dom0, input=f"""
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
    ping(guest, INTERNET_IPV4)
    ping(guest, INTERNET_IPV6)
    after_4000 = counters(d.dom0)
    assert after_4000["all"] >= 6
    assert after_4000["mark"] == after_4000["all"]   # 0x4000 -> 0x4200
    assert after_4000["ip"] >= 3 and after_4000["ip6"] >= 3 and after_4000["arp"] >= 1
    assert after_4000["ip"] + after_4000["ip6"] + after_4000["arp"] == after_4000["all"]

    set_foreign_mark(d.dom0, vif, 0x4300)
    ping(guest, INTERNET_IPV4)
    after_4300 = counters(d.dom0)
    assert after_4300["all"] - after_4000["all"] >= 3
    assert after_4300["mark"] - after_4000["mark"] == after_4300["all"] - after_4000["all"]

    # vif-qos's own counter saw every frame from the vif.
    with in_netns(d.dom0):
        mine = {a.vif: a for a in A.list_applied()}[vif]
    assert mine.packets >= after_4300["all"]

    # C05: the leaf class carried the guest's frames; nothing went direct.
    assert class_packets(d.dom0, UPLINK, "7a51:101") >= after_4300["ip"] + after_4300["ip6"]
    assert direct_packets(d.dom0) == direct_before
    # Frames toward the guest go through its TBF.
    tbf = [q for q in tc_json(d.dom0, "-s", "qdisc", "show", "dev", vif) if q.get("root")][0]
    ping(d.internet, d.guests[vif].ipv4, 5)
    tbf = [q for q in tc_json(d.dom0, "-s", "qdisc", "show", "dev", vif) if q.get("root")][0]
    assert tbf["kind"] == "tbf" and tbf["packets"] >= 5


def test_unshaped_and_dom0_traffic_take_the_default_class(host):
    d = host
    shaped = d.add_guest(1).vif
    unshaped = d.add_guest(2).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(shaped))
    direct_before = direct_packets(d.dom0)
    ping(d.guests[unshaped].ns, INTERNET_IPV4)
    ping(d.guests[unshaped].ns, INTERNET_IPV6)
    assert class_packets(d.dom0, UPLINK, "7a51:2") >= 6
    htb = [q for q in tc_json(d.dom0, "-s", "qdisc", "show", "dev", UPLINK) if q.get("root")][0]
    assert direct_packets(d.dom0) == direct_before
    # Frames that find no class while the tree is being built (or after an apply
    # killed then) pass direct, unshaped, rather than being dropped: a direct
    # queue; with the default class in place nothing goes there (above).
    assert htb["options"]["direct_qlen"] == DIRECT_QLEN_PACKETS > 0
