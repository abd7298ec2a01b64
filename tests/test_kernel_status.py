"""``vif-qos status [--json]`` reads what is applied back from the kernel, with
per-vif counters that move with traffic."""

from __future__ import annotations

import json
import os
import sys

import pytest

from kerneltopo import UPLINK, add_vif, make_dom0, vif_plan
from nsutil import inside, sh
from test_kernel_traffic import direct_packets, ping

from vif_qos.kernel import apply as A
from vif_qos.cli import main

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VIF_QOS_RUN_DIR", str(tmp_path / "run"))


def test_status_json_and_text_show_limits_and_moving_counters(netns, capsys):
    d = make_dom0(netns)
    vif = add_vif(netns, d, 1, guest=True)
    gone = add_vif(netns, d, 2)
    with inside(d.dom0):
        A.apply_vif(vif_plan(vif, out_rate=10 ** 7, out_ceil=2 * 10 ** 7, in_rate=3 * 10 ** 7))
        A.apply_vif(vif_plan(gone))
    sh("ip", "link", "del", gone, ns=d.dom0)
    ping(d.guests[vif], "10.99.0.1", 5)
    ping(d.inet, "10.99.0.2", 4)
    with inside(d.dom0):
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
    direct = direct_packets(d.dom0)  # read by tc: 0 unless a frame came while the
    assert data["uplinks"] == [{"device": UPLINK, "qdisc": "htb 7a51:0",  # tree was made
                                "direct_packets": direct}]

    # The text form, through the installed command in the namespace.
    vif_qos = os.path.join(os.path.dirname(sys.executable), "vif-qos")
    text = sh(vif_qos, "status", ns=d.dom0,
              ).stdout
    assert "VIF" in text.splitlines()[0]
    line = [ln for ln in text.splitlines() if ln.startswith(vif)][0]
    assert "7a51:100" in line and "10M/20Mbit" in line and "30Mbit" in line
    assert any(ln.startswith(f"{gone} (gone)") for ln in text.splitlines())
    assert f"uplink {UPLINK}: root qdisc htb 7a51:0, direct_packets_stat {direct}" in text


def test_status_with_nothing_applied(netns, capsys):
    ns = netns.make("empty")
    with inside(ns):
        assert main(["status"]) == 0
        assert "no vif is shaped" in capsys.readouterr().out
        assert main(["status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"vifs": [], "uplinks": []}
