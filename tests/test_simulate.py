"""vif-qos simulate: argument parsing, the report, and one small real run."""

import json
import os
import subprocess
import sys

import pytest

from vif_qos.errors import InputError
from vif_qos.sim.net import SEGMENT_HEADER_BYTES, gso_wire_bytes
from vif_qos.sim.simulate import GuestSpec, Row, RttRow, builtin_guests, format_report


def test_guest_spec_fields():
    spec = GuestSpec.parse("db:hvm:wrapper:rate=10Mb/s:qos=rate_in=20mbit,rate_out=5mbit:"
                           "vifname=db0", 4)
    assert (spec.name, spec.domid, spec.hvm, spec.wrapper) == ("db", 4, True, True)
    assert spec.xen_rate == "10Mb/s" and spec.vifname == "db0"
    assert spec.qos == "rate_in=20mbit,rate_out=5mbit"


@pytest.mark.parametrize("text, token", [("web:speed=1", "speed=1"), ("web:rate=", "rate="),
                                         (":hvm", ":hvm"), ("we b", "we b")])
def test_guest_spec_errors_name_the_bad_field(text, token):
    with pytest.raises(InputError) as err:
        GuestSpec.parse(text, 1)
    assert repr(token) in str(err.value)


def test_builtin_scenario_shows_every_source_and_a_pool():
    guests = builtin_guests()
    assert any(g.xen_rate for g in guests)            # Xen's vif rate=
    assert any(g.qos for g in guests)                 # the domain config's qos=
    assert any(g.hvm for g in guests)                 # an HVM pair
    assert any(g.wrapper for g in guests)             # script=vif-qos
    assert any(g.vifname for g in guests)             # a vifname rename
    assert sum(g.pool_run for g in guests) >= 2       # pool members measured at once
    assert len({g.domid for g in guests}) == len(guests)


def _row(wire, fair=True):
    return Row("web1", "vif1.0", "inbound", 4, 10_000_000, wire, wire * 0.95,
               "xenstore:backend/vif/1/0/rate", fair=fair)


@pytest.mark.parametrize("wire, ok", [(10_000_000, True), (9_510_000, True),
                                      (10_490_000, True), (9_490_000, False),
                                      (10_510_000, False)])
def test_a_wire_rate_more_than_5_percent_off_fails(wire, ok):
    assert _row(wire).ok is ok


def test_report_flags_failures_and_leftovers():
    rows = [_row(10_000_000), _row(8_000_000), _row(10_000_000, fair=False)]
    result = {"ok": False, "tolerance": 0.05, "seconds": 1.0, "leftovers": ["class left: x"],
              "hotplug": [{"guest": "web1", "command": "online", "script": "vif-bridge",
                           "exit": 0, "hotplug_status": "connected", "hotplug_error": None,
                           "ok": True, "stderr": ""}],
              "rows": [dict(vars(r), ratio=r.ratio, ok=r.ok) for r in rows], "pool": []}
    text = format_report(result)
    assert "off by more than 5%" in text and "unfair share" in text
    assert "LEFT OVER" in text and "class left: x" in text
    assert text.splitlines()[-1].startswith("result: FAILED")


def test_rtt_rows_are_judged_against_their_bound_and_reported():
    good = RttRow("web1", "vif1.0", 0.08, 45.0, 102.5, 101.0, 102.5)
    bad = RttRow("web2", "vif2.0", 0.08, 45.0, 102.5, 3700.0, 102.5)
    inbound_only = RttRow("db1", "db1-eth0", 0.07, 46.0, 76.3)
    assert good.ok and not bad.ok and inbound_only.ok
    result = {"ok": False, "tolerance": 0.05, "seconds": 1.0, "leftovers": [],
              "hotplug": [], "rows": [], "pool": [], "rtt_flows": 32,
              "rtt": [dict(vars(r), ok=r.ok) for r in (good, bad, inbound_only)]}
    text = format_report(result)
    lines = text.splitlines()
    assert any(ln.startswith("web2") and "above its bound" in ln for ln in lines)
    assert not any(ln.startswith("web1") and "above its bound" in ln for ln in lines)
    assert "every RTT under load within its bound: no" in lines[-1]


def test_builtin_scenario_has_a_gbit_guest():
    assert any(g.qos == "rate=1gbit" for g in builtin_guests())


def test_gso_wire_bytes_adds_one_header_per_further_segment():
    # 2 packets on the interface, 10 segments in the qdisc: 8 more headers.
    assert gso_wire_bytes(100_000, 2, 10, 4) == 100_000 + 8 * 66
    assert gso_wire_bytes(100_000, 2, 10, 6) == 100_000 + 8 * 86
    assert SEGMENT_HEADER_BYTES == {4: 66, 6: 86}
    # No qdisc of ours (0 segments) or no GSO: the interface bytes.
    assert gso_wire_bytes(5000, 4, 0, 4) == gso_wire_bytes(5000, 4, 4, 4) == 5000


def _vif_qos():
    return os.path.join(os.path.dirname(sys.executable), "vif-qos")


def test_simulate_refuses_clearly_when_not_root():
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          _vif_qos(), "simulate"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, HOME="/"))
    assert res.returncode == 1, res
    assert "needs root" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.kernel
@pytest.mark.slow
def test_small_simulation_end_to_end(tmp_path):
    """Two guests through Xen's vif-bridge (hook) and the wrapper, measured, torn down;
    usage recorded meanwhile, reported and plotted."""
    if os.geteuid() != 0:
        pytest.fail("simulate needs root")
    png = tmp_path / "usage.png"
    res = subprocess.run([_vif_qos(), "simulate", "--json", "--seconds", "1.5", "--guests",
                          "web:rate=10Mb/s", "db:wrapper:vifname=db0:qos=rate_in=20mbit",
                          "--plot", str(png)],
                         capture_output=True, text=True, timeout=300)
    result = json.loads(res.stdout)
    assert res.returncode == (0 if result["ok"] else 1)
    assert [h["hotplug_status"] for h in result["hotplug"]] == ["connected", "connected"]
    measured = {(r["vif"], r["direction"], r["family"]): r for r in result["rows"]}
    assert set(measured) == {(v, d, f) for v in ("vif1.0", "db0")
                             for d in ("inbound", "outbound") for f in (4, 6)}
    assert measured[("vif1.0", "inbound", 4)]["source"] == "xenstore:backend/vif/1/0/rate"
    assert measured[("db0", "inbound", 6)]["configured_bits_per_s"] == 20_000_000
    for row in result["rows"]:
        assert abs(row["wire_bits_per_s"] / row["configured_bits_per_s"] - 1) <= 0.05, row
    # "leftovers" includes the run's own namespaces still listed after it (by name:
    # other simulate runs on the machine make vqsim-* namespaces of their own).
    assert result["leftovers"] == [] and result["root_namespace_unchanged"]
    assert result["ok"]


@pytest.mark.kernel
def test_keep_leaves_the_dom0_namespaces_and_says_how_to_remove_them():
    if os.geteuid() != 0:
        pytest.fail("simulate needs root")
    res = subprocess.run([_vif_qos(), "simulate", "--keep", "--seconds", "0.5", "--guests",
                          "k:rate=10Mb/s"], capture_output=True, text=True, timeout=300)
    kept = [line for line in res.stderr.splitlines() if line.startswith("simulate: kept")]
    assert kept, res.stderr
    names = kept[0].split("namespaces ", 1)[1].split(" and ")[0].split()
    tree = kept[0].rsplit(" and ", 1)[1].strip()
    try:
        present = subprocess.run(["ip", "netns", "list"], capture_output=True,
                                 text=True).stdout
        assert names and all(name in present for name in names)
        assert os.path.isdir(tree)
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["rm", "-rf", tree])
