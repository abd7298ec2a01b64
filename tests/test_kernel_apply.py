"""apply_vif / remove_vif against the real kernel, read back with tc and nft."""

from __future__ import annotations

import pytest

from helpers import BRIDGE, UPLINK, htb_classes, our_rules, root_qdisc, uplink_plan, vif_plan
from vif_qos.sim.net import in_netns, nft_json, run

from vif_qos.kernel import apply as A
from vif_qos.errors import KernelError

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("run_dir")]


def test_apply_builds_tbf_leaf_and_entry_then_remove_takes_it_all(host):
    d = host
    vif = d.add_guest(3).vif
    plan = vif_plan(vif, out_rate=20 * 10 ** 6, out_ceil=50 * 10 ** 6, in_rate=30 * 10 ** 6)
    with in_netns(d.dom0):
        applied = A.apply_vif(plan)
    assert applied.vif == vif and applied.uplink == UPLINK and applied.inbound
    assert applied.classid == 0x7A510100
    assert applied.mark == 0x00010000

    tbf = root_qdisc(d.dom0, vif)
    assert tbf["kind"] == "tbf" and tbf["handle"] == "7a51:"
    assert tbf["options"]["rate"] == 30 * 10 ** 6 // 8
    htb = root_qdisc(d.dom0, UPLINK)
    assert htb["kind"] == "htb" and htb["handle"] == "7a51:"
    assert htb["options"]["default"] == "0x2"
    classes = htb_classes(d.dom0, UPLINK)
    assert classes["7a51:100"] == {"parent": "7a51:1", "rate": "20Mbit", "ceil": "50Mbit",
                                   "burst": "15000b", "cburst": "15000b"}
    assert classes["7a51:1"]["rate"] == "1Gbit"
    assert classes["7a51:2"]["parent"] == "7a51:1"
    rules = our_rules(d.dom0)
    vif_rules = [r for r in rules if r["chain"] == f"vif_{vif}"]
    assert len(vif_rules) == 1
    assert f"vif={vif}" in vif_rules[0]["comment"]
    assert "classid=7a51:100" in vif_rules[0]["comment"]

    with in_netns(d.dom0):
        assert [a.vif for a in A.list_applied()] == [vif]
        assert A.remove_vif(vif) is True
        assert A.remove_vif(vif) is False  # idempotent
        assert A.list_applied() == []
    assert "7a51:100" not in htb_classes(d.dom0, UPLINK)
    assert root_qdisc(d.dom0, vif).get("kind") != "tbf"
    chains = [i["chain"]["name"] for i in nft_json(d.dom0, "list", "table", "bridge",
                                                    "vif_qos") if "chain" in i]
    assert chains == ["prerouting"]
    elems = [i["map"].get("elem", []) for i in nft_json(d.dom0, "list", "table", "bridge",
                                                         "vif_qos") if "map" in i]
    assert elems == [[]]


def test_auto_uplink_is_the_one_non_guest_port(host):
    d = host
    vif = d.add_guest(1).vif
    d.add_guest(2).vif
    plan = vif_plan(vif, uplink=uplink_plan(device=None))
    with in_netns(d.dom0):
        assert A.apply_vif(plan).uplink == UPLINK
        # Once a vif of the bridge is shaped, "auto" keeps that uplink while it
        # is still a port of the bridge (no dump of a thousand vif ports).
        run("ip", "link", "add", "peth1", "type", "veth", "peer", "name", "x1", ns=d.dom0)
        run("ip", "link", "set", "peth1", "master", BRIDGE, ns=d.dom0)
        assert A.apply_vif(vif_plan("vif2.0", uplink=uplink_plan(device=None))).uplink == UPLINK
        # With nothing shaped yet, a second non-guest port makes "auto" ambiguous.
        A.remove_vif(vif)
        A.remove_vif("vif2.0")
        with pytest.raises(KernelError, match="exactly one port.*peth0, peth1"):
            A.apply_vif(vif_plan("vif2.0", uplink=uplink_plan(device=None)))
        # A bridge with only guest ports has no uplink: refused too.
        run("ip", "link", "set", "peth0", "nomaster", ns=d.dom0)
        run("ip", "link", "set", "peth1", "nomaster", ns=d.dom0)
        with pytest.raises(KernelError, match="found 0 \\(none\\)"):
            A.apply_vif(vif_plan("vif2.0", uplink=uplink_plan(device=None)))
        assert A.list_applied() == []


def test_a_foreign_root_qdisc_on_the_uplink_is_refused_alike_by_apply_and_check(host):
    """Neither an online nor ``check``/``reload`` replaces a root qdisc vif-qos did
    not make on the uplink: both name it and say how the admin removes it, and the
    online leaves nothing behind."""
    from vif_qos.kernel.reconcile import reconcile

    d = host
    vif = d.add_guest(1).vif
    run("tc", "qdisc", "add", "dev", UPLINK, "root", "handle", "5:", "tbf", "rate", "1mbit",
        "burst", "10k", "latency", "50ms", ns=d.dom0)
    refusal = (f"uplink {UPLINK}: its root qdisc is tbf 5:0, not vif-qos's htb 7a51:0; "
               f"vif-qos does not replace a qdisc it did not create (if it is unwanted, "
               f"remove it with: tc qdisc del dev {UPLINK} root)")
    plan = vif_plan(vif)
    with in_netns(d.dom0):
        with pytest.raises(KernelError) as info:
            A.apply_vif(plan)
        assert str(info.value) == refusal
        assert A.list_applied() == []
        result = reconcile([plan], plan.host, apply=False)
    assert [(v.vif, v.error, v.status) for v in result.vifs] == [(vif, refusal, 1)]
    assert root_qdisc(d.dom0, UPLINK)["handle"] == "5:"
    assert root_qdisc(d.dom0, vif).get("kind") != "tbf"
