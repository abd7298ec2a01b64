"""What apply_vif builds equals the plan, read back from the kernel (C03 and more).

Two independent read-backs: the ``tc`` tool (text for HTB classes, JSON for
qdiscs) and vif-qos's own pyroute2 dumps (exact values: rates in bytes/s, bucket
sizes in psched ticks).
"""

from __future__ import annotations

import pytest

from helpers import UPLINK, cls, uplink_plan, vif_plan
from vif_qos.sim.net import in_netns, run
from helpers import htb_classes, root_qdisc

from vif_qos.kernel import apply as A
from vif_qos.kernel import qdisc, sched_htb
from vif_qos.kernel import tc as tcadapter
from vif_qos.errors import EnvironmentProblem
from vif_qos.model import HostSettings

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("run_dir")]

G = 10 ** 9

#: C03: rates around and above 2**32-1 bytes/s (34.36 Gbit/s), as tc prints them.
BIG_RATES = [
    (35 * G, "35Gbit"),
    (40960 * 10 ** 6, "40960Mbit"),
    (40 * G, "40Gbit"),
    (100 * G, "100Gbit"),
]


def assert_class_matches(found: sched_htb.ClassInfo, plan_cls, parent: int) -> None:
    """Rates exact; bucket sizes the plan's, up to one 64 ns tick, never 0."""
    rate = plan_cls.rate_bits_per_s // 8
    ceil = plan_cls.ceil_bits_per_s // 8
    assert found.parent == parent
    assert found.rate_bytes_per_s == rate
    assert found.ceil_bytes_per_s == ceil
    assert found.quantum_bytes == plan_cls.quantum_bytes
    assert found.buffer_ticks >= 1 and found.cbuffer_ticks >= 1
    assert plan_cls.burst_bytes <= found.burst_bytes <= plan_cls.burst_bytes + rate // tcadapter.TICKS_PER_S + 1
    assert plan_cls.cburst_bytes <= found.cburst_bytes <= plan_cls.cburst_bytes + ceil // tcadapter.TICKS_PER_S + 1


@pytest.mark.parametrize("rate,tc_word", BIG_RATES)
def test_c03_rates_above_32_bits_read_back_exactly(host, rate, tc_word):
    d = host
    vif = d.add_guest(1).vif
    up = uplink_plan(root_rate=100 * G)
    burst = rate // 8 // 1000  # 1 ms of traffic
    plan = vif_plan(vif, out_rate=rate, in_rate=rate, burst=burst, uplink=up,
                    limit=10 ** 8)
    with in_netns(d.dom0):
        applied = A.apply_vif(plan)
        ipr = tcadapter.open_ipr()
        try:
            link = tcadapter.get_link(ipr, UPLINK)
            classes = {c.classid: c for c in sched_htb.dump_classes(ipr, link.index)}
            tbf = qdisc.get_root_qdisc(ipr, tcadapter.get_link(ipr, vif).index)
        finally:
            ipr.close()
    # vif-qos's own read-back: exact.
    assert_class_matches(classes[applied.classid], plan.outbound and cls(
        "leaf", rate, burst=burst, quantum=1514), 0x7A510001)
    assert_class_matches(classes[0x7A510001], up.root, 0xFFFFFFFF)
    assert tbf.kind == "tbf" and tbf.rate_bytes_per_s == rate // 8
    assert tbf.buffer_ticks >= 1
    # The tc tool's read-back (independent of pyroute2).
    leaf = htb_classes(d.dom0, UPLINK)["7a51:100"]
    assert leaf["rate"] == tc_word and leaf["ceil"] == tc_word
    assert htb_classes(d.dom0, UPLINK)["7a51:1"]["rate"] == "100Gbit"
    q = root_qdisc(d.dom0, vif)
    assert q["kind"] == "tbf" and q["options"]["rate"] == rate // 8
    # tc prints the bucket from ticks truncated to whole microseconds.
    assert burst - rate // 8 // 10 ** 6 <= q["options"]["burst"] <= burst


def test_tbf_peakrate_minburst_limit_read_back(host):
    d = host
    vif = d.add_guest(1).vif
    plan = vif_plan(vif, out_rate=None, in_rate=10 ** 7, burst=20000,
                    peak=2 * 10 ** 7, minburst=1600, limit=123456)
    with in_netns(d.dom0):
        applied = A.apply_vif(plan)
    assert applied.uplink is None and applied.classid is None and applied.inbound
    q = root_qdisc(d.dom0, vif)
    assert q["options"]["rate"] == 10 ** 7 // 8
    # iproute2 6.1's JSON has no peakrate: read the text.
    assert "peakrate 20Mbit" in run("tc", "qdisc", "show", "dev", vif, ns=d.dom0).stdout
    assert q["options"]["minburst"] == 1600
    # tc prints burst from ticks truncated to whole microseconds: within 1 us.
    assert 20000 - 10 ** 7 // 8 // 10 ** 6 - 1 <= q["options"]["burst"] <= 20000
    limit = run("tc", "qdisc", "show", "dev", vif, ns=d.dom0).stdout
    assert "lat" in limit  # tc derives latency from limit
    with in_netns(d.dom0):
        ipr = tcadapter.open_ipr()
        try:
            info = qdisc.get_root_qdisc(ipr, tcadapter.get_link(ipr, vif).index)
        finally:
            ipr.close()
    assert info.limit_bytes == 123456


@pytest.mark.parametrize("plan_kw", [
    dict(out_rate=10 ** 6, out_ceil=10 ** 7, in_rate=None),
    dict(out_rate=2 * 10 ** 9, out_ceil=3 * 10 ** 9, in_rate=5 * 10 ** 8, burst=300000),
    dict(out_rate=8000, in_rate=8000, burst=1600),  # 1000 bytes/s
])
def test_structure_equals_plan_for_a_range_of_plans(host, plan_kw):
    d = host
    vif = d.add_guest(1).vif
    pools = (cls("overage", 5 * 10 ** 8, 10 ** 9), cls("gold", 10 ** 8, 4 * 10 ** 8))
    up = uplink_plan(root_rate=10 ** 10, pools=pools)
    plan = vif_plan(vif, pool="gold", uplink=up, **plan_kw)
    with in_netns(d.dom0):
        applied = A.apply_vif(plan)
        ipr = tcadapter.open_ipr()
        try:
            classes = {c.classid: c for c in sched_htb.dump_classes(
                ipr, tcadapter.get_link(ipr, UPLINK).index)}
        finally:
            ipr.close()
    assert set(classes) == {0x7A510001, 0x7A510002, 0x7A510010, 0x7A510011, applied.classid}
    assert_class_matches(classes[0x7A510001], up.root, 0xFFFFFFFF)
    assert_class_matches(classes[0x7A510002], up.default, 0x7A510001)
    assert_class_matches(classes[0x7A510010], pools[0], 0x7A510001)
    assert_class_matches(classes[0x7A510011], pools[1], 0x7A510001)
    out = plan.outbound
    assert_class_matches(classes[applied.classid],
                         cls("leaf", out.rate_bits_per_s, out.ceil_bits_per_s,
                             out.burst_bytes, out.cburst_bytes, out.quantum_bytes),
                         0x7A510011)
    if plan.inbound is None:
        assert root_qdisc(d.dom0, vif).get("kind") != "tbf"


def test_pool_with_other_rates_is_changed_to_the_plans(host):
    d = host
    a, b = d.add_guest(1).vif, d.add_guest(2).vif
    first = uplink_plan(pools=(cls("overage", 10 ** 8),))
    second = uplink_plan(pools=(cls("overage", 3 * 10 ** 8, burst=30000),))
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(a, pool="overage", uplink=first))
        assert htb_classes(d.dom0, UPLINK)["7a51:10"]["rate"] == "100Mbit"
        A.apply_vif(vif_plan(b, pool="overage", uplink=second))
    classes = htb_classes(d.dom0, UPLINK)
    assert classes["7a51:10"]["rate"] == "300Mbit"
    assert classes["7a51:10"]["burst"] == "30000b"
    assert classes["7a51:100"]["parent"] == classes["7a51:101"]["parent"] == "7a51:10"


def test_other_qdisc_major_and_classid_range_from_host_settings(host):
    d = host
    vif = d.add_guest(1).vif
    host = HostSettings(qdisc_major=0x1234, classid_min=0x2000, classid_max=0x2001,
                        mark_mask=0xFF)
    plan = vif_plan(vif, uplink=uplink_plan(qdisc_major=0x1234), host=host)
    with in_netns(d.dom0):
        applied = A.apply_vif(plan)
        assert applied.classid == 0x12342000 and applied.mark == 0x1
        assert A.remove_vif(vif, host) is True
    assert root_qdisc(d.dom0, UPLINK)["handle"] == "1234:"
    assert root_qdisc(d.dom0, vif).get("kind") != "tbf"


def test_check_support_passes_and_leaves_nothing(namespaces):
    ns = namespaces.make("probe")
    with in_netns(ns):
        A.check_support()
    assert run("nft", "list", "ruleset", ns=ns).stdout.strip() == ""
    assert root_qdisc(ns, "lo").get("kind") in (None, "noqueue")


def test_check_support_names_what_the_kernel_lacks(namespaces, monkeypatch):
    ns = namespaces.make("probe")
    with in_netns(ns):
        assert qdisc.probe_qdisc_kinds(("htb", "tbf", "nosuchqdisc")) == ["nosuchqdisc"]
        monkeypatch.setattr(qdisc, "probe_qdisc_kinds", lambda kinds: ["tbf"])
        with pytest.raises(EnvironmentProblem, match=r"lacks the qdisc\(s\) tbf"):
            A.check_support()
    assert root_qdisc(ns, "lo").get("kind") in (None, "noqueue")
