"""Xen's vif ``rate=``: the xl string and the backend xenstore key.

Two forms of the same limit:

- the xl form an admin writes on the vif line, ``RATE/s[@INTERVAL]``
  (``10Mb/s@50ms``), parsed by :func:`parse_xl_rate` exactly as
  ``xlu_vif_parse_rate`` in Xen's ``tools/libs/util/libxlu_vif.c`` does, into
- the backend key ``rate`` libxl writes (``tools/libs/light/libxl_nic.c``:
  ``"%"PRIu64",%"PRIu32`` of bytes per interval and interval in microseconds),
  read by :func:`parse_backend_rate` as netback does
  (``drivers/net/xen-netback/xenbus.c`` ``xen_net_read_rate``).

xl's rules, reproduced here including their corners (tested against xl's own
vectors, ``tools/xl/check-xl-vif-parse``): RATE must match
``^[0-9]+[GMK]?[Bb]/s$``; the number is read with ``strtoull(..., 0)`` so a
leading ``0`` makes it octal; ``G``/``M``/``K`` multiply by 1e9/1e6/1e3
(decimal); ``B`` is bytes, ``b`` bits (divided by 8, truncated); 0 or more than
2**32-1 before the multiplier is refused. INTERVAL must match ``^[0-9]+[mu]?s?$``:
``ms``/``m`` milliseconds, ``us``/``u`` microseconds, ``s`` or no suffix SECONDS
(``@50`` is 50 s); 0 or more than 2**32-1 microseconds is refused. The default
interval is 50 ms. bytes_per_interval = bytes_per_s * interval_us / 1e6,
truncated (so it can be 0: xl accepts ``1B/s`` and writes ``0,50000``; netback
then still lets 128 KiB pass per interval, so vif-qos refuses such a rate when it
reads it).
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

from vif_qos.constants import U32_MAX
from vif_qos.errors import InputError
from vif_qos.model import MAX_RATE_BITS_PER_S

UINT64_MAX = 2 ** 64 - 1

#: xl's default replenishment interval (libxlu_vif.c: "Default to 50ms").
DEFAULT_INTERVAL_US = 50_000

_RATE_RE = re.compile(r"[0-9]+[GMK]?[Bb]/s")
_INTERVAL_RE = re.compile(r"[0-9]+[mu]?s?")
_BACKEND_RE = re.compile(r"([0-9]+),([0-9]+)")


def _strtoull0(text: str) -> Tuple[int, int]:
    """C ``strtoull(text, &end, 0)`` for text starting with a digit: (value, end).

    A leading ``0`` selects octal (the run of octal digits is consumed); values
    beyond 2**64-1 saturate (ERANGE), which xl reports as an overflow anyway. A
    run of digits too long to be below 2**64 saturates without being converted
    (Python refuses more than 4300 decimal digits).
    """
    if text.startswith("0"):
        end = 1
        while end < len(text) and text[end] in "01234567":
            end += 1
        digits, base = text[:end].lstrip("0") or "0", 8
    else:
        end = 0
        while end < len(text) and text[end] in "0123456789":
            end += 1
        digits, base = text[:end], 10
    if len(digits) > 24:  # 2**64 has 20 decimal and 22 octal digits
        return UINT64_MAX + 1, end
    return min(int(digits, base), UINT64_MAX + 1), end


def _leading_u32(text: str, pattern: "re.Pattern[str]", invalid: str, overflow: str,
                 whole: str, source: Optional[str]) -> Tuple[int, int]:
    """``(number, end)`` of ``text`` that must match ``pattern`` and start with a
    number 1..2**32-1 (as strtoull reads it); InputError ``invalid``/``overflow``."""
    if not pattern.fullmatch(text):
        raise InputError(invalid, token=whole, source=source)
    value, end = _strtoull0(text)
    if value == 0 or value > U32_MAX:
        raise InputError(overflow, token=whole, source=source)
    return value, end


def _bytes_per_sec(rate: str, whole: str, source: Optional[str]) -> int:
    value, end = _leading_u32(
        rate, _RATE_RE, "invalid rate (xl wants NUMBER[GMK]B/s or NUMBER[GMK]b/s, "
        "B = bytes, b = bits, whole numbers only)", "rate overflow (xl refuses 0 and "
        "numbers above 4294967295 before the multiplier)", whole, source)
    c = rate[end]
    if c == "G":
        value *= 1000 * 1000 * 1000
    elif c == "M":
        value *= 1000 * 1000
    elif c == "K":
        value *= 1000
    if c == "b" or rate[end + 1] == "b":
        value //= 8
    return value


def _interval_usecs(interval: str, whole: str, source: Optional[str]) -> int:
    overflow = "replenishment interval overflow (must be 1us..4294967295us)"
    value, end = _leading_u32(
        interval, _INTERVAL_RE, "invalid replenishment interval (xl wants NUMBER followed "
        "by ms, us or s; no suffix means seconds)", overflow, whole, source)
    c = interval[end] if end < len(interval) else ""
    if c in ("s", ""):
        value *= 1000 * 1000
    elif c == "m":
        value *= 1000
    if value > U32_MAX:
        raise InputError(overflow, token=whole, source=source)
    return value


def parse_xl_rate_parts(text: str, source: Optional[str] = None) -> Tuple[int, int]:
    """``(bytes_per_interval, interval_us)`` for an xl ``rate=`` string.

    :raises InputError: whatever xl refuses (see the module docstring).
    """
    if not isinstance(text, str):
        raise InputError("rate: expected a string", token=str(text), source=source)
    rate, at, interval = text.partition("@")
    if rate == "":
        raise InputError("no rate specified", token=text, source=source)
    bytes_per_sec = _bytes_per_sec(rate, text, source)
    interval_us = _interval_usecs(interval, text, source) if at else DEFAULT_INTERVAL_US
    if bytes_per_sec > UINT64_MAX // interval_us:
        raise InputError("rate overflow", token=text, source=source)
    return bytes_per_sec * interval_us // 1_000_000, interval_us


def parse_xl_rate(text: str, source: Optional[str] = None) -> str:
    """The backend ``rate`` value xl writes for ``text``: ``"bytes_per_interval,interval_us"``.

    ``parse_xl_rate("10MB/s@50ms") == "500000,50000"``; ``"10Mb/s"`` is 1.25 MB/s,
    ``"62500,50000"``.

    :raises InputError: for every string xl refuses, naming it and ``source``.
    """
    per_interval, interval_us = parse_xl_rate_parts(text, source)
    return f"{per_interval},{interval_us}"


def backend_rate_parts(value: str, source: Optional[str] = None) -> Tuple[int, int]:
    """``(bytes_per_interval, interval_us)`` from the backend ``rate`` key.

    Accepts what netback accepts: two unsigned decimal numbers separated by one
    comma, nothing else (``xen_net_read_rate``); each at most 2**64-1.

    :raises InputError: anything else.
    """
    if not isinstance(value, str):
        raise InputError("rate: expected a string", token=str(value), source=source)
    match = _BACKEND_RE.fullmatch(value)
    if not match:
        raise InputError("malformed backend rate (want BYTES_PER_INTERVAL,INTERVAL_US)",
                         token=value, source=source)
    if max(len(match.group(1)), len(match.group(2))) > 20:  # 2**64-1 has 20 digits
        raise InputError("backend rate out of range", token=value, source=source)
    per_interval, interval_us = int(match.group(1)), int(match.group(2))
    if per_interval > UINT64_MAX or interval_us > UINT64_MAX:
        raise InputError("backend rate out of range", token=value, source=source)
    return per_interval, interval_us


def parse_backend_rate(value: str, source: Optional[str] = None) -> Optional[int]:
    """The rate in bits per second for a backend ``rate`` value, or ``None``.

    ``None`` when the interval is 0: unlimited (old xend wrote ``"4294967295,0"``
    for an invalid rate). Otherwise bytes_per_interval * 1e6 / interval_us bytes
    per second, truncated to whole bytes per second (the kernel's unit), times 8:
    ``"62500,50000"`` -> 10000000.

    :raises InputError: malformed; a rate below 1 byte/s (netback would still let
        128 KiB pass per interval: not what was meant); or above
        :data:`vif_qos.model.MAX_RATE_BITS_PER_S`.
    """
    per_interval, interval_us = backend_rate_parts(value, source)
    if interval_us == 0:
        return None
    bytes_per_s = per_interval * 1_000_000 // interval_us
    if bytes_per_s == 0:
        raise InputError("Xen rate is below 1 byte/s (netback would still pass 128 KiB "
                         "per interval)", token=value, source=source)
    bits = bytes_per_s * 8
    if bits > MAX_RATE_BITS_PER_S:
        raise InputError("Xen rate is above the largest rate vif-qos accepts (1tbit)",
                         token=value, source=source)
    return bits


def backend_rate_is_whole(value: str) -> bool:
    """True when ``value`` is an exact number of bytes per second (no truncation)."""
    per_interval, interval_us = backend_rate_parts(value)
    return interval_us == 0 or (per_interval * 1_000_000) % interval_us == 0


def xl_rate_bits_per_s(text: str, source: Optional[str] = None) -> int:
    """Bits/s netback enforces for the xl string ``text`` (via the backend form).

    :raises InputError: xl refuses it, or it comes to 0 or too much (see
        :func:`parse_backend_rate`).
    """
    backend = parse_xl_rate(text, source)
    try:
        bits = parse_backend_rate(backend, source)
    except InputError as err:
        raise InputError(f"{err.message} (xl writes {backend!r})", token=text,
                         source=source) from None
    assert bits is not None  # xl never writes an interval of 0
    return bits


def format_xl_rate(bytes_per_s: int, interval_us: int = DEFAULT_INTERVAL_US) -> str:
    """An xl ``rate=`` string meaning ``bytes_per_s`` every ``interval_us``.

    Inverse of :func:`parse_xl_rate_parts` for whole bytes per second up to
    2**32-1 and intervals in whole microseconds: ``format_xl_rate(1250000)`` is
    ``"1250000B/s@50000us"``.
    """
    return f"{bytes_per_s}B/s@{interval_us}us"
