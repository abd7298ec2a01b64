"""tc's unit words: rates, sizes and times, parsed exactly and formatted back.

Meanings follow iproute2's ``tc/tc_util.c`` (``get_rate64``, ``get_size``) and
``lib/utils.c`` (``get_time``), matched case-insensitively as tc does:

- Rates (:func:`parse_rate`), returned in bits per second: a bare number and
  ``bit`` are bits/s; ``kbit`` 1e3, ``mbit`` 1e6, ``gbit`` 1e9, ``tbit`` 1e12;
  ``kibit`` 1024, ``mibit`` 1024**2, ``gibit`` 1024**3, ``tibit`` 1024**4 bits/s.
  ``bps``, ``kbps``, ``mbps``, ``gbps``, ``tbps`` (and ``kibps`` ...) are BYTES per
  second: ``2mbps`` is 16 Mbit/s.
- Sizes (:func:`parse_size`), returned in bytes: a bare number and ``b`` are bytes;
  ``k``/``kb`` 1024, ``m``/``mb`` 1048576, ``g``/``gb`` 1073741824 bytes;
  ``kbit`` 128 bytes, ``mbit`` 131072 bytes, ``gbit`` 134217728 bytes (tc's
  binary "bit" sizes: ``32kbit`` is 4096 bytes).
- Times (:func:`parse_time`), returned in microseconds: a bare number and
  ``us``/``usec``/``usecs`` are microseconds; ``ms``/``msec``/``msecs`` 1000 us;
  ``s``/``sec``/``secs`` 1000000 us.

Where vif-qos is stricter than tc (tc reads numbers with ``strtod`` and truncates):
numbers are plain decimals (``12``, ``1.5``; no exponent, hex, sign or spaces
inside), and a value must come to a whole number of base units: a rate to whole
BYTES per second (the kernel's unit), a size to whole bytes, a time to whole
microseconds. Anything that would be truncated, rounds to 0, exceeds
:data:`vif_qos.model.MAX_RATE_BITS_PER_S` (rates) or 2**32-1 (sizes and times: the
kernel's 32-bit fields) raises :class:`~vif_qos.errors.InputError` naming the
token and its source. Arithmetic is exact (:class:`fractions.Fraction`), so
100 Gbit/s stays exactly 100000000000 bits/s.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Dict, Optional

from vif_qos.constants import U32_MAX
from vif_qos.errors import InputError
from vif_qos.model import MAX_RATE_BITS_PER_S

# Largest size or time value: U32_MAX, the kernel's 32-bit fields (TCA_TBF_BURST,
# tc_tbf_qopt.limit; tc's get_time returns an unsigned int of microseconds).

#: Rate words -> bits per second (tc/tc_util.c ``suffixes[]``).
RATE_UNITS: Dict[str, int] = {
    "": 1,
    "bit": 1,
    "kibit": 1024,
    "kbit": 1000,
    "mibit": 1024 ** 2,
    "mbit": 1000 ** 2,
    "gibit": 1024 ** 3,
    "gbit": 1000 ** 3,
    "tibit": 1024 ** 4,
    "tbit": 1000 ** 4,
    "bps": 8,
    "kibps": 8 * 1024,
    "kbps": 8 * 1000,
    "mibps": 8 * 1024 ** 2,
    "mbps": 8 * 1000 ** 2,
    "gibps": 8 * 1024 ** 3,
    "gbps": 8 * 1000 ** 3,
    "tibps": 8 * 1024 ** 4,
    "tbps": 8 * 1000 ** 4,
}

#: Size words -> bytes (tc/tc_util.c ``get_size``).
SIZE_UNITS: Dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024 ** 2,
    "mb": 1024 ** 2,
    "g": 1024 ** 3,
    "gb": 1024 ** 3,
    "kbit": 1024 // 8,
    "mbit": 1024 * 1024 // 8,
    "gbit": 1024 * 1024 * 1024 // 8,
}

#: Time words -> microseconds (lib/utils.c ``get_time``; TIME_UNITS_PER_SEC 1e6).
TIME_UNITS: Dict[str, int] = {
    "": 1,
    "us": 1,
    "usec": 1,
    "usecs": 1,
    "ms": 1000,
    "msec": 1000,
    "msecs": 1000,
    "s": 1000000,
    "sec": 1000000,
    "secs": 1000000,
}

#: Longest number vif-qos reads, in characters: every value it takes fits in far
#: fewer (2**64 has 20 digits); Python refuses to convert more than 4300 digits
#: to an int (ValueError), which must not escape as an internal error.
MAX_NUMBER_CHARS = 64

_NUMBER = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?(?P<unit>[A-Za-z]*)")


def _split(text: object, what: str, source: Optional[str], units: Dict[str, int]):
    """Return (exact number, unit multiplier) or raise InputError."""
    if not isinstance(text, str):
        raise InputError(f"{what}: expected a single value, not {type(text).__name__}",
                         token=str(text), source=source)
    stripped = text.strip()
    match = _NUMBER.fullmatch(stripped)
    if not match:
        raise InputError(f"{what}: not a number with a unit word "
                         f"(plain decimal digits, then e.g. {_examples(units)})",
                         token=text, source=source)
    if len(match.group("int")) + len(match.group("frac") or "") > MAX_NUMBER_CHARS:
        raise InputError(f"{what}: a number of more than {MAX_NUMBER_CHARS} digits",
                         token=text, source=source)
    number = Fraction(int(match.group("int")))
    if match.group("frac"):
        frac = match.group("frac")
        number += Fraction(int(frac), 10 ** len(frac))
    unit = match.group("unit").lower()
    if unit not in units:
        raise InputError(f"{what}: unknown unit {match.group('unit')!r} "
                         f"(known: {', '.join(u for u in units if u)})",
                         token=text, source=source)
    return number, units[unit]


def _examples(units: Dict[str, int]) -> str:
    if units is RATE_UNITS:
        return "1mbit"
    if units is SIZE_UNITS:
        return "15k"
    return "50ms"


def parse_rate(text: str, source: Optional[str] = None, what: str = "rate") -> int:
    """Parse a tc rate word (``1mbit``, ``2mbps``, ``100gbit``) into bits per second.

    :returns: bits/s, an exact multiple of 8 (whole bytes/s), 8..MAX_RATE_BITS_PER_S.
    :raises InputError: malformed, unknown unit, 0 or below one byte/s (the kernel
        would get a rate of 0 bytes/s), not a whole number of bytes per second, or
        above :data:`vif_qos.model.MAX_RATE_BITS_PER_S`.
    """
    number, scale = _split(text, what, source, RATE_UNITS)
    bits = number * scale
    if bits < 8:
        raise InputError(f"{what}: below 1 byte/s, the kernel would get a rate of "
                         f"0 bytes/s", token=text, source=source)
    if bits > MAX_RATE_BITS_PER_S:
        raise InputError(f"{what}: above the largest rate vif-qos accepts "
                         f"({format_rate(MAX_RATE_BITS_PER_S)})", token=text, source=source)
    if bits.denominator != 1 or bits.numerator % 8:
        raise InputError(f"{what}: is {float(bits / 8):g} bytes/s, not a whole number of "
                         f"bytes per second (the kernel's unit; tc would truncate)",
                         token=text, source=source)
    return int(bits)


def parse_size(text: str, source: Optional[str] = None, what: str = "size") -> int:
    """Parse a tc size word (``1514``, ``15k``, ``40MB``, ``32kbit``) into bytes.

    :returns: bytes, 1..2**32-1.
    :raises InputError: malformed, unknown unit, 0, a fraction of a byte, or above
        2**32-1 (the kernel's 32-bit size fields).
    """
    number, scale = _split(text, what, source, SIZE_UNITS)
    size = number * scale
    if size == 0:
        raise InputError(f"{what}: must not be 0", token=text, source=source)
    if size.denominator != 1:
        raise InputError(f"{what}: is {float(size):g} bytes, not a whole number of bytes",
                         token=text, source=source)
    if size > U32_MAX:
        raise InputError(f"{what}: above {U32_MAX} bytes (the kernel's 32-bit field)",
                         token=text, source=source)
    return int(size)


def parse_time(text: str, source: Optional[str] = None, what: str = "time") -> int:
    """Parse a tc time word (``50ms``, ``1s``, ``400us``; bare = us) into microseconds.

    :returns: microseconds, 1..2**32-1.
    :raises InputError: malformed, unknown unit, 0, a fraction of a microsecond,
        or above 2**32-1 us (tc's unsigned int).
    """
    number, scale = _split(text, what, source, TIME_UNITS)
    usecs = number * scale
    if usecs == 0:
        raise InputError(f"{what}: must not be 0", token=text, source=source)
    if usecs.denominator != 1:
        raise InputError(f"{what}: is {float(usecs):g} us, not a whole number of "
                         f"microseconds", token=text, source=source)
    if usecs > U32_MAX:
        raise InputError(f"{what}: above {U32_MAX} us", token=text, source=source)
    return int(usecs)


def _format(value: int, table) -> str:
    for word, scale in table:
        if value % scale == 0:
            return f"{value // scale}{word}"
    raise AssertionError("unreachable: the last unit has scale 1")


def format_rate(bits_per_s: int) -> str:
    """The shortest exact tc rate word for ``bits_per_s`` (``1mbit``, ``100gbit``).

    ``parse_rate(format_rate(x)) == x`` for every rate :func:`parse_rate` returns.
    """
    return _format(bits_per_s, (("tbit", 10 ** 12), ("gbit", 10 ** 9),
                                ("mbit", 10 ** 6), ("kbit", 10 ** 3), ("bit", 1)))


def format_size(size_bytes: int) -> str:
    """An exact tc size word for ``size_bytes`` (``40mb``, ``15k``, ``1514``)."""
    return _format(size_bytes, (("gb", 1024 ** 3), ("mb", 1024 ** 2), ("kb", 1024), ("", 1)))


def format_time(usecs: int) -> str:
    """An exact tc time word for ``usecs`` (``1s``, ``50ms``, ``400us``)."""
    return _format(usecs, (("s", 10 ** 6), ("ms", 1000), ("us", 1)))


def human_rate(bits_per_s: int) -> str:
    """``"1000000 bit/s (1mbit, 125000 bytes/s)"``: exact figures for people."""
    return f"{bits_per_s} bit/s ({format_rate(bits_per_s)}, {bits_per_s // 8} bytes/s)"


def human_size(size_bytes: int) -> str:
    """``"131072 bytes (128kb)"``."""
    word = format_size(size_bytes)
    return f"{size_bytes} bytes" + (f" ({word})" if not word.isdigit() else "")


def human_time(usecs: int) -> str:
    """``"50000 us (50ms)"``."""
    word = format_time(usecs)
    return f"{usecs} us" + (f" ({word})" if not word.endswith("us") else "")
