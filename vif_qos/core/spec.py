"""The qos spec: ``key=value,key=value`` like an xl vifspec.

Written by the admin in three places: a domain config file's ``qos = [...]``
entry (one string per devid), ``vif-qos plan --qos``, and (as separate
``key = value`` lines) the policy file's ``[defaults]``, ``[pools]`` member
settings and ``[domains]`` entries. Grammar::

    spec   := [item ("," item)*]          items may be empty (",," and a trailing ",")
    item   := key "=" value               spaces around key and value are ignored
    key    := rate | rate_in | rate_out | burst | latency | limit | peak
            | minburst | ceil | cburst | quantum | pool
            | peakrate (= peak) | maxburst (= burst) | buffer (= burst)

Values (units: :mod:`vif_qos.core.units`, tc's words and meanings):

=========  ======================================  ===================================
key        value                                   meaning
=========  ======================================  ===================================
rate       tc rate word, xl form, or ``none``      both directions (sets rate_in and
                                                   rate_out unless given in this spec)
rate_in    tc rate word, xl form, or ``none``      toward the guest (TBF on the vif)
rate_out   tc rate word, xl form, or ``none``      from the guest (HTB leaf on uplink)
burst      tc size word                            bucket of both directions (TBF
                                                   burst; HTB burst)
latency    tc time word                            TBF: longest a packet may wait
limit      tc size word                            TBF: queue length (instead of
                                                   latency)
peak       tc rate word                            TBF peakrate (must exceed rate_in)
minburst   tc size word                            TBF peak bucket (``mtu`` in tc)
ceil       tc rate word                            HTB ceil of the leaf (borrowing)
cburst     tc size word                            HTB cburst
quantum    tc size word                            HTB DRR quantum of the leaf
pool       pool name, or ``none``                  the leaf's parent pool class
=========  ======================================  ===================================

``none`` on a rate key means "not shaped in that direction" and overrides lower
layers. The xl form (``10Mb/s@50ms``, anything containing ``/s``) is read exactly
as xl and netback would (:mod:`vif_qos.core.xenrate`). A key given twice in one spec
(also through an alias), and ``latency`` together with ``limit``, are refused
like tc refuses ``Double "rate" spec``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple, Union

from vif_qos.core import units
from vif_qos.core import xenrate
from vif_qos.errors import InputError

Value = Union[int, str, None]

#: canonical key -> kind
KINDS: Dict[str, str] = {
    "rate_in": "rate?",
    "rate_out": "rate?",
    "burst": "size",
    "latency": "time",
    "limit": "size",
    "peak": "rate",
    "minburst": "size",
    "ceil": "rate",
    "cburst": "size",
    "quantum": "size",
    "pool": "name?",
}

#: written key -> canonical keys it sets
ALIASES: Dict[str, Tuple[str, ...]] = {
    "rate": ("rate_in", "rate_out"),
    "peakrate": ("peak",),
    "maxburst": ("burst",),
    "buffer": ("burst",),
}

#: every key word accepted in a spec
KEY_WORDS = tuple(KINDS) + tuple(ALIASES)

NONE_WORDS = ("none",)
_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class SpecValue:
    """One resolved spec item.

    ``value``: bits/s for rates, bytes for sizes, us for times, the pool name,
    or ``None`` for ``none``. ``token`` is the value as written, ``written_as``
    the key as written (``rate``, ``maxburst``...), ``source`` where it was read.
    """

    key: str
    value: Value
    token: str
    source: str
    written_as: str


def parse_value(key: str, raw: object, source: str, what: Optional[str] = None) -> Value:
    """Parse one value for canonical ``key`` (``what``: the key as written, for messages).

    :raises InputError: names the key, the token and the source.
    """
    kind = KINDS[key]
    key = what or key
    if not isinstance(raw, str):
        raise InputError(f"{key}: expected one value, not a list (quote it if it holds a comma)",
                         token=str(raw), source=source)
    text = raw.strip()
    if kind.endswith("?") and text.lower() in NONE_WORDS:
        return None
    base = kind.rstrip("?")
    if base == "rate":
        if "/s" in text:
            return xenrate.xl_rate_bits_per_s(text, source)
        return units.parse_rate(text, source, key)
    if base == "size":
        return units.parse_size(text, source, key)
    if base == "time":
        return units.parse_time(text, source, key)
    if not _POOL_NAME.fullmatch(text):
        raise InputError(f"{key}: not a pool name (letters, digits, '_', '.', '-')",
                         token=raw, source=source)
    return text


def unknown_pool(item: Optional[SpecValue], pool_names: Iterable[str]) -> Optional[InputError]:
    """The error for a ``pool`` value that names none of ``pool_names`` (the policy's
    ``[pools]``), or None when ``item`` is absent, ``none`` or a defined pool. The
    one check of "unknown pool" for the policy file, the domain config files,
    ``set``/``assign`` and every plan: the callers raise it or collect it."""
    names = list(pool_names)
    if item is None or item.value is None or item.value in names:
        return None
    return InputError(f"pool: unknown pool (defined: {', '.join(names) or 'none'})",
                      token=item.token, source=item.source)


def canonical_keys(word: str, source: str) -> Tuple[str, ...]:
    """The canonical keys a written key word sets; :class:`InputError` if unknown."""
    lowered = word.strip().lower()
    if lowered in KINDS:
        return (lowered,)
    if lowered in ALIASES:
        return ALIASES[lowered]
    raise InputError(f"unknown qos key (known: {', '.join(KEY_WORDS)})",
                     token=word, source=source)


def parse_items(items: Iterable[Tuple[str, object, str]]) -> Dict[str, SpecValue]:
    """Parse ``(key word, raw value, source)`` triples into canonical key -> SpecValue.

    A more specific key (``rate_in``) beats ``rate`` whatever the order; a key
    set twice otherwise, or ``latency`` with ``limit``, raises :class:`InputError`.
    """
    explicit: Dict[str, SpecValue] = {}
    via_rate: Dict[str, SpecValue] = {}
    for word, raw, source in items:
        keys = canonical_keys(word, source)
        written = word.strip().lower()
        for key in keys:
            spec_value = SpecValue(key, parse_value(key, raw, source, written), str(raw).strip(),
                                   source, written)
            target = via_rate if written == "rate" else explicit
            if key in target:
                earlier = target[key]
                raise InputError(f"{written}: given twice (first as "
                                 f"{earlier.written_as}={earlier.token} at {earlier.source})",
                                 token=str(raw), source=source)
            target[key] = spec_value
    result = dict(via_rate)
    result.update(explicit)
    if "latency" in result and "limit" in result:
        raise InputError("give latency or limit, not both (tc refuses a double "
                         "limit/latency)", token=result["limit"].token,
                         source=result["limit"].source)
    return result


def split_spec(text: str, source: str) -> Iterable[Tuple[str, str, str]]:
    """``(key, value, source)`` for each ``key=value`` item of a spec string."""
    if not isinstance(text, str):
        raise InputError("qos spec must be a string", token=str(text), source=source)
    for item in text.split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise InputError("qos item is not key=value", token=item.strip(), source=source)
        yield key, value, source


def parse_spec(text: str, source: str) -> Dict[str, SpecValue]:
    """Parse a qos spec string (``"rate=1mbit,burst=15k"``); see the module docstring.

    :returns: canonical key -> :class:`SpecValue`.
    :raises InputError: unknown key, bad value, key given twice; names the token
        and ``source``.
    """
    return parse_items(list(split_spec(text, source)))


def format_value(key: str, value: Value) -> str:
    """The spec text of one canonical value (exact: parses back to ``value``)."""
    if value is None:
        return "none"
    kind = KINDS[key].rstrip("?")
    if kind == "rate":
        return units.format_rate(value)  # type: ignore[arg-type]
    if kind == "size":
        return units.format_size(value)  # type: ignore[arg-type]
    if kind == "time":
        return units.format_time(value)  # type: ignore[arg-type]
    return str(value)


def format_spec(values: Dict[str, Value]) -> str:
    """A spec string for canonical key -> value; ``parse_spec`` gives the values back."""
    return ",".join(f"{key}={format_value(key, value)}" for key, value in values.items())


def spec_values(parsed: Dict[str, SpecValue]) -> Dict[str, Value]:
    """Canonical key -> plain value (drop provenance)."""
    return {key: item.value for key, item in parsed.items()}
