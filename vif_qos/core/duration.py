"""Spans of time as the admin writes them: the one grammar of every duration vif-qos
reads (``set``/``assign --for``, the policy file's ``[billing] cooldown`` and
``retention``). Pure.

Grammar (case-insensitive, white space around the parts allowed)::

    duration = part { part } | digits
    part     = digits unit
    unit     = s | sec | secs | second | seconds      (1 s)
             | m | min | mins | minute | minutes      (60 s)
             | h | hour | hours                      (3600 s)
             | d | day | days                        (86400 s)
             | w | week | weeks                      (604800 s)

Parts add up (``1h30m`` and ``1h 30m`` are 5400 s); a bare number is seconds
(``90``). Plain ASCII digits only: no sign, fraction, exponent or ``_``. The sum
is at least 1 s and at most :data:`MAX_DURATION_S` (100 years). There is no
month or year unit: their length varies (a billing period is named ``YYYY-MM``
instead, :func:`vif_qos.core.billing.parse_period`).
"""

from __future__ import annotations

import re
from typing import Dict, Optional

from vif_qos.errors import InputError

#: Unit words -> seconds.
DURATION_UNITS: Dict[str, int] = {}
for _words, _seconds in ((("s", "sec", "secs", "second", "seconds"), 1),
                         (("m", "min", "mins", "minute", "minutes"), 60),
                         (("h", "hour", "hours"), 3600),
                         (("d", "day", "days"), 86400),
                         (("w", "week", "weeks"), 604800)):
    DURATION_UNITS.update(dict.fromkeys(_words, _seconds))

#: The longest duration read: 100 years of 366 days, seconds.
MAX_DURATION_S = 100 * 366 * 86400

#: Longest text read, characters (no duration up to 100 years needs more).
MAX_DURATION_CHARS = 64

_PART = re.compile(r"\s*([0-9]+)\s*([a-z]+)\s*")
_BARE = re.compile(r"\s*([0-9]+)\s*")


def parse_duration(text: object, source: Optional[str] = None,
                   what: str = "duration") -> int:
    """A duration in the grammar above -> whole seconds.

    :param source: where ``text`` came from (``--for``, ``file:line``), for messages.
    :param what: the setting's name, first in messages.
    :returns: seconds, 1 .. :data:`MAX_DURATION_S`.
    :raises InputError: not a single string, malformed, an unknown unit, 0, or above
        100 years; names ``text`` and ``source``.
    """
    if not isinstance(text, str):
        raise InputError(f"{what}: expected a single value", token=str(text), source=source)
    word = text.lower()
    seconds = _seconds(word) if len(word) <= MAX_DURATION_CHARS else None
    if seconds is None:
        raise InputError(f"{what}: not a duration (whole numbers with s, m, h, d or w, "
                         f"e.g. 90s, 30m, 1h30m, 400d; a bare number is seconds)",
                         token=text, source=source)
    if seconds == 0:
        raise InputError(f"{what}: must not be 0", token=text, source=source)
    if seconds > MAX_DURATION_S:
        raise InputError(f"{what}: above 100 years", token=text, source=source)
    return seconds


def _seconds(word: str) -> Optional[int]:
    """The sum of ``word``'s parts, or None when it is not in the grammar."""
    bare = _BARE.fullmatch(word)
    if bare:
        return int(bare.group(1))
    pos, total = 0, 0
    for match in _PART.finditer(word):
        if match.start() != pos or match.group(2) not in DURATION_UNITS:
            return None
        total += int(match.group(1)) * DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(word) and pos > 0 else None
