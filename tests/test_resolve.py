"""Resolution: precedence with provenance, derived token buckets, C03 and C08."""

import json
import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from vif_qos.config import policy as policymod
from vif_qos.core import resolve
from vif_qos.config import planning
from vif_qos.errors import ConfigError, InputError
from vif_qos.model import MAX_RATE_BITS_PER_S, VifFacts

XS = "xenstore:backend/vif/3/0/rate"


def load(tmp_path, text):
    path = tmp_path / "vif-qos.conf"
    path.write_text(textwrap.dedent(text))
    return policymod.load_policy(str(path)), str(path)


def facts(**kw):
    base = dict(vif="vif3.0", devid=0, bridge="xenbr0", domid=3, domain_name="web",
                domain_uuid="5c0b0000-0000-0000-0000-000000000001", mac="00:16:3e:00:00:01",
                xen_rate=None, xen_rate_source=XS)
    base.update(kw)
    return VifFacts(**base)


BUILTIN = policymod.Policy()


def test_unshaped_guest():
    plan = resolve.plan_vif(facts(), BUILTIN)
    assert plan.inbound is None and plan.outbound is None and plan.uplink is None
    assert plan.sources == {} and plan.notes == ()
    assert plan.to_json()["inbound"] is None


def test_xen_rate_sets_both_directions_by_default():
    plan = resolve.plan_vif(facts(xen_rate="62500,50000"), BUILTIN)   # xl: 10Mb/s
    assert plan.inbound.rate_bits_per_s == 10 ** 7
    assert plan.outbound.rate_bits_per_s == 10 ** 7
    assert plan.sources["inbound.rate_bits_per_s"] == XS
    assert plan.sources["outbound.rate_bits_per_s"] == XS
    assert plan.uplink.root.rate_bits_per_s == 10 ** 9   # built-in uplink rate
    assert plan.uplink.default.rate_bits_per_s == 10 ** 8
    assert plan.uplink.qdisc_major == 0x7A51 and plan.uplink.device is None


def test_xen_rate_unlimited_interval_zero():
    plan = resolve.plan_vif(facts(xen_rate="4294967295,0"), BUILTIN)
    assert plan.inbound is None and plan.outbound is None


def test_xen_rate_switches(tmp_path):
    p, path = load(tmp_path, "[host]\nxen_rate_inbound = no\n")
    plan = resolve.plan_vif(facts(xen_rate="62500,50000"), p)
    assert plan.inbound is None and plan.outbound.rate_bits_per_s == 10 ** 7
    assert any("not used for inbound (xen_rate_inbound = no, " + path + ":2)" in n
               for n in plan.notes)


def test_bad_xen_rate_names_the_xenstore_key():
    with pytest.raises(InputError) as info:
        resolve.plan_vif(facts(xen_rate="10Mb/s"), BUILTIN)
    assert info.value.source == XS and info.value.token == "10Mb/s"


PRECEDENCE = """\
[defaults]
rate = 1mbit
latency = 20ms
burst = 20k
[pools]
  [[overage]]
  rate = 10mbit
  ceil = 20mbit
[domains]
  [[web]]
  rate_in = 3mbit
  [[mac:00:16:3E:00:00:01]]
  quantum = 4000
"""


def test_precedence_later_wins_and_every_value_has_its_source(tmp_path):
    p, path = load(tmp_path, PRECEDENCE)
    plan = resolve.plan_vif(facts(xen_rate="62500,50000"), p,
                            ("rate_out=4mbit,pool=overage,latency=30ms", "/etc/xen/web.cfg:9"))
    s = plan.sources
    # policy entry [[web]] beats the domain qos, the Xen rate and [defaults]
    assert plan.inbound.rate_bits_per_s == 3 * 10 ** 6 and s["inbound.rate_bits_per_s"] == f"{path}:11"
    # domain qos beats the Xen rate, the pool's member_rate and [defaults]
    assert plan.outbound.rate_bits_per_s == 4 * 10 ** 6
    assert s["outbound.rate_bits_per_s"] == "/etc/xen/web.cfg:9"
    assert plan.inbound.latency_us == 30_000 and s["inbound.latency_us"] == "/etc/xen/web.cfg:9"
    assert plan.inbound.burst_bytes == 20480 and s["inbound.burst_bytes"] == f"{path}:4"
    # the pool gives the member ceil (its ceil, 20mbit)
    assert plan.outbound.pool == "overage" and s["outbound.pool"] == "/etc/xen/web.cfg:9"
    assert plan.outbound.ceil_bits_per_s == 2 * 10 ** 7 and s["outbound.ceil_bits_per_s"] == f"{path}:8"
    assert plan.outbound.quantum_bytes == 4000 and s["outbound.quantum_bytes"] == f"{path}:13"
    assert [c.name for c in plan.uplink.pools] == ["overage"]


def test_pool_member_defaults(tmp_path):
    p, path = load(tmp_path, "[pools]\n[[overage]]\nrate = 10mbit\n[domains]\n[[web]]\npool = overage\n")
    plan = resolve.plan_vif(facts(), p)
    assert plan.inbound is None
    assert plan.outbound.rate_bits_per_s == 100_000          # rate/100
    assert plan.outbound.ceil_bits_per_s == 10 ** 7          # the pool's ceil = its rate
    assert plan.sources["outbound.rate_bits_per_s"] == f"derived: pool overage's rate/100 ({path}:3)"


def test_unknown_pool_from_domain_config():
    with pytest.raises(InputError) as info:
        resolve.plan_vif(facts(), BUILTIN, ("rate=1mbit,pool=nosuch", "/etc/xen/web.cfg:4"))
    assert info.value.token == "nosuch" and info.value.source == "/etc/xen/web.cfg:4"


def test_bad_domain_qos_names_file_and_line():
    with pytest.raises(InputError) as info:
        resolve.plan_vif(facts(), BUILTIN, ("rate=1zbit", "/etc/xen/web.cfg:4"))
    assert str(info.value).startswith("/etc/xen/web.cfg:4: rate: unknown unit")


def test_none_turns_a_direction_off(tmp_path):
    p, _ = load(tmp_path, "[defaults]\nrate = 5mbit\n[domains]\n[[web]]\nrate_out = none\n")
    plan = resolve.plan_vif(facts(), p)
    assert plan.inbound.rate_bits_per_s == 5 * 10 ** 6 and plan.outbound is None


# --- the seed's examples -----------------------------------------------------------

def test_seed_tbf_example_is_corrected_and_says_so():
    # tc qdisc add dev baldr root tbf rate 1mbit latency 50ms peakrate 2mbit maxburst 40MB
    plan = resolve.plan_vif(facts(), BUILTIN,
                            ("rate_in=1mbit,latency=50ms,peak=2mbit,burst=40MB", "--qos"))
    i = plan.inbound
    assert (i.rate_bits_per_s, i.peak_bits_per_s, i.latency_us) == (10 ** 6, 2 * 10 ** 6, 50_000)
    assert i.burst_bytes == 125_000            # 1 s at 1 Mbit/s (max_burst_time)
    assert i.minburst_bytes == 1514            # one full frame
    # 50 ms at 1 Mbit/s; the peak splits GSO packets into frames (minburst 1514).
    assert i.limit_bytes == 6250
    assert plan.outbound is None
    assert any(n.startswith("inbound burst 40MB (--qos) is 335.5 s of traffic at 1mbit: "
                            "corrected to 125000 bytes") for n in plan.notes)
    assert any("has no minburst" in n and "1514 bytes" in n for n in plan.notes)
    assert plan.sources["inbound.burst_bytes"].startswith("corrected (--qos)")


def test_seed_htb_example_1mbit_guest_under_100mbit_uplink(tmp_path):
    p, path = load(tmp_path, "[bridges]\n[[xenbr0]]\nuplink = peth0\nrate = 100mbit\n")
    plan = resolve.plan_vif(facts(), p, ("rate_out=1mbit", "--qos"))
    o, u = plan.outbound, plan.uplink
    assert (u.device, u.root.rate_bits_per_s, u.root.ceil_bits_per_s) == ("peth0", 10 ** 8, 10 ** 8)
    assert (o.rate_bits_per_s, o.ceil_bits_per_s, o.pool) == (10 ** 6, 10 ** 6, None)
    assert o.burst_bytes == 1250 + 1600 and o.cburst_bytes == 1250 + 1600
    assert o.quantum_bytes == 12_500
    assert plan.sources["uplink.rate_bits_per_s"] == f"{path}:4"
    assert plan.notes == ()


# --- C03: big rates stay exact, no bucket is 0 --------------------------------------

@pytest.mark.parametrize("word, bits", [("35gbit", 35 * 10 ** 9), ("40.96gbit", 40_960_000_000),
                                        ("100gbit", 10 ** 11), ("1tbit", 10 ** 12)])
def test_c03_big_rates_exact(tmp_path, word, bits):
    p, _ = load(tmp_path, "[bridges]\nrate = 1tbit\n")
    plan = resolve.plan_vif(facts(), p, (f"rate={word}", "--qos"))
    data = json.loads(json.dumps(plan.to_json()))
    assert data["inbound"]["rate_bits_per_s"] == bits
    assert data["outbound"]["rate_bits_per_s"] == bits
    for part in ("inbound", "outbound"):
        for key, value in data[part].items():
            if value is not None and key not in ("pool", "leaf_qdisc"):
                assert isinstance(value, int) and 0 < value <= max(bits, 2 ** 32 - 1), key
    leaf = data["outbound"]["leaf_qdisc"]
    assert leaf["limit_bytes"] == min(bits * 50_000 // 8_000_000 + 65536, 2 ** 32 - 1)
    assert data["inbound"]["burst_bytes"] == bits // 8 // 100
    assert data["inbound"]["limit_bytes"] <= 2 ** 32 - 1


@settings(max_examples=150, deadline=None)
@given(st.integers(3000, MAX_RATE_BITS_PER_S // 8 - 1).map(lambda b: b * 8),
       st.integers(1, 4_000_000))
def test_any_rate_gives_sane_buckets(rate, latency_us):
    p = policymod.Policy()
    p.bridge_defaults = p.bridge_defaults.__class__("*", None, MAX_RATE_BITS_PER_S, None, None)
    plan = resolve.plan_vif(facts(), p, (f"rate={rate}bit,latency={latency_us}us,peak={rate + 8}bit",
                                         "prop"))
    i, o = plan.inbound, plan.outbound
    frame = p.frame_bytes
    assert i.rate_bits_per_s == rate and o.rate_bits_per_s == rate
    for size in (i.burst_bytes, i.limit_bytes, i.minburst_bytes, o.burst_bytes, o.cburst_bytes,
                 o.quantum_bytes):
        assert frame <= size <= 2 ** 32 - 1
    assert i.burst_bytes * 8 * 10 ** 6 <= max(frame * 8 * 10 ** 6, rate * 10 ** 6)  # <= 1 s
    assert o.quantum_bytes <= 200_000


# --- C08: every kernel-refused combination is refused or corrected -------------------

CORRECTED = [
    # (qos spec, expected plan values, words in a note)
    ("rate_in=1mbit,peak=2mbit", {"inbound.minburst_bytes": 1514}, "has no minburst"),
    ("rate_in=1mbit,peak=2mbit,minburst=1000", {"inbound.minburst_bytes": 1514},
     "below one full frame"),
    ("rate_in=1mbit,burst=1000", {"inbound.burst_bytes": 1514}, "below one full frame"),
    ("rate_out=1mbit,burst=1000", {"outbound.burst_bytes": 1514}, "below one full frame"),
    ("rate_out=1mbit,cburst=100", {"outbound.cburst_bytes": 1514}, "below one full frame"),
    ("rate_in=1mbit,burst=40MB", {"inbound.burst_bytes": 125_000}, "335.5 s of traffic"),
    ("rate_out=1mbit,burst=40MB", {"outbound.burst_bytes": 125_000}, "335.5 s of traffic"),
    ("rate_in=1mbit,peak=2mbit,minburst=1m", {"inbound.minburst_bytes": 250_000},
     "of traffic at 2mbit"),
    ("rate_in=1mbit,limit=100", {"inbound.limit_bytes": 1514}, "cannot hold one full frame"),
    ("rate_in=1tbit,latency=1s", {"inbound.limit_bytes": 2 ** 32 - 1}, "32-bit field"),
    ("rate_out=1mbit,quantum=100", {"outbound.quantum_bytes": 1514}, "below one full frame"),
    ("rate_out=1gbit,quantum=1m", {"outbound.quantum_bytes": 200_000}, "above 200000"),
    ("rate_out=1mbit,ceil=10tbit", None, None),   # refused by units: above 1tbit
    ("rate_out=1mbit,ceil=2gbit", {"outbound.ceil_bits_per_s": 10 ** 9}, "above the uplink"),
    ("rate_out=2gbit", {"outbound.rate_bits_per_s": 10 ** 9}, "above the uplink"),
    ("rate_in=1mbit,minburst=2000", {"inbound.minburst_bytes": None}, "no effect without a peak"),
]


@pytest.mark.parametrize("text, expected, note", CORRECTED)
def test_c08_corrections_are_made_and_said(text, expected, note):
    if expected is None:
        with pytest.raises(InputError):
            resolve.plan_vif(facts(), BUILTIN, (text, "--qos"))
        return
    plan = resolve.plan_vif(facts(), BUILTIN, (text, "--qos"))
    data = plan.to_json()
    for dotted, value in expected.items():
        part, key = dotted.split(".")
        assert data[part][key] == value, dotted
    assert any(note in n for n in plan.notes), plan.notes


REFUSED = [
    ("rate_in=1mbit,peak=1mbit", "1mbit", "peak must be above rate_in"),    # sch_tbf.c EINVAL
    ("rate_in=2mbit,peak=1mbit", "1mbit", "peak must be above rate_in"),
    ("rate_in=0bit", "0bit", "below 1 byte/s"),                              # rounds to 0
    ("rate_in=4bit", "4bit", "below 1 byte/s"),
    ("rate=12bit", "12bit", "not a whole number of bytes"),
    ("rate_in=2kbit", "2kbit", "too slow"),                                  # a frame > 4.29 s
    ("rate_out=2kbit", "2kbit", "too slow"),
    ("latency=50ms,limit=10k,rate_in=1mbit", "10k", "latency or limit"),    # tc: Double spec
    ("rate_out=2mbit,ceil=1mbit", "1mbit", "ceil is below rate_out"),
    ("rate_in=1mbit,burst=0", "0", "must not be 0"),
    ("rate_in=1mbit,latency=0ms", "0ms", "must not be 0"),
]


@pytest.mark.parametrize("text, token, why", REFUSED)
def test_c08_refusals_name_token_and_source(text, token, why):
    with pytest.raises(InputError) as info:
        resolve.plan_vif(facts(), BUILTIN, (text, "/etc/xen/web.cfg:3"))
    assert why in info.value.message
    assert info.value.token == token
    assert info.value.source == "/etc/xen/web.cfg:3"


def test_c08_peak_not_above_a_rate_from_elsewhere_is_dropped(tmp_path):
    p, path = load(tmp_path, "[defaults]\npeak = 2mbit\n")
    plan = resolve.plan_vif(facts(), p, ("rate_in=10mbit", "--qos"))
    assert plan.inbound.peak_bits_per_s is None and plan.inbound.minburst_bytes is None
    assert any(f"peak 2mbit ({path}:2) is not above rate 10mbit (--qos)" in n for n in plan.notes)


def test_c08_ceil_below_a_rate_from_elsewhere_is_raised(tmp_path):
    p, path = load(tmp_path, "[defaults]\nceil = 2mbit\n")
    plan = resolve.plan_vif(facts(), p, ("rate_out=10mbit", "--qos"))
    assert plan.outbound.ceil_bits_per_s == 10 ** 7
    assert any("corrected to the rate" in n for n in plan.notes)


def test_c08_limit_from_a_higher_layer_replaces_latency(tmp_path):
    p, _ = load(tmp_path, "[defaults]\nlatency = 50ms\n")
    plan = resolve.plan_vif(facts(), p, ("rate_in=1mbit,burst=10k,limit=16k", "--qos"))
    assert plan.inbound.limit_bytes == 16384
    assert plan.inbound.latency_us == 16384 * 8   # us at 1 Mbit/s
    assert plan.sources["inbound.latency_us"].startswith("derived: limit / rate")


def test_tbf_always_has_latency_and_limit():
    plan = resolve.plan_vif(facts(), BUILTIN, ("rate_in=8mbit", "--qos"))
    assert plan.inbound.latency_us == 50_000 and plan.sources["inbound.latency_us"] == "built-in default"
    assert plan.inbound.limit_bytes == 50_000   # 50 ms at 8 Mbit/s
    # At 100 Mbit/s the 125000-byte bucket takes GSO packets whole: rate * latency
    # still holds the largest (69406 bytes).
    plan = resolve.plan_vif(facts(), BUILTIN, ("rate_in=100mbit", "--qos"))
    assert plan.inbound.limit_bytes == 625_000
    plan = resolve.plan_vif(facts(), BUILTIN, ("rate_in=1mbit,burst=100k", "--qos"))
    assert plan.inbound.limit_bytes == 69406   # one GSO packet, above 6250


# --- plan_for_facts: the domain config file ----------------------------------------

def test_plan_for_facts_reads_the_domain_config(tmp_path):
    etc = tmp_path / "xen"
    etc.mkdir()
    (etc / "web.cfg").write_text("name = 'web'\nvif = ['bridge=xenbr0', 'bridge=xenbr0']\n"
                                 "qos = [ 'rate=2mbit',\n        'rate_in=3mbit' ]\n")
    (etc / "zz-copy.cfg").write_text("name = \"web\"\n")   # sorts after web.cfg
    p, _ = load(tmp_path, f"[host]\ndomain_config_dirs = {etc}\n")
    plan0 = planning.plan_for_facts(facts(devid=0), p)
    assert plan0.inbound.rate_bits_per_s == 2 * 10 ** 6
    assert plan0.sources["inbound.rate_bits_per_s"] == f"{etc}/web.cfg:3"
    plan1 = planning.plan_for_facts(facts(devid=1, vif="vif3.1"), p)
    assert plan1.inbound.rate_bits_per_s == 3 * 10 ** 6 and plan1.outbound is None
    assert plan1.sources["inbound.rate_bits_per_s"] == f"{etc}/web.cfg:4"
    assert any(f"also named in {etc}/zz-copy.cfg: using {etc}/web.cfg" in n
               for n in plan1.notes)
    plan2 = planning.plan_for_facts(facts(devid=2, vif="vif3.2"), p)
    assert plan2.inbound is None


def test_plan_for_facts_broken_domain_config(tmp_path):
    (tmp_path / "web.cfg").write_text("name = 'web'\nqos = 'rate=1mbit'\n")
    p, _ = load(tmp_path, f"[host]\ndomain_config_dirs = {tmp_path}\n")
    with pytest.raises(ConfigError) as info:
        planning.plan_for_facts(facts(), p)
    assert info.value.source == f"{tmp_path}/web.cfg:2"


def test_plan_for_facts_without_domain_name_uses_xen_rate_only():
    plan = planning.plan_for_facts(facts(domain_name=None, xen_rate="100000,50000"), BUILTIN)
    assert plan.inbound.rate_bits_per_s == 16 * 10 ** 6


def test_pool_and_default_class_clamped_to_the_uplink(tmp_path):
    p, _ = load(tmp_path, "[bridges]\nrate = 100mbit\ndefault_ceil = 1gbit\ndefault_rate = 500mbit\n"
                          "[pools]\n[[big]]\nrate = 200mbit\n")
    plan = resolve.plan_vif(facts(), p, ("rate_out=1mbit", "--qos"))
    u = plan.uplink
    assert (u.default.rate_bits_per_s, u.default.ceil_bits_per_s) == (10 ** 8, 10 ** 8)
    assert (u.pools[0].rate_bits_per_s, u.pools[0].ceil_bits_per_s) == (10 ** 8, 10 ** 8)
    assert sum("corrected to" in n for n in plan.notes) == 4


SPEC_VALUES = {
    "rate": ["1mbit", "100gbit", "none", "10Mb/s@50ms", "3kbit"],
    "rate_in": ["2mbit", "none", "1tbit"],
    "rate_out": ["500kbit", "none", "40gbit"],
    "burst": ["1", "15k", "40MB", "4g"],
    "latency": ["1us", "50ms", "4000s"],
    "limit": ["1", "64k", "1g"],
    "peak": ["1mbit", "3mbit", "1tbit"],
    "minburst": ["1", "3000", "1m"],
    "ceil": ["1mbit", "20mbit", "1tbit"],
    "cburst": ["1", "1m"],
    "quantum": ["1", "8000", "1m"],
    "pool": ["overage", "none", "nosuch"],
}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(SPEC_VALUES)), st.integers(0, 4), max_size=7),
       st.sampled_from([None, "62500,50000", "1,0"]))
def test_any_spec_gives_a_kernel_safe_plan_or_an_input_error(choice, xen_rate):
    p = policymod.check_policy_text("[pools]\n[[overage]]\nrate = 10mbit\n", "p.conf")[0]
    text = ",".join(f"{k}={SPEC_VALUES[k][i % len(SPEC_VALUES[k])]}" for k, i in choice.items())
    try:
        plan = resolve.plan_vif(facts(xen_rate=xen_rate), p, (text, "prop"))
    except InputError as err:
        assert err.source in ("prop", XS) and err.token is not None
        return
    frame = p.frame_bytes
    i, o = plan.inbound, plan.outbound
    if i is not None:
        assert 8 <= i.rate_bits_per_s <= MAX_RATE_BITS_PER_S
        assert frame <= i.burst_bytes <= 2 ** 32 - 1 and frame <= i.limit_bytes <= 2 ** 32 - 1
        assert (i.peak_bits_per_s is None) == (i.minburst_bytes is None)
        if i.peak_bits_per_s is not None:
            assert i.peak_bits_per_s > i.rate_bits_per_s and i.minburst_bytes >= frame
        assert i.latency_us >= 0
    if o is not None:
        assert o.rate_bits_per_s <= o.ceil_bits_per_s <= plan.uplink.root.rate_bits_per_s
        assert frame <= o.burst_bytes <= 2 ** 32 - 1 and frame <= o.cburst_bytes <= 2 ** 32 - 1
        assert frame <= o.quantum_bytes <= 200_000
        assert plan.uplink is not None
    else:
        assert plan.uplink is None
    assert all(key.split(".")[0] in ("inbound", "outbound", "uplink") for key in plan.sources)


def test_xen_rate_not_whole_bytes_is_noted():
    plan = resolve.plan_vif(facts(xen_rate="1000,3000"), BUILTIN)   # 333333.33 bytes/s
    assert plan.inbound.rate_bits_per_s == 333_333 * 8
    assert any("not a whole number of bytes per second" in n for n in plan.notes)


def test_xl_form_in_a_spec_means_what_the_xen_rate_means():
    from_spec = resolve.plan_vif(facts(), BUILTIN, ("rate=10MB/s@50ms", "--qos"))
    from_xen = resolve.plan_vif(facts(xen_rate="500000,50000"), BUILTIN)
    assert from_spec.inbound == from_xen.inbound and from_spec.outbound == from_xen.outbound


# --- leaf qdisc: the outbound queue bounded in time by the same latency -------------

def test_leaf_qdisc_takes_one_gso_packet_at_a_short_latency(tmp_path):
    p, _ = load(tmp_path, "[defaults]\nlatency = 1ms\n")
    leaf = resolve.plan_vif(facts(), p, ("rate=1mbit", "--qos")).outbound.leaf_qdisc
    assert leaf.limit_bytes == 69406   # 125 + 65536 would refuse a 64 KiB GSO packet


def test_gso_packet_wire_bytes_counts_headers_per_segment():
    # 46 segments of at most 1428 bytes (mtu 1500 - IPv6 40 - TCP 32) carry 64 KiB;
    # the 45 after the first each add 86 header bytes.
    from vif_qos.core import sizing

    assert sizing.gso_packet_wire_bytes(1500) == 65536 + 45 * 86
    assert sizing.gso_packet_wire_bytes(9000) == 65536 + 7 * 86


@pytest.mark.parametrize("word, bits, limit", [
    ("1mbit", 10 ** 6, 6250 + 65536),          # rate * latency + 64 KiB
    ("10mbit", 10 ** 7, 62_500 + 65536),
    ("100mbit", 10 ** 8, 625_000 + 65536),
    ("1gbit", 10 ** 9, 6_250_000 + 65536)])
def test_leaf_qdisc_limit_from_latency(tmp_path, word, bits, limit):
    p, path = load(tmp_path, "[host]\nleaf_qdisc = bfifo\n[bridges]\nrate = 10gbit\n")
    plan = resolve.plan_vif(facts(), p, (f"rate={word}", "--qos"))
    leaf = plan.outbound.leaf_qdisc
    assert (leaf.kind, leaf.latency_us, leaf.limit_bytes) == ("bfifo", 50_000, limit)
    assert plan.sources["outbound.leaf_qdisc.kind"] == f"{path}:2"
    assert plan.sources["outbound.leaf_qdisc.latency_us"] == "built-in default"
    assert plan.sources["outbound.leaf_qdisc.limit_bytes"].startswith("derived: ")
    # The same latency sizes the TBF (inbound) and the leaf qdisc (outbound).
    assert plan.inbound.latency_us == leaf.latency_us


def test_leaf_qdisc_latency_setting_and_default_class(tmp_path):
    p, path = load(tmp_path, "[defaults]\nlatency = 20ms\n[bridges]\nrate = 1gbit\n")
    plan = resolve.plan_vif(facts(), p, ("rate=1gbit,latency=10ms", "--qos"))
    leaf = plan.outbound.leaf_qdisc
    assert (leaf.kind, leaf.latency_us, leaf.limit_bytes) == ("auto", 10_000, 1_250_000 + 65536)
    assert (leaf.target_us, leaf.interval_us) == (1000, 20_000)
    assert plan.sources["outbound.leaf_qdisc.latency_us"] == "--qos"
    default = plan.uplink.default.leaf_qdisc
    # The default class (100 Mbit/s) takes the policy's [defaults] latency.
    assert (default.latency_us, default.limit_bytes) == (20_000, 250_000 + 65536)
    assert plan.uplink.root.leaf_qdisc is None
    assert plan.sources["uplink.default.leaf_qdisc.latency_us"] == f"{path}:2"


def test_leaf_qdisc_fq_codel_target_at_least_one_frame(tmp_path):
    p, _ = load(tmp_path, "[host]\nleaf_qdisc = fq_codel\n")
    leaf = resolve.plan_vif(facts(), p, ("rate=1mbit", "--qos")).outbound.leaf_qdisc
    # 1514 bytes take 12.112 ms at 1 Mbit/s: above latency/10 = 5 ms.
    assert (leaf.kind, leaf.target_us, leaf.interval_us) == ("fq_codel", 12112, 100_000)
