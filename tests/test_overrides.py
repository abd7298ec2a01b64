"""The operator overrides file (vif_qos.config.overrides) and its place in the
precedence (vif_qos.core.resolve): pure, on files in tmp_path."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from vif_qos.config import overrides as ovr
from vif_qos.config.policy import check_policy_text
from vif_qos.core.resolve import plan_vif
from vif_qos.errors import ConfigError, InputError
from vif_qos.model import VifFacts

NOW = dt.datetime(2026, 12, 3, 12, 0, 0, tzinfo=dt.timezone.utc)
POLICY = """\
[pools]
    [[overage]]
    rate = 10mbit
[domains]
    [[g*]]
    rate = 5mbit
"""


def policy(tmp_path):
    pol, problems = check_policy_text(POLICY, str(tmp_path / "vif-qos.conf"))
    assert problems == []
    return pol


def facts(vif="vif3.0", name="g1", devid=0):
    return VifFacts(vif=vif, devid=devid, domain_name=name, domid=3,
                    xen_rate="62500,50000", xen_rate_source="xenstore:backend/vif/3/0/rate")


def test_set_writes_a_readable_file_and_ranks_above_policy_entries(tmp_path):
    path = str(tmp_path / "overrides.conf")
    new = ovr.with_set(ovr.Overrides(path), ovr.Target("domain", "g1"), "rate=20mbit",
                       who="ops", reason="plan upgrade, ticket 7", now=NOW)
    saved = ovr.save(new)
    text = open(path).read()
    assert "[domain:g1]" in text and "rate = 20mbit" in text and "set_by = ops" in text
    assert "set_at = 2026-12-03T12:00:00Z" in text and "ticket 7" in text
    assert ovr.load(path) == saved
    line = text.splitlines().index("rate = 20mbit") + 1
    plan = plan_vif(facts(), policy(tmp_path), None, saved.matching(facts(), NOW))
    assert plan.inbound.rate_bits_per_s == plan.outbound.rate_bits_per_s == 20_000_000
    assert plan.sources["inbound.rate_bits_per_s"] == f"override:{path}:{line}"
    # Another domain keeps its policy entry; the file's mode and no temp file left.
    other = plan_vif(facts(name="g2"), policy(tmp_path), None, saved.matching(facts("vif4.0", "g2")))
    assert other.inbound.rate_bits_per_s == 5_000_000
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert os.listdir(tmp_path) == ["overrides.conf"]


def test_merge_unset_and_narrower_targets(tmp_path):
    o = ovr.Overrides(str(tmp_path / "o.conf"))
    o = ovr.with_set(o, ovr.Target("domain", "g1"), "rate_in=3mbit,pool=overage", who="a",
                     now=NOW)
    o = ovr.with_set(o, ovr.Target("domain", "g1"), "rate=20mbit", who="b", now=NOW)
    assert o.get(ovr.Target("domain", "g1")).keys == {"pool": "overage", "rate": "20mbit"}
    o = ovr.with_set(o, ovr.Target("device", "g1", 0), "rate_out=none", who="c", now=NOW)
    o = ovr.with_set(o, ovr.Target("vif", "vif3.0"), "rate_in=1mbit", who="c", now=NOW)
    plan = plan_vif(facts(), policy(tmp_path), None, o.matching(facts(), NOW))
    assert plan.inbound.rate_bits_per_s == 1_000_000 and plan.outbound is None
    # devid 1 of the same domain: only the domain override applies.
    plan1 = plan_vif(facts("vif3.1", devid=1), policy(tmp_path), None,
                     o.matching(facts("vif3.1", devid=1), NOW))
    assert plan1.outbound.pool == "overage" and plan1.inbound.rate_bits_per_s == 20_000_000
    o = ovr.with_unset(o, ovr.Target("domain", "g1"), ["pool"])
    assert o.get(ovr.Target("domain", "g1")).keys == {"rate": "20mbit"}
    o = ovr.with_unset(o, ovr.Target("domain", "g1"))
    assert o.get(ovr.Target("domain", "g1")) is None
    with pytest.raises(InputError, match="no override"):
        ovr.with_unset(o, ovr.Target("domain", "g1"))
    with pytest.raises(InputError, match="not set"):
        ovr.with_unset(o, ovr.Target("vif", "vif3.0"), ["pool"])


def test_expired_override_stops_applying(tmp_path):
    o = ovr.with_set(ovr.Overrides(str(tmp_path / "o.conf")), ovr.Target("domain", "g1"),
                     "rate=20mbit", who="a", for_s=3600, now=NOW)
    item = o.get(ovr.Target("domain", "g1"))
    assert item.expires == NOW + dt.timedelta(hours=1)
    assert o.matching(facts(), NOW + dt.timedelta(minutes=59)) != []
    assert o.matching(facts(), NOW + dt.timedelta(hours=1)) == []
    plan = plan_vif(facts(), policy(tmp_path), None,
                    o.matching(facts(), NOW + dt.timedelta(hours=2)))
    assert plan.inbound.rate_bits_per_s == 5_000_000  # the policy entry again


@pytest.mark.parametrize("spec,token", [("rate=fast", "fast"), ("speed=1mbit", "speed"),
                                        ("", ""), ("latency=5ms,limit=3k", "3k")])
def test_bad_spec_changes_nothing(tmp_path, spec, token):
    o = ovr.Overrides(str(tmp_path / "o.conf"))
    with pytest.raises(InputError) as err:
        ovr.with_set(o, ovr.Target("domain", "g1"), spec, who="a", now=NOW)
    assert repr(token) in str(err.value)
    assert not os.path.exists(o.path)


@pytest.mark.parametrize("text,token,line", [
    ("[nonsense]\nrate = 1mbit\n", "nonsense", 1),
    ("[domain:g1]\nrate = fast\n", "fast", 2),
    ("[domain:g1]\nspeed = 1mbit\n", "speed", 2),
    ("[domain:g1]\nrate = 1mbit\nexpires = tomorrow\n", "tomorrow", 3),
    ("rate = 1mbit\n", "rate", 1),
])
def test_malformed_file_names_line_and_token(tmp_path, text, token, line):
    path = tmp_path / "o.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        ovr.load(str(path))
    assert f"{path}:{line}" in str(err.value) and repr(token) in str(err.value)


def test_missing_file_is_no_overrides(tmp_path):
    assert ovr.load(str(tmp_path / "none.conf")).items == ()


def test_state_dir_variable_moves_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VIF_QOS_STATE_DIR", str(tmp_path / "state"))
    assert ovr.default_path() == str(tmp_path / "state" / "overrides.conf")
