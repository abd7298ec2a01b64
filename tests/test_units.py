"""tc unit words (cases.md C02, C03): exact meanings, refusals, round trips."""

import pytest
from hypothesis import given, strategies as st

from vif_qos.core import units
from vif_qos.errors import InputError
from vif_qos.model import MAX_RATE_BITS_PER_S


@pytest.mark.parametrize("text, bits", [
    ("1mbit", 1_000_000),            # 125000 bytes/s
    ("1MBIT", 1_000_000),            # case-insensitive like tc's strcasecmp
    ("2mbps", 16_000_000),           # BYTES per second: the netdev report's 16 Mbit
    ("1kbit", 1000),
    ("1kibit", 1024),
    ("1Kibit", 1024),
    ("1mibit", 1024 ** 2),
    ("1gbit", 10 ** 9),
    ("1gibit", 1024 ** 3),
    ("10kbps", 80_000),
    ("1kibps", 8192),
    ("1bps", 8),
    ("8bit", 8),
    ("8", 8),                         # a bare number is bits/s, as in tc
    ("1.5mbit", 1_500_000),
    ("35gbit", 35 * 10 ** 9),         # C03: above 2**32-1 bytes/s, exact
    ("40.96gbit", 40_960_000_000),
    ("100gbit", 10 ** 11),
    ("100Gbit", 10 ** 11),
    ("12.5gbps", 10 ** 11),
    ("1tbit", 10 ** 12),
    (" 1mbit ", 1_000_000),
])
def test_rate_words_mean_what_tc_means(text, bits):
    assert units.parse_rate(text, "test") == bits


@pytest.mark.parametrize("text, why", [
    ("", "not a number"),
    ("mbit", "not a number"),
    ("1 mbit", "not a number"),
    ("-1mbit", "not a number"),
    ("1e6bit", "not a number"),
    ("0x10mbit", "not a number"),
    ("10zbit", "unknown unit"),
    ("1mb", "unknown unit"),          # mb is a size word, not a rate word
    ("0mbit", "below 1 byte/s"),
    ("0", "below 1 byte/s"),
    ("7bit", "below 1 byte/s"),       # rounds to 0 bytes/s in the kernel
    ("0.001kbit", "below 1 byte/s"),
    ("12bit", "not a whole number of bytes"),
    ("1.0001kbit", "not a whole number of bytes"),
    ("1.001tbit", "above the largest rate"),
    ("2tbit", "above the largest rate"),
])
def test_bad_rates_are_refused_naming_token_and_source(text, why):
    with pytest.raises(InputError) as info:
        units.parse_rate(text, "/etc/xen/vif-qos.conf:7", "rate_in")
    err = info.value
    assert why in err.message
    assert err.token == text and err.source == "/etc/xen/vif-qos.conf:7"
    assert str(err).startswith("/etc/xen/vif-qos.conf:7: rate_in:")
    assert err.exit_status == 2


@pytest.mark.parametrize("text, size", [
    ("1514", 1514),
    ("1514b", 1514),
    ("1k", 1024), ("1kb", 1024), ("1KB", 1024),
    ("1m", 1048576), ("40MB", 40 * 1048576),
    ("1g", 1024 ** 3), ("1gb", 1024 ** 3),
    ("32kbit", 4096),                 # C02: kbit as a size is 128 bytes
    ("1mbit", 131072),
    ("1gbit", 134217728),
    ("1.5k", 1536),
    ("4294967295", 2 ** 32 - 1),
])
def test_size_words(text, size):
    assert units.parse_size(text, "t") == size


@pytest.mark.parametrize("text, why", [
    ("0", "must not be 0"), ("0k", "must not be 0"),
    ("1.3kb", "not a whole number of bytes"), ("0.5", "not a whole number"),
    ("4g", "above 4294967295"), ("4294967296", "above"),
    ("10kbps", "unknown unit"), ("1t", "unknown unit"), ("k", "not a number"),
])
def test_bad_sizes(text, why):
    with pytest.raises(InputError, match=why):
        units.parse_size(text, "t", "burst")


@pytest.mark.parametrize("text, usecs", [
    ("50ms", 50_000), ("50MS", 50_000), ("50msec", 50_000), ("50msecs", 50_000),
    ("1s", 1_000_000), ("1sec", 1_000_000), ("2secs", 2_000_000),
    ("400us", 400), ("400usec", 400), ("400", 400),   # bare number: microseconds
    ("0.1ms", 100), ("1.5s", 1_500_000),
])
def test_time_words(text, usecs):
    assert units.parse_time(text, "t") == usecs


@pytest.mark.parametrize("text, why", [
    ("0ms", "must not be 0"), ("0.5us", "whole number of microseconds"),
    ("5000s", "above"), ("50m", "unknown unit"), ("1h", "unknown unit"),
])
def test_bad_times(text, why):
    with pytest.raises(InputError, match=why):
        units.parse_time(text, "t", "latency")


def test_non_string_values_are_input_errors():
    with pytest.raises(InputError, match="single value"):
        units.parse_rate(["1mbit", "2mbit"], "policy:3")


def test_human_output_shows_exact_numbers():
    assert units.human_rate(10 ** 11) == "100000000000 bit/s (100gbit, 12500000000 bytes/s)"
    assert units.human_size(131072) == "131072 bytes (128kb)"
    assert units.human_size(1514) == "1514 bytes"
    assert units.human_time(50_000) == "50000 us (50ms)"


# --- properties -----------------------------------------------------------------

whole_byte_rates = st.integers(min_value=1, max_value=MAX_RATE_BITS_PER_S // 8).map(lambda b: b * 8)


@given(whole_byte_rates)
def test_rate_round_trip(bits):
    assert units.parse_rate(units.format_rate(bits)) == bits


@given(st.integers(min_value=1, max_value=units.U32_MAX))
def test_size_round_trip(size):
    assert units.parse_size(units.format_size(size)) == size


@given(st.integers(min_value=1, max_value=units.U32_MAX))
def test_time_round_trip(usecs):
    assert units.parse_time(units.format_time(usecs)) == usecs


@given(st.integers(min_value=1, max_value=10 ** 12), st.sampled_from(sorted(units.RATE_UNITS)))
def test_rate_is_exact_product_or_refused(number, unit):
    text = f"{number}{unit}"
    exact = number * units.RATE_UNITS[unit]
    try:
        got = units.parse_rate(text)
    except InputError:
        assert exact < 8 or exact > MAX_RATE_BITS_PER_S or exact % 8
    else:
        assert got == exact


@given(st.text(max_size=30))
def test_arbitrary_text_raises_only_input_error(text):
    for parse in (units.parse_rate, units.parse_size, units.parse_time):
        try:
            value = parse(text, "fuzz")
        except InputError as err:
            assert "\n" not in err.one_line()
        else:
            assert isinstance(value, int) and value > 0
