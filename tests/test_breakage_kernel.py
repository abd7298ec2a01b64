"""Breakage found by trying to break the kernel and lifecycle side: each test is a
scenario that once went wrong, against the real kernel inside namespaces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from kerneltopo import UPLINK, add_vif, make_dom0, uplink_plan, vif_plan
from nsutil import inside, sh
from test_kernel_apply import htb_classes, root_qdisc

from vif_qos import apply as A

pytestmark = pytest.mark.kernel

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VIF_QOS_RUN_DIR", str(tmp_path / "run"))


def test_auto_uplink_ignores_the_renamed_vif_itself_and_hvm_taps(netns):
    """vif-bridge puts the vif on the bridge before the hook runs; with a backend
    ``vifname`` its name is not vif*: "auto" once counted the vif being shaped as
    a second uplink candidate and refused every renamed guest."""
    d = make_dom0(netns, with_inet=False)
    web = add_vif(netns, d, 1, name="web1e0")
    auto = uplink_plan(device=None)
    with inside(d.dom0):
        assert A.apply_vif(vif_plan(web, uplink=auto)).uplink == UPLINK
        A.remove_vif(web)
    # An HVM guest with vifname w3: its PV vif w3 and its tap w3-emu, nothing
    # shaped on the bridge yet (no hint from an earlier entry).
    sh("ip", "link", "set", web, "nomaster", ns=d.dom0)
    pv = add_vif(netns, d, 3, name="w3")
    sh("ip", "link", "add", "w3-emu", "type", "veth", "peer", "name", "g3e", ns=d.dom0)
    sh("ip", "link", "set", "w3-emu", "master", "xenbr0", ns=d.dom0)
    with inside(d.dom0):
        assert A.apply_vif(vif_plan(pv, uplink=auto)).uplink == UPLINK
        assert A.apply_vif(vif_plan("w3-emu", uplink=auto)).uplink == UPLINK
    assert sorted(c for c in htb_classes(d.dom0, UPLINK)
                  if int(c.split(":")[1], 16) >= 0x100) == ["7a51:100", "7a51:101"]
