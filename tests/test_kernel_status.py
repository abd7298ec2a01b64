"""``vif-qos status [--json]`` reads what is applied back from the kernel, with
per-vif counters that move with traffic."""

from __future__ import annotations

import json
import os
import sys

import pytest

from helpers import UPLINK, vif_plan
from vif_qos.sim.net import INTERNET_IPV4, in_netns, run
from helpers import direct_packets, ping

from vif_qos.kernel import apply as A
from vif_qos.cli import main

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("run_dir")]


def test_status_json_and_text_show_limits_and_moving_counters(host, capsys):
    d = host
    vif = d.add_guest(1).vif
    gone = d.add_guest(2).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(vif, out_rate=10 ** 7, out_ceil=2 * 10 ** 7, in_rate=3 * 10 ** 7))
        A.apply_vif(vif_plan(gone))
    d.remove_guest(d.guests[gone])
    ping(d.guests[vif].ns, INTERNET_IPV4, 5)
    ping(d.internet, d.guests[vif].ipv4, 4)
    with in_netns(d.dom0):
        assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_vif = {v["vif"]: v for v in data["vifs"]}
    v = by_vif[vif]
    assert v["uplink"] == UPLINK and v["classid"] == "7a51:100" and v["netdev_present"]
    assert v["outbound"]["rate_bits_per_s"] == 10 ** 7
    assert v["outbound"]["ceil_bits_per_s"] == 2 * 10 ** 7
    assert v["outbound"]["sent_packets"] >= 5
    assert v["inbound"]["qdisc"] == "tbf 7a51:0"
    assert v["inbound"]["rate_bits_per_s"] == 3 * 10 ** 7
    assert v["inbound"]["sent_packets"] >= 4
    assert v["classified"]["packets"] >= 5 and v["classified"]["bytes"] > 0
    assert by_vif[gone]["netdev_present"] is False and by_vif[gone]["inbound"] is None
    # helpers.vif_plan (hand-made) has no leaf qdisc: the default class keeps the
    # kernel's pfifo, and status says so. direct_packets is tc's own reading: 0
    # unless a frame came in the moment the tree was made.
    assert data["uplinks"] == [{"device": UPLINK, "qdisc": "htb 7a51:0",
                                "direct_packets": direct_packets(d.dom0),
                                "default_leaf_qdisc": {
                                    "kind": "pfifo (the kernel's default: no time bound)",
                                    "handle": None, "limit_bytes": None, "bound_us": None,
                                    "source": "kernel default"}}]

    # The text form, through the installed command in the namespace.
    vif_qos = os.path.join(os.path.dirname(sys.executable), "vif-qos")
    text = run(vif_qos, "status", ns=d.dom0,
              ).stdout
    assert "VIF" in text.splitlines()[0]
    line = [ln for ln in text.splitlines() if ln.startswith(vif)][0]
    assert "7a51:100" in line and "10M/20Mbit" in line and "30Mbit" in line
    assert any(ln.startswith(f"{gone} (gone)") for ln in text.splitlines())
    assert (f"uplink {UPLINK}: root qdisc htb 7a51:0, direct_packets_stat "
            f"{direct_packets(d.dom0)}") in text


def test_status_with_nothing_applied(namespaces, capsys):
    ns = namespaces.make("empty")
    with in_netns(ns):
        assert main(["status"]) == 0
        assert "no vif is shaped" in capsys.readouterr().out
        assert main(["status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"vifs": [], "uplinks": [],
                                                       "overrides": []}
