"""Which vifs run and their facts (vif_qos.xen.inventory), read from the xenstored
double with the real xenstore tools, the same facts as a hotplug run reads; and
oversold guaranteed rates (vif_qos.core.guarantee)."""

from __future__ import annotations

import os

import pytest

from vif_qos import cli
from vif_qos.config.policy import check_policy_text
from vif_qos.core import guarantee
from vif_qos.core.resolve import plan_vif, uplink_plan
from vif_qos.model import VifFacts
from vif_qos.xen.hotplug import parse_invocation, read_facts
from vif_qos.xen.inventory import (REMOVING, STARTING, UP, domain_identity, ready_vifs,
                                   running_vifs)
from vif_qos.xen.xenstore import Xenstore


def shapeable(store, links, shaped):
    found, bad = running_vifs(store, links)
    ready, not_ready = ready_vifs(found, shaped)
    return ready, bad + not_ready


def test_running_vifs_from_backends_and_netdevs(xs):
    store = Xenstore(env=dict(os.environ, **xs.env()))
    xs.seed_vif(3, 0, name="web1", rate="62500,50000")          # online done
    xs.write("backend/vif/3/0/hotplug-status", "connected")
    xs.seed_vif(4, 0, name="db1", vifname="db1e0")              # online in progress
    xs.seed_vif(5, 0, name="gone")                              # no netdev
    xs.seed_vif(6, 0, name="bye")                               # being removed
    xs.write("backend/vif/6/0/hotplug-status", "connected")
    xs.write("backend/vif/6/0/online", "0")
    xs.seed_vif(7, 0, name="hvm7", nic_type="vif_ioemu")        # PV twin down, tap up
    xs.seed_vif(8, 0, name="bad", vifname="has space")
    links = {"vif3.0": 9, "db1e0": 9, "vif6.0": 9, "vif7.0-emu": 9, "vif7.0": 0,
             "vif8.0": 9}
    found, _bad = running_vifs(store, links)
    assert [(r.facts.vif, r.state) for r in found] == [
        ("vif3.0", UP), ("db1e0", STARTING), ("vif6.0", REMOVING), ("vif7.0", STARTING),
        ("vif7.0-emu", UP)]
    running, skipped = shapeable(store, links, shaped=set())
    assert [(r.facts.vif, r.facts.domain_name, r.tap) for r in running] == [
        ("vif3.0", "web1", False), ("vif7.0-emu", "hvm7", True)]
    assert running[0].facts.xen_rate == "62500,50000"
    assert running[0].facts.xen_rate_source == "xenstore:backend/vif/3/0/rate"
    reasons = {s.vif or s.backend: s.reason for s in skipped}
    assert reasons["db1e0"] == "its online has not finished"
    assert reasons["vif6.0"].startswith("being removed")
    assert "has space" in reasons["backend/vif/8/0"]
    # What our record already shapes is up, whatever hotplug-status says.
    running, _ = shapeable(store, links, shaped={"db1e0"})
    assert "db1e0" in [r.facts.vif for r in running]


def test_no_backends_is_no_vifs(xs):
    store = Xenstore(env=dict(os.environ, **xs.env()))
    assert running_vifs(store, {}) == ([], [])


def online_facts(store, domid, devid=0, tap=False, argv=()):
    """The facts the hotplug run of this vif reads."""
    env = {"vif": f"vif{domid}.{devid}", "XENBUS_PATH": f"backend/vif/{domid}/{devid}",
           "INTERFACE": f"vif{domid}.{devid}-emu"}
    inv = parse_invocation("add" if tap else "online",
                           [f"type_if={'tap' if tap else 'vif'}", *argv], env)
    return read_facts(store, inv)


@pytest.mark.parametrize("case", ["plain", "vifname", "no name, /vm/<uuid>/name",
                                  "no name at all", "no vm", "bridge and rate"])
def test_online_and_the_inventory_build_the_same_facts(xs, case):
    """reload, check, set, drift repair and record name and shape a guest as its
    online did: one facts builder, also when /local/domain/D/name is missing."""
    store = Xenstore(env=dict(os.environ, **xs.env()))
    seed = dict(name="db", uuid="3fa85f64-5717-4562-b3fc-2c963f66afa6",
                mac="00:16:3e:00:00:05", nic_type="vif_ioemu")
    if case == "vifname":
        seed["vifname"] = "db1e0"
    if case == "bridge and rate":
        seed.update(bridge="xenbr1", rate="62500,50000")
    xs.seed_vif(5, 0, **seed)
    if case in ("no name, /vm/<uuid>/name", "no name at all"):
        xs.rm("/local/domain/5/name")
    if case == "no name at all":
        xs.rm(f"/vm/{seed['uuid']}/name")
    if case == "no vm":
        xs.rm("/local/domain/5/vm")
    pv, tap = online_facts(store, 5), online_facts(store, 5, tap=True)
    found, skipped = running_vifs(store, {pv.vif: 9, tap.vif: 9})
    assert skipped == [] and [rv.facts for rv in found] == [pv, tap]
    want_name = None if case == "no name at all" else "db"
    assert pv.domain_name == want_name and tap.domain_name == want_name
    assert pv.domain_uuid == (None if case == "no vm" else seed["uuid"])


def test_a_missing_domain_name_is_read_from_vm_once(xs):
    xs.seed_vif(4, 0, name="db", uuid="11111111-2222-3333-4444-555555555555")
    xs.rm("/local/domain/4/name")
    read = []

    class Counting(Xenstore):
        def read_optional(self, paths):
            read.append(list(paths))
            return super().read_optional(paths)

    store = Counting(env=dict(os.environ, **xs.env()))
    found, _ = running_vifs(store, {"vif4.0": 9})
    assert found[0].facts.domain_name == "db"
    assert read[-1] == ["/vm/11111111-2222-3333-4444-555555555555/name"]
    assert domain_identity(4, {"/local/domain/4/name": "a", "/local/domain/4/vm": "/vm/u",
                               "/vm/u/name": "b"}) == ("a", "u")
    assert domain_identity(4, {"/local/domain/4/vm": "/vm/u/x"}) == (None, None)


POLICY = """\
[bridges]
uplink = peth0
rate = 100mbit
default_rate = 50mbit
[pools]
    [[overage]]
    rate = 60mbit
    member_rate = 70mbit
"""


def test_oversold_guarantees(tmp_path):
    policy, problems = check_policy_text(POLICY, "p.conf")
    assert problems == []
    tree = uplink_plan(policy, "xenbr0")
    lines = guarantee.tree_problems(tree, [])
    assert len(lines) == 1 and "add up to 110mbit, above its rate 100mbit" in lines[0]
    plan = plan_vif(VifFacts(vif="vif3.0", devid=0, domain_name="g"), policy,
                    ("rate_out=30mbit", "x.cfg:1"))
    assert guarantee.oversold("p", 10, [("a", 6), ("b", 4)]) is None
    assert guarantee.oversold("p", 10, [("a", 6), ("b", 5)]) is not None
    assert "140mbit" in guarantee.plans_problems([plan])[0]  # 50 + 60 + 30


def test_check_config_warns_but_exits_0(tmp_path, capsys):
    path = tmp_path / "vif-qos.conf"
    path.write_text(POLICY.replace("rate = 100mbit", "rate = 100mbit\n    [[xenbr0]]\n"
                                   "    uplink = peth0\n") + "[host]\nadmission = refuse\n")
    assert cli.main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "guaranteed rates under the root class of xenbr0" in out
    assert "member_rate is above the pool's rate" in out


def test_admission_setting_is_validated(tmp_path, capsys):
    path = tmp_path / "vif-qos.conf"
    path.write_text("[host]\nadmission = maybe\n")
    assert cli.main(["check-config", "--config", str(path)]) == 2
    assert "maybe" in capsys.readouterr().out
