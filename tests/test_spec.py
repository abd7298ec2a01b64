"""qos spec strings: grammar, aliases, refusals, round trips."""

import pytest
from hypothesis import given, strategies as st

from vif_qos.core import spec
from vif_qos.errors import InputError


def values(text):
    return spec.spec_values(spec.parse_spec(text, "--qos"))


def test_seed_tbf_example_is_a_spec():
    # tc qdisc add dev baldr root tbf rate 1mbit latency 50ms peakrate 2mbit maxburst 40MB
    assert values("rate_in=1mbit,latency=50ms,peak=2mbit,burst=40MB") == {
        "rate_in": 1_000_000, "latency": 50_000, "peak": 2_000_000, "burst": 40 * 1048576}
    # tc's own words work too
    assert values("rate_in=1mbit, latency=50ms, peakrate=2mbit, maxburst=40MB") == {
        "rate_in": 1_000_000, "latency": 50_000, "peak": 2_000_000, "burst": 40 * 1048576}


def test_rate_sets_both_directions_and_specific_keys_win_in_any_order():
    assert values("rate=10mbit") == {"rate_in": 10 ** 7, "rate_out": 10 ** 7}
    assert values("rate_in=1mbit,rate=10mbit") == {"rate_in": 10 ** 6, "rate_out": 10 ** 7}
    assert values("rate=10mbit,rate_out=none") == {"rate_in": 10 ** 7, "rate_out": None}


def test_xl_form_on_rate_keys():
    assert values("rate=10Mb/s@50ms") == {"rate_in": 10 ** 7, "rate_out": 10 ** 7}
    assert values("rate_out=2MB/s") == {"rate_out": 16 * 10 ** 6}


def test_outbound_keys_and_pool():
    assert values("rate_out=1mbit,ceil=10mbit,cburst=20k,quantum=3000,pool=overage") == {
        "rate_out": 10 ** 6, "ceil": 10 ** 7, "cburst": 20480, "quantum": 3000,
        "pool": "overage"}
    assert values("pool=none") == {"pool": None}


def test_empty_items_are_ignored_and_provenance_kept():
    parsed = spec.parse_spec(" rate_in = 1mbit ,, ", "/etc/xen/auto/web:7")
    item = parsed["rate_in"]
    assert (item.value, item.token, item.source, item.written_as) == (
        10 ** 6, "1mbit", "/etc/xen/auto/web:7", "rate_in")
    assert spec.parse_spec("", "x") == {}


@pytest.mark.parametrize("text, token, why", [
    ("rate=1zbit", "1zbit", "unknown unit"),
    ("speed=1mbit", "speed", "unknown qos key"),
    ("rate", "rate", "not key=value"),
    ("burst=none", "none", "not a number"),
    ("rate=1mbit,rate=2mbit", "2mbit", "given twice"),
    ("burst=10k,maxburst=20k", "20k", "given twice"),
    ("latency=50ms,limit=10k", "10k", "latency or limit"),
    ("pool=over age", "over age", "not a pool name"),
    ("rate=1.5Mb/s", "1.5Mb/s", "invalid rate"),
    ("rate=1B/s", "1B/s", "below 1 byte/s"),
    ("peak=none", "none", "not a number"),
])
def test_bad_specs_name_token_and_source(text, token, why):
    with pytest.raises(InputError) as info:
        spec.parse_spec(text, "/etc/xen/auto/web.cfg:12")
    assert why in info.value.message
    assert info.value.token == token
    assert info.value.source == "/etc/xen/auto/web.cfg:12"


rates = st.integers(1, 10 ** 11).map(lambda b: b * 8)
sizes = st.integers(1, 2 ** 32 - 1)
times = st.integers(1, 2 ** 32 - 1)
spec_dicts = st.fixed_dictionaries({}, optional={
    "rate_in": st.one_of(st.none(), rates), "rate_out": st.one_of(st.none(), rates),
    "burst": sizes, "latency": times, "peak": rates, "minburst": sizes, "ceil": rates,
    "cburst": sizes, "quantum": sizes,
    "pool": st.one_of(st.none(), st.from_regex(r"\A[a-z][a-z0-9_-]{0,10}\Z")),
})


@given(spec_dicts)
def test_round_trip(d):
    assert spec.spec_values(spec.parse_spec(spec.format_spec(d), "prop")) == d


@given(st.text(max_size=40))
def test_arbitrary_text_raises_only_input_error(text):
    try:
        spec.parse_spec(text, "fuzz")
    except InputError:
        pass


@given(st.lists(st.tuples(st.sampled_from(spec.KEY_WORDS + ("bogus",)),
                          st.sampled_from(["1mbit", "15k", "50ms", "none", "x", "10Mb/s",
                                           "overage", "0"])), max_size=5))
def test_key_value_mixtures_raise_only_input_error(pairs):
    text = ",".join(f"{k}={v}" for k, v in pairs)
    try:
        spec.parse_spec(text, "fuzz")
    except InputError:
        pass


def test_unknown_pool_is_one_check_with_one_message_everywhere(tmp_path):
    """The policy file, a domain config file's qos entry, a plan and ``set``/``assign``
    refuse an unknown pool through spec.unknown_pool, with the same words."""
    from vif_qos.cli.check_config import check_domain_configs
    from vif_qos.config.policy import check_policy_text
    from vif_qos.core.resolve import plan_vif
    from vif_qos.model import VifFacts
    from vif_qos.xen.reload import _check_pool

    item = spec.parse_spec("pool=gold", "here")["pool"]
    err = spec.unknown_pool(item, ["overage", "bulk"])
    assert err.one_line() == "here: pool: unknown pool (defined: overage, bulk): 'gold'"
    assert isinstance(err, InputError) and err.exit_status == 2
    assert spec.unknown_pool(item, []).message.endswith("(defined: none)")
    assert spec.unknown_pool(item, ["gold"]) is None
    assert spec.unknown_pool(spec.parse_spec("pool=none", "x")["pool"], []) is None
    assert spec.unknown_pool(None, []) is None

    want = "pool: unknown pool (defined: overage): 'gold'"
    xen = tmp_path / "xen"
    xen.mkdir()
    (xen / "g.cfg").write_text('name = "g"\nqos = [ "pool=gold" ]\n')
    text = (f"[host]\ndomain_config_dirs = {xen}\n[pools]\n[[overage]]\nrate = 10mbit\n")
    policy, problems = check_policy_text(text, "p.conf")
    assert problems == []
    _policy, problems = check_policy_text(text + "[defaults]\npool = gold\n", "p.conf")
    assert [p.one_line() for p in problems] == [f"p.conf:7: {want}"]
    _checked, problems = check_domain_configs(policy)
    assert [p.one_line() for p in problems] == [f"{xen}/g.cfg:2: {want}"]
    with pytest.raises(InputError) as planned:
        plan_vif(VifFacts(vif="vif1.0", devid=0, domain_name="g"), policy, ("pool=gold", "q"))
    assert planned.value.one_line() == f"q: {want}"
    with pytest.raises(InputError) as assigned:
        _check_pool("rate=1mbit,pool=gold", policy)
    assert assigned.value.one_line() == f"SPEC: {want}"
    _check_pool("pool=none", policy)  # out of every pool: fine
