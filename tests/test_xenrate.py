"""Xen's vif rate= (cases.md C01): xl's own parse, the backend key, netback's reading."""

import pytest
from hypothesis import given, strategies as st

from vif_qos.core import xenrate
from vif_qos.errors import InputError


# xl's own test vectors (tools/xl/check-xl-vif-parse) and cases.md C01.
@pytest.mark.parametrize("text, backend", [
    ("16000000b/s", "100000,50000"),
    ("16000000b/s@50ms", "100000,50000"),
    ("2000000B/s", "100000,50000"),
    ("2000000B/s@50ms", "100000,50000"),
    ("16Kb/s", "100,50000"),
    ("16Kb/s@50ms", "100,50000"),
    ("2KB/s", "100,50000"),
    ("2KB/s@50ms", "100,50000"),
    ("16Mb/s", "100000,50000"),
    ("16Mb/s@50ms", "100000,50000"),
    ("2MB/s", "100000,50000"),
    ("2MB/s@50ms", "100000,50000"),
    ("8Gb/s", "50000000,50000"),
    ("8Gb/s@50ms", "50000000,50000"),
    ("1GB/s", "50000000,50000"),
    ("1GB/s@50ms", "50000000,50000"),
    ("80Mb/s@1s", "10000000,1000000"),
    ("10MB/s@1s", "10000000,1000000"),
    ("3MB/s", "150000,50000"),
    ("10MB/s@50ms", "500000,50000"),     # 500 kB per 50 ms, not 50 kB
    ("10Mb/s", "62500,50000"),           # 1.25 MB/s, not 10 MB/s
    ("10MB/s@50", "500000000,50000000"),  # @50 with no unit is 50 SECONDS
    ("10MB/s@50m", "500000,50000"),      # m = ms
    ("10MB/s@50u", "500,50"),            # u = us
    ("10MB/s@50us", "500,50"),
    ("010MB/s", "400000,50000"),         # strtoull base 0: a leading 0 is octal
    ("1B/s", "0,50000"),                 # xl accepts this and writes 0 bytes
])
def test_xl_strings_give_what_xl_writes(text, backend):
    assert xenrate.parse_xl_rate(text, "vif rate") == backend


@pytest.mark.parametrize("text", [
    "foo", "10MB", "10MB/m", "10ZB", "10ZB/s", "10ZB/m", "0B/s", "1B/s@0us",
    "10Mb/s@foo", "10Mb/s@10h", "10MB/s@foo", "10MB/s@10h", "1.5Mb/s",
    "4294967296b/s", "4294967296Kb/s", "4294967296Mb/s", "4294967296Gb/s",
    "1B/s@4294967296us", "1B/s@4294968ms", "1B/s@4295s",
    "4294967295GB/s@5us", "4296MB/s@4294s", "@", "", "10Mb/s@", "10mb/s",
    "10Mb/s ", " 10Mb/s", "08Mb/s",
])
def test_strings_xl_refuses_are_refused_with_token_and_source(text):
    with pytest.raises(InputError) as info:
        xenrate.parse_xl_rate(text, "--xen-rate")
    assert info.value.token == text
    assert info.value.source == "--xen-rate"


@pytest.mark.parametrize("value, bits", [
    ("100000,50000", 16_000_000),
    ("62500,50000", 10_000_000),
    ("500000,50000", 80_000_000),
    ("10000000,1000000", 80_000_000),
    ("50000000,50000", 8_000_000_000),
    ("625000000,50000", 100_000_000_000),   # 100 Gbit/s: exact, beyond 32 bits
    ("1,3", 333_333 * 8),                    # truncated to whole bytes per second
])
def test_backend_rate_in_bits_per_second(value, bits):
    assert xenrate.parse_backend_rate(value, "xenstore:backend/vif/3/0/rate") == bits


def test_interval_zero_means_unlimited():
    assert xenrate.parse_backend_rate("4294967295,0", "xs") is None


@pytest.mark.parametrize("value", ["", "1", "1,", ",1", "1,2,3", " 1,2", "1, 2", "-1,2",
                                   "0x10,5", "0,50000", "1,2000000", "125000000000,1"])
def test_bad_backend_rates(value):
    with pytest.raises(InputError) as info:
        xenrate.parse_backend_rate(value, "xenstore:backend/vif/3/0/rate")
    assert info.value.source == "xenstore:backend/vif/3/0/rate"


def test_whole_bytes_detection():
    assert xenrate.backend_rate_is_whole("62500,50000")
    assert not xenrate.backend_rate_is_whole("1,3")


def test_xl_rate_bits_per_s():
    assert xenrate.xl_rate_bits_per_s("10Mb/s@50ms") == 10_000_000
    with pytest.raises(InputError, match="below 1 byte/s"):
        xenrate.xl_rate_bits_per_s("1B/s")


# --- properties -----------------------------------------------------------------

def reference(number, mult, unit, interval_us):
    """xl's arithmetic written out plainly."""
    bytes_per_s = number * {"": 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}[mult]
    if unit == "b":
        bytes_per_s //= 8
    if bytes_per_s > (2 ** 64 - 1) // interval_us:
        return None  # xl: "rate overflow"
    return f"{bytes_per_s * interval_us // 10 ** 6},{interval_us}"


@given(st.integers(1, 2 ** 32 - 1), st.sampled_from(["", "K", "M", "G"]),
       st.sampled_from(["B", "b"]), st.integers(1, 2 ** 32 - 1))
def test_xl_arithmetic_matches_reference(number, mult, unit, interval_us):
    text = f"{number}{mult}{unit}/s@{interval_us}us"
    expected = reference(number, mult, unit, interval_us)
    if expected is None:
        with pytest.raises(InputError, match="rate overflow"):
            xenrate.parse_xl_rate(text)
    else:
        assert xenrate.parse_xl_rate(text) == expected


@given(st.integers(1, 2 ** 32 - 1), st.integers(1, 2 ** 32 - 1))
def test_format_round_trip(bytes_per_s, interval_us):
    text = xenrate.format_xl_rate(bytes_per_s, interval_us)
    assert xenrate.parse_xl_rate_parts(text) == (bytes_per_s * interval_us // 10 ** 6, interval_us)


@given(st.text(max_size=25))
def test_arbitrary_text_raises_only_input_error(text):
    for parse in (xenrate.parse_xl_rate, xenrate.parse_backend_rate):
        try:
            parse(text, "fuzz")
        except InputError:
            pass


@given(st.from_regex(r"\A[0-9]{1,12}[GMK]?[Bb]/s(@[0-9]{1,11}[mu]?s?)?\Z"))
def test_xl_shaped_text_raises_only_input_error(text):
    try:
        value = xenrate.parse_xl_rate(text, "fuzz")
    except InputError:
        return
    per_interval, interval = value.split(",")
    assert int(interval) > 0 and int(per_interval) >= 0
