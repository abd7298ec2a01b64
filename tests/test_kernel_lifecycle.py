"""Removal, stale entries, orphans and foreign qdiscs (C06 and the "never clobber"
rule), against the real kernel."""

from __future__ import annotations

import logging
import re

import pytest

from helpers import UPLINK, uplink_plan, vif_plan
from vif_qos.sim.net import in_netns, nft_json, run
from helpers import htb_classes, root_qdisc

from vif_qos.kernel import apply as A
from vif_qos.errors import KernelError

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("run_dir")]


def table_objects(ns: str) -> dict:
    """chains, map elements and rule comments of table bridge vif_qos."""
    chains, elems, comments = [], [], []
    for item in nft_json(ns, "list", "table", "bridge", "vif_qos"):
        if "chain" in item:
            chains.append(item["chain"]["name"])
        elif "map" in item:
            for e in item["map"].get("elem", []):
                key = e[0]
                if isinstance(key, dict):  # {"elem": {"val": ..., "comment": ...}}
                    comments.append(key["elem"].get("comment", ""))
                    key = key["elem"]["val"]
                elems.append(key)
        elif "rule" in item:
            comments.append(item["rule"].get("comment", ""))
    return {"chains": chains, "elems": elems, "comments": comments}


def mentions(ns: str, vif: str) -> list:
    """Every trace of ``vif`` in our table (C06: must be empty after removal)."""
    objs = table_objects(ns)
    return ([c for c in objs["chains"] if vif in c] + [e for e in objs["elems"] if vif in e]
            + [c for c in objs["comments"] if f"vif={vif} " in c])


def qdiscs_without_counters(ns: str, dev: str) -> str:
    out = run("tc", "qdisc", "show", "dev", dev, ns=ns).stdout
    return re.sub(r"direct_packets_stat \d+ ", "", out)


def leaves(ns: str) -> dict:
    return {cid: c for cid, c in htb_classes(ns, UPLINK).items()
            if int(cid.split(":")[1], 16) >= 0x100}


def test_c06_remove_after_the_netdev_vanished(host):
    d = host
    a, b = d.add_guest(1).vif, d.add_guest(2).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a))
        A.apply_vif(vif_plan(b, out_rate=3 * 10 ** 6))
    before_b = htb_classes(d.dom0, UPLINK)["7a51:101"]
    d.remove_guest(d.guests[a])          # the guest vanished, no offline
    with in_netns(d.dom0):
        assert A.remove_vif(a) is True
        assert A.remove_vif(a) is False
    assert mentions(d.dom0, a) == []
    assert list(leaves(d.dom0)) == ["7a51:101"]      # only b's leaf is left
    assert htb_classes(d.dom0, UPLINK)["7a51:101"] == before_b
    assert root_qdisc(d.dom0, b)["kind"] == "tbf"
    assert len(mentions(d.dom0, b)) == 4  # chain, element, rule and element comments


def test_c06_same_vif_name_reapplied_gets_only_its_new_limits(host):
    d = host
    vif = d.add_guest(5).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(vif, out_rate=10 ** 6, in_rate=2 * 10 ** 6))
    # The old guest vanished without an offline; a new one got the same name.
    d.remove_guest(d.guests[vif])
    d.add_guest(5).vif
    with in_netns(d.dom0):
        applied = A.apply_vif(vif_plan(vif, out_rate=7 * 10 ** 6, in_rate=9 * 10 ** 6))
        assert [x.vif for x in A.list_applied()] == [vif]
    found = leaves(d.dom0)
    assert [(c["parent"], c["rate"], c["ceil"]) for c in found.values()] == [
        ("7a51:1", "7Mbit", "7Mbit")]
    assert applied.classid == 0x7A510100
    assert root_qdisc(d.dom0, vif)["options"]["rate"] == 9 * 10 ** 6 // 8
    objs = table_objects(d.dom0)
    assert objs["elems"] == [vif] and objs["chains"].count(f"vif_{vif}") == 1
    assert len([c for c in objs["comments"] if f"vif={vif} " in c]) == 2  # rule, element


def test_reapply_on_a_live_vif_replaces_not_merges(host):
    d = host
    vif = d.add_guest(1).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(vif, out_rate=10 ** 6, in_rate=10 ** 6))
        A.apply_vif(vif_plan(vif, out_rate=None, in_rate=4 * 10 ** 6))
        [applied] = A.list_applied()
    assert applied.classid is None and applied.uplink is None and applied.inbound
    assert leaves(d.dom0) == {}
    assert root_qdisc(d.dom0, vif)["options"]["rate"] == 4 * 10 ** 6 // 8


def test_cleanup_orphans_removes_only_vanished_vifs(host):
    d = host
    vifs = [d.add_guest(i).vif for i in (1, 2, 3)]
    with in_netns(d.dom0):
        for v in vifs:
            A.apply_vif(vif_plan(v))
    d.remove_guest(d.guests[vifs[0]])
    d.remove_guest(d.guests[vifs[2]])
    with in_netns(d.dom0):
        assert A.cleanup_orphans() == [vifs[0], vifs[2]]
        assert A.cleanup_orphans() == []
        assert [a.vif for a in A.list_applied()] == [vifs[1]]
    assert list(leaves(d.dom0)) == ["7a51:101"]
    assert mentions(d.dom0, vifs[0]) == [] and mentions(d.dom0, vifs[2]) == []


def test_freed_classid_and_mark_are_reused(host):
    d = host
    a, b, c = (d.add_guest(i).vif for i in (1, 2, 3))
    with in_netns(d.dom0):
        first = A.apply_vif(vif_plan(a))
        A.apply_vif(vif_plan(b))
        A.remove_vif(a)
        third = A.apply_vif(vif_plan(c))
    assert (third.classid, third.mark) == (first.classid, first.mark)


@pytest.mark.parametrize("foreign", [
    ["handle", "1:", "tbf", "rate", "1mbit", "burst", "10k", "latency", "50ms"],
    ["handle", "7a51:", "tbf", "rate", "1mbit", "burst", "10k", "latency", "50ms"],
    ["handle", "8:", "htb", "default", "2"],
])
def test_foreign_root_qdisc_on_the_uplink_is_refused_and_untouched(host, foreign):
    d = host
    vif = d.add_guest(1).vif
    run("tc", "qdisc", "add", "dev", UPLINK, "root", *foreign, ns=d.dom0)
    before = qdiscs_without_counters(d.dom0, UPLINK)
    with in_netns(d.dom0):
        with pytest.raises(KernelError, match=r"uplink peth0: its root qdisc is .* not "
                                              r"vif-qos's htb 7a51:0"):
            A.apply_vif(vif_plan(vif))
        assert A.list_applied() == []
    assert qdiscs_without_counters(d.dom0, UPLINK) == before
    assert htb_classes(d.dom0, UPLINK) == {}
    assert root_qdisc(d.dom0, vif).get("kind") != "tbf"


def test_foreign_root_qdisc_on_the_vif_is_replaced_with_a_warning(host, caplog):
    d = host
    vif = d.add_guest(1).vif
    run("tc", "qdisc", "add", "dev", vif, "root", "handle", "1:", "tbf", "rate", "1mbit",
       "burst", "10k", "latency", "50ms", ns=d.dom0)
    with caplog.at_level(logging.WARNING, logger="vif_qos"), in_netns(d.dom0):
        A.apply_vif(vif_plan(vif, in_rate=5 * 10 ** 6))
    assert root_qdisc(d.dom0, vif)["handle"] == "7a51:"
    assert root_qdisc(d.dom0, vif)["options"]["rate"] == 5 * 10 ** 6 // 8
    assert any("replacing its root qdisc tbf 1:0" in r.getMessage() for r in caplog.records)
    # remove takes ours away and leaves the kernel's default.
    with in_netns(d.dom0):
        A.remove_vif(vif)
    assert root_qdisc(d.dom0, vif).get("kind") in (None, "noqueue")


def test_remove_leaves_a_foreign_qdisc_on_the_vif_alone(host):
    d = host
    vif = d.add_guest(1).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(vif))
    run("tc", "qdisc", "replace", "dev", vif, "root", "handle", "3:", "tbf", "rate", "1mbit",
       "burst", "10k", "latency", "50ms", ns=d.dom0)
    with in_netns(d.dom0):
        assert A.remove_vif(vif) is True
    assert root_qdisc(d.dom0, vif)["handle"] == "3:"


def test_a_second_uplink_plan_with_auto_finds_the_existing_tree(host):
    d = host
    a, b = d.add_guest(1).vif, d.add_guest(2).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a, uplink=uplink_plan(device=None)))
        A.apply_vif(vif_plan(b, uplink=uplink_plan(device=UPLINK)))
    assert sorted(leaves(d.dom0)) == ["7a51:100", "7a51:101"]


def test_cleanup_removes_leftovers_of_a_killed_apply_and_nothing_else(host):
    d = host
    a, b = d.add_guest(1).vif, d.add_guest(2).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a))
        A.apply_vif(vif_plan(b, in_rate=None))
    # What an apply killed between its tc steps and its nftables transaction
    # leaves: a leaf and a TBF that no entry records.
    orphan = d.add_guest(3).vif
    run("tc", "class", "add", "dev", UPLINK, "parent", "7a51:1", "classid", "7a51:105",
       "htb", "rate", "1mbit", ns=d.dom0)
    run("tc", "qdisc", "add", "dev", orphan, "root", "handle", "7a51:", "tbf", "rate",
       "1mbit", "burst", "10k", "latency", "50ms", ns=d.dom0)
    # Not ours: another handle on a vif, a class outside the leaf range.
    run("tc", "qdisc", "add", "dev", b, "root", "handle", "5:", "tbf", "rate",
       "1mbit", "burst", "10k", "latency", "50ms", ns=d.dom0)
    run("tc", "class", "add", "dev", UPLINK, "parent", "7a51:1", "classid", "7a51:20",
       "htb", "rate", "1mbit", ns=d.dom0)
    with in_netns(d.dom0):
        assert sorted(A.cleanup_orphans()) == ["leaf 7a51:105 on peth0",
                                               "tbf 7a51:0 on vif3.0"]
        assert A.cleanup_orphans() == []
        assert [x.vif for x in A.list_applied()] == [a, b]
    assert sorted(leaves(d.dom0)) == ["7a51:100", "7a51:101"]
    assert "7a51:20" in htb_classes(d.dom0, UPLINK)
    assert root_qdisc(d.dom0, a)["handle"] == "7a51:"
    assert root_qdisc(d.dom0, b)["handle"] == "5:"
    assert root_qdisc(d.dom0, orphan).get("kind") != "tbf"


def test_apply_on_a_vif_that_is_still_down_as_at_xen_online(host):
    """Xen runs ``online`` while netback's vif is still down: the TBF must be
    in place before it comes up, and stay."""
    d = host
    run("ip", "link", "add", "vif7.0", "type", "veth", "peer", "name", "g7", ns=d.dom0)
    run("ip", "link", "set", "vif7.0", "master", "xenbr0", ns=d.dom0)
    with in_netns(d.dom0):
        A.apply_vif(vif_plan("vif7.0", in_rate=3 * 10 ** 6))
    run("ip", "link", "set", "vif7.0", "up", ns=d.dom0)
    assert root_qdisc(d.dom0, "vif7.0")["options"]["rate"] == 3 * 10 ** 6 // 8
    with in_netns(d.dom0):
        assert A.remove_vif("vif7.0") is True
    assert root_qdisc(d.dom0, "vif7.0").get("kind") != "tbf"
