"""End to end: Debian's unmodified vif-bridge with the vif-post.d hook, and vif-qos as
the script= wrapper, in a simulated dom0 (namespaces) against the xenstored double.

Every check reads the kernel back with independent tools (``tc``, ``nft``, ``ip``)
and xenstore through the double. The scripts run inside a private mount namespace
(see vif_qos/sim/dom0.py), so the host's /etc/xen and /var/log are never touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from vif_qos.sim.dom0 import WRAPPER, Dom0
from vif_qos.xen.hotplug import parse_invocation, read_facts
from vif_qos.config.policy import load_policy
from vif_qos.config.planning import plan_for_facts
from vif_qos.xen.xenstore import Xenstore

from helpers import DOM0_POLICY_HEAD

pytestmark = pytest.mark.kernel

POLICY = DOM0_POLICY_HEAD + """\
[pools]
    [[overage]]
    rate = 10mbit
    ceil = 10mbit
[domains]
    [[web*]]
    rate_in = 2mbit
    rate_out = 1mbit
    [[heavy*]]
    pool = overage
    rate_in = 3mbit
"""

#: Xen rate= 5MB/s as libxl writes it: 250000 bytes per 50000 us (40 Mbit/s).
XEN_RATE = "250000,50000"
LEAF_MIN = 0x100  # HostSettings.classid_min: leaves are the classes from here up


@pytest.fixture
def dom0(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("end-to-end hotplug tests need root (namespaces, mounts)")
    with Dom0(str(tmp_path / "tree"), policy=POLICY) as d:
        yield d


# -- oracles -----------------------------------------------------------------------


def sh(ns, *args, check=True):
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True,
                          text=True, check=check, timeout=30)


def link(dom0, dev):
    out = sh(dom0.host.dom0, "ip", "-j", "link", "show", "dev", dev, check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def root_qdisc(dom0, dev):
    out = sh(dom0.host.dom0, "tc", "-j", "qdisc", "show", "dev", dev, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    for q in json.loads(out.stdout):
        if q.get("root"):
            return q
    return None


_UNIT = {"bit": 1, "kbit": 10 ** 3, "mbit": 10 ** 6, "gbit": 10 ** 9, "tbit": 10 ** 12}


def leaves(dom0, dev="peth0"):
    """HTB leaf classes on ``dev`` (minor >= classid_min): {classid: rate_bits_per_s}."""
    out = sh(dom0.host.dom0, "tc", "class", "show", "dev", dev, check=False).stdout
    found = {}
    for m in re.finditer(r"class htb ([0-9a-f]+):([0-9a-f]+) .*?rate ([0-9.]+)([KMGT]?bit)",
                         out):
        if int(m.group(2), 16) >= LEAF_MIN:
            found[f"{m.group(1)}:{m.group(2)}"] = round(
                float(m.group(3)) * _UNIT[m.group(4).lower()])
    return found


def ruleset(dom0):
    return sh(dom0.host.dom0, "nft", "list", "ruleset").stdout


def snapshot(dom0):
    """Everything shaping-related in dom0, for "the host as it was" comparisons
    (the kernel's default qdiscs, which vif-bridge's "link up" adds, left out)."""
    q = "".join(line for line in sh(dom0.host.dom0, "tc", "qdisc", "show").stdout
                .splitlines(keepends=True) if not line.startswith("qdisc noqueue"))
    c = sh(dom0.host.dom0, "tc", "class", "show", "dev", "peth0").stdout
    stateless = sh(dom0.host.dom0, "nft", "-s", "list", "ruleset").stdout  # no counters
    return q, c, stateless


def expected_plan(dom0, domid, devid=0, tap=False):
    env = {"vif": f"vif{domid}.{devid}", "XENBUS_PATH": f"backend/vif/{domid}/{devid}",
           "INTERFACE": f"vif{domid}.{devid}-emu"}
    inv = parse_invocation("add" if tap else "online", [f"type_if={'tap' if tap else 'vif'}"],
                           env)
    facts = read_facts(Xenstore(env=dict(os.environ, **dom0.xs.env())), inv)
    return plan_for_facts(facts, load_policy(dom0.policy_path))


def status(dom0, domid, devid=0):
    return (dom0.xs.read(f"backend/vif/{domid}/{devid}/hotplug-status"),
            dom0.xs.read(f"backend/vif/{domid}/{devid}/hotplug-error"))


def assert_shaped(dom0, dev, plan):
    ln = link(dom0, dev)
    assert ln is not None and ln.get("master") == "xenbr0", ln
    assert "UP" in ln["flags"]
    if plan.inbound is not None:
        q = root_qdisc(dom0, dev)
        assert q is not None and q["kind"] == "tbf", q
        assert q["options"]["rate"] * 8 == plan.inbound.rate_bits_per_s
    if plan.outbound is not None:
        rates = sorted(leaves(dom0).values())
        assert any(abs(r - plan.outbound.rate_bits_per_s) <= plan.outbound.rate_bits_per_s // 100
                   for r in rates), (rates, plan.outbound)
    assert dev in ruleset(dom0)


def assert_nothing_refers_to(dom0, dev):
    q = root_qdisc(dom0, dev) if link(dom0, dev) else None
    assert q is None or q["kind"] != "tbf", q
    assert dev not in ruleset(dom0)


def run_ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


# -- the hook in vif-bridge --------------------------------------------------------------


def test_pv_vif_with_vifname_rename_hook(dom0):
    dom0.host.add_guest(domid=3, attach=False)
    dom0.xs.seed_vif(3, 0, name="web1", vifname="web1e0")
    plan = expected_plan(dom0, 3)
    assert plan.vif == "web1e0" and plan.inbound is not None and plan.outbound is not None
    run_ok(dom0.hotplug("online", 3))
    assert status(dom0, 3) == ("connected", None)
    assert link(dom0, "vif3.0") is None  # renamed by vif-common.sh
    assert_shaped(dom0, "web1e0", plan)
    assert len(leaves(dom0)) == 1
    assert "online web1e0: shaped" in dom0.hotplug_log()

    run_ok(dom0.hotplug("offline", 3))
    assert_nothing_refers_to(dom0, "web1e0")
    assert leaves(dom0) == {}


def test_xen_rate_shapes_both_directions_and_netdev_gone_before_offline(dom0):
    dom0.host.add_guest(domid=4, attach=False)
    dom0.xs.seed_vif(4, 0, name="db4", rate=XEN_RATE)
    plan = expected_plan(dom0, 4)
    assert plan.inbound.rate_bits_per_s == 40_000_000
    run_ok(dom0.hotplug("online", 4))
    assert status(dom0, 4) == ("connected", None)
    assert_shaped(dom0, "vif4.0", plan)
    sh(dom0.host.dom0, "ip", "link", "del", "vif4.0")  # netback freed it first
    run_ok(dom0.hotplug("offline", 4))
    assert_nothing_refers_to(dom0, "vif4.0")
    assert leaves(dom0) == {}


def test_offline_never_run_udev_cleanup(dom0):
    dom0.host.add_guest(domid=6, attach=False)
    dom0.xs.seed_vif(6, 0, name="web6", vifname="web6e0")
    dom0.host.add_guest(domid=7, attach=False)
    dom0.xs.seed_vif(7, 0, name="web7")
    run_ok(dom0.hotplug("online", 6))
    run_ok(dom0.hotplug("online", 7))
    assert len(leaves(dom0)) == 2
    sh(dom0.host.dom0, "ip", "link", "del", "web6e0")
    # udev's rule for the removed netdev, exactly as 85-vif-qos.rules says.
    cmd = dom0.udev_cleanup_command("web6e0")
    assert cmd[1:] == ["cleanup", "--vif=web6e0"]  # a name starting with - stays the value
    run_ok(dom0.run(cmd, dom0.base_env()))
    assert_nothing_refers_to(dom0, "web6e0")
    assert len(leaves(dom0)) == 1 and "vif7.0" in ruleset(dom0)  # the other guest kept
    # A live vif is never cleaned up by name; a full sweep removes only orphans.
    run_ok(dom0.vif_qos("cleanup", "--vif", "vif7.0"))
    assert len(leaves(dom0)) == 1
    sh(dom0.host.dom0, "ip", "link", "del", "vif7.0")
    run_ok(dom0.vif_qos("cleanup"))
    assert leaves(dom0) == {} and "vif7.0" not in ruleset(dom0)


@pytest.mark.parametrize("vifname", [None, "w5"])
def test_hvm_pair_online_then_add_for_emu(dom0, vifname):
    dom0.host.add_guest(domid=5, hvm=True, attach=False)
    dom0.xs.seed_vif(5, 0, name="web5", nic_type="vif_ioemu", vifname=vifname)
    pv, tap = (vifname, f"{vifname}-emu") if vifname else ("vif5.0", "vif5.0-emu")
    pv_plan = expected_plan(dom0, 5)
    tap_plan = expected_plan(dom0, 5, tap=True)
    assert (pv_plan.vif, tap_plan.vif) == (pv, tap)
    assert tap_plan.inbound == pv_plan.inbound and tap_plan.outbound == pv_plan.outbound
    run_ok(dom0.hotplug("online", 5))
    assert status(dom0, 5) == ("connected", None)
    run_ok(dom0.hotplug("add", 5))  # vif-common.sh renames the tap to <vifname>-emu
    assert_shaped(dom0, pv, pv_plan)
    assert_shaped(dom0, tap, tap_plan)
    assert len(leaves(dom0)) == 2
    run_ok(dom0.hotplug("remove", 5))
    assert_nothing_refers_to(dom0, tap)
    run_ok(dom0.hotplug("offline", 5))
    assert_nothing_refers_to(dom0, pv)
    assert leaves(dom0) == {}


def test_c06_reboot_without_offline_reuses_vifname_with_new_limits(dom0):
    # web1 runs shaped by its policy entry; it reboots (new domid, same vifname),
    # its old netdev vanishes and offline never runs. The new vif gets exactly its
    # own new limits (a Xen rate= this time), and nothing of the old one remains.
    dom0.host.add_guest(domid=3, attach=False)
    dom0.xs.seed_vif(3, 0, name="web1", vifname="web1e0")
    run_ok(dom0.hotplug("online", 3))
    sh(dom0.host.dom0, "ip", "link", "del", "web1e0")
    dom0.xs.remove_vif(3, 0)
    dom0.host.add_guest(domid=13, attach=False)
    dom0.xs.seed_vif(13, 0, name="db1", vifname="web1e0", rate=XEN_RATE)
    plan = expected_plan(dom0, 13)
    run_ok(dom0.hotplug("online", 13))
    assert status(dom0, 13) == ("connected", None)
    assert_shaped(dom0, "web1e0", plan)
    assert sorted(leaves(dom0).values()) == [40_000_000]
    text = ruleset(dom0)
    # One map element (keyed by the quoted name) and one chain for the vif.
    assert text.count('"web1e0"') == 1
    assert len([ln for ln in text.splitlines() if ln.strip().startswith("chain ")
                and "web1e0" in ln]) == 1


# -- the script= wrapper -------------------------------------------------------------


def test_wrapper_pv_with_vifname(dom0):
    dom0.host.add_guest(domid=8, attach=False)
    dom0.xs.seed_vif(8, 0, name="heavy8", vifname="heavy8e0", script=WRAPPER)
    plan = expected_plan(dom0, 8)
    assert plan.outbound.pool == "overage"
    run_ok(dom0.hotplug("online", 8, script=WRAPPER))
    assert status(dom0, 8) == ("connected", None)
    assert_shaped(dom0, "heavy8e0", plan)
    # Shaped once: by the wrapper, not a second time by the hook inside vif-bridge.
    assert dom0.hotplug_log().count(": shaped:") == 1
    run_ok(dom0.hotplug("offline", 8, script=WRAPPER))
    assert_nothing_refers_to(dom0, "heavy8e0")
    assert leaves(dom0) == {}


def test_wrapper_fails_when_shaping_fails(dom0):
    dom0.host.add_guest(domid=9, attach=False)
    dom0.xs.seed_vif(9, 0, name="web9", rate="not-a-rate", script=WRAPPER)
    before = snapshot(dom0)
    result = dom0.hotplug("online", 9, script=WRAPPER)
    assert result.returncode != 0
    hs, err = status(dom0, 9)
    assert hs == "error" and "not-a-rate" in err
    assert snapshot(dom0) == before


# -- failures leave the host as it was ---------------------------------------------------


@pytest.mark.parametrize("case", ["malformed-rate", "unknown-pool", "broken-policy"])
def test_bad_parameters_fail_online_and_change_nothing(dom0, case):
    dom0.host.add_guest(domid=3, attach=False)
    dom0.host.add_guest(domid=4, attach=False)
    dom0.xs.seed_vif(4, 0, name="web4")
    run_ok(dom0.hotplug("online", 4))  # a shaped neighbour that must stay as it is
    if case == "malformed-rate":
        dom0.xs.seed_vif(3, 0, name="db3", rate="10MB/s")  # xl syntax, not libxl's
        token = "10MB/s"
    elif case == "unknown-pool":
        dom0.set_policy(POLICY + "    [[db3]]\n    pool = platinum\n")
        dom0.xs.seed_vif(3, 0, name="db3")
        token = "platinum"
    else:
        dom0.set_policy(POLICY.replace("[pools]", "[pools"))
        dom0.xs.seed_vif(3, 0, name="db3")
        token = "vif-qos.conf"
    before = snapshot(dom0)
    result = dom0.hotplug("online", 3)
    assert result.returncode != 0
    hs, err = status(dom0, 3)
    assert hs == "error"
    assert err.startswith("vif-qos: ") and token in err, err
    assert snapshot(dom0) == before
    assert "vif3.0" not in ruleset(dom0)
    # libxl may run offline after a failed online: harmless, the neighbour stays.
    run_ok(dom0.hotplug("offline", 3))
    assert snapshot(dom0) == before


def test_c09_guest_written_frontend_nodes_change_nothing(dom0):
    dom0.host.add_guest(domid=11, attach=False)
    dom0.xs.seed_vif(11, 0, name="db11", rate=XEN_RATE)
    front = "/local/domain/11/device/vif/0"
    dom0.xs.guest_write(11, f"{front}/rate", "4294967295,0")
    dom0.xs.guest_write(11, f"{front}/qos", "rate=100gbit")
    dom0.xs.guest_write(11, "/local/domain/11/data/qos", "pool=none")
    run_ok(dom0.hotplug("online", 11))
    q = root_qdisc(dom0, "vif11.0")
    assert q["kind"] == "tbf" and q["options"]["rate"] == 5_000_000  # 40 Mbit/s from dom0
    assert sorted(leaves(dom0).values()) == [40_000_000]


# -- many at once ----------------------------------------------------------------------


def test_twenty_vifs_online_concurrently(dom0):
    domids = list(range(20, 40))
    for domid in domids:
        dom0.host.add_guest(domid=domid, attach=False)
        dom0.xs.seed_vif(domid, 0, name=f"web{domid}")
    start = time.monotonic()
    procs = [dom0.popen(["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
                        dom0.script_env(domid, 0)) for domid in domids]
    results = [(p.wait(timeout=120), p.communicate()) for p in procs]
    elapsed = time.monotonic() - start
    assert [rc for rc, _ in results] == [0] * 20, results
    assert all(status(dom0, d) == ("connected", None) for d in domids)
    found = leaves(dom0)
    assert len(found) == 20 and sorted(set(found.values())) == [1_000_000]
    for domid in domids:
        q = root_qdisc(dom0, f"vif{domid}.0")
        assert q["kind"] == "tbf" and q["options"]["rate"] == 250_000
    print(f"20 concurrent vif-bridge online runs took {elapsed:.2f} s")
    procs = [dom0.popen(["/etc/xen/scripts/vif-bridge", "offline", "type_if=vif"],
                        dom0.script_env(domid, 0)) for domid in domids]
    assert [p.wait(timeout=120) for p in procs] == [0] * 20
    assert leaves(dom0) == {}
    assert not any(f"vif{d}.0" in ruleset(dom0) for d in domids)
