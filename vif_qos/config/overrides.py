"""Operator overrides: ``$VIF_QOS_STATE_DIR/overrides.conf`` (default
``/var/lib/vif-qos/overrides.conf``, :mod:`vif_qos.config.paths`).

What ``vif-qos set``/``assign``/``unset`` write and every plan reads: qos keys for a
running (or future) guest that rank above the policy's ``[domains]`` entries
(:mod:`vif_qos.core.resolve`, layer ``override``), each value's source being
``override:PATH:LINE``. A dom0-owned, human-readable configobj file, one section per
target::

    # written by vif-qos set/assign/unset; edit with care (vif-qos overrides lists it)
    [domain:web1]
    pool = overage
    set_by = root
    set_at = 2026-12-03T12:00:00Z
    reason = heavy backup, ticket 4711
    expires = 2026-12-03T18:00:00Z

Targets (section names): ``domain:NAME`` (every vif of the domain, whatever its
domid: it survives a reboot), ``device:NAME:DEVID`` (one vif of the domain), and
``vif:NETDEV`` (a vif netdev name, ``vif3.0`` or a ``vifname``). When several
match one vif, the narrower wins: domain < device < vif. ``expires`` (UTC, ISO
8601 with ``Z``) absent means "until unset"; an expired override no longer
applies (it stays listed, marked expired, until unset or set again).

This module is pure apart from :func:`load` and :func:`save`; it takes no lock:
callers that change the file hold the host lock
(:func:`vif_qos.xen.reload.change_overrides` does). The API (also for
automatic use, e.g. usage accounting moving a guest to an overage pool):

- :func:`load` -> :class:`Overrides`; :meth:`Overrides.matching` for a vif's facts;
- :func:`with_set`, :func:`with_unset` -> a new :class:`Overrides` (nothing written);
- :func:`save` writes atomically (temp file in the same directory, fsync, rename).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

from vif_qos.config import paths
from vif_qos.core import spec as specmod
from vif_qos.errors import ConfigError, InputError
from vif_qos.model import VifFacts

FILE_NAME = "overrides.conf"
#: Target kinds, lowest precedence first.
KINDS = ("domain", "device", "vif")
META_KEYS = ("set_by", "set_at", "reason", "expires")
HEADER = ["# vif-qos operator overrides: written by 'vif-qos set', 'assign' and 'unset'",
          "# (list them with 'vif-qos overrides'). One section per target: domain:NAME,",
          "# device:NAME:DEVID or vif:NETDEV; qos keys as in the policy file; set_by,",
          "# set_at, reason and expires (UTC) say who, when, why and until when."]
MAX_FILE_BYTES = 4 << 20


def default_path() -> str:
    """``$VIF_QOS_STATE_DIR/overrides.conf``."""
    return paths.state_path(FILE_NAME)


@dataclass(frozen=True)
class Target:
    """What an override applies to: ``kind`` in :data:`KINDS`, the domain or
    netdev ``name``, and ``devid`` for ``device``."""

    kind: str
    name: str
    devid: Optional[int] = None

    @property
    def section(self) -> str:
        if self.kind == "device":
            return f"device:{self.name}:{self.devid}"
        return f"{self.kind}:{self.name}"

    def matches(self, facts: VifFacts) -> bool:
        """True when this target names the vif ``facts`` describes (an HVM guest's
        ``-emu`` tap is matched by its domain and device like its PV twin)."""
        if self.kind == "vif":
            return facts.vif == self.name
        if facts.domain_name != self.name:
            return False
        return self.kind == "domain" or facts.devid == self.devid

    def __str__(self) -> str:
        return self.section


def parse_section(name: str, source: str) -> Target:
    """A :class:`Target` from a section name (``domain:web1``, ``device:web1:0``,
    ``vif:vif3.0``). :raises ConfigError: anything else."""
    kind, sep, rest = name.partition(":")
    if sep and kind in ("domain", "vif") and rest:
        return Target(kind, rest)
    if sep and kind == "device":
        domain, sep2, devid = rest.rpartition(":")
        if sep2 and domain and re.fullmatch(r"[0-9]+", devid):
            return Target("device", domain, int(devid))
    raise ConfigError("override section must be domain:NAME, device:NAME:DEVID or "
                      "vif:NETDEV", token=name, source=source)


@dataclass(frozen=True)
class Override:
    """One target's override.

    ``keys``: qos key word -> value as written (``{"rate": "20mbit"}``); ``lines``:
    key word -> line in the file (0 when not yet written). ``expires``/``set_at``:
    aware UTC datetimes or None.
    """

    target: Target
    keys: Dict[str, str]
    set_by: str = ""
    set_at: Optional[_dt.datetime] = None
    reason: str = ""
    expires: Optional[_dt.datetime] = None
    lines: Dict[str, int] = field(default_factory=dict)

    def active(self, now: _dt.datetime) -> bool:
        """Not expired at ``now`` (an aware datetime)."""
        return self.expires is None or now < self.expires

    def spec(self, path: str) -> Dict[str, specmod.SpecValue]:
        """The keys parsed as one qos spec layer; each value's source is
        ``override:PATH:LINE``. :raises InputError: a bad key or value."""
        items = [(key, value, f"override:{path}:{self.lines.get(key, 0)}"
                  if self.lines.get(key) else f"override:{path}:[{self.target}]")
                 for key, value in self.keys.items()]
        return specmod.parse_items(items)

    def to_json(self, now: _dt.datetime) -> dict:
        return {"target": self.target.section, "kind": self.target.kind,
                "name": self.target.name, "devid": self.target.devid,
                "keys": dict(self.keys), "set_by": self.set_by,
                "set_at": format_time(self.set_at), "reason": self.reason,
                "expires": format_time(self.expires), "active": self.active(now)}


@dataclass(frozen=True)
class Overrides:
    """Every override of the file at ``path``, in file order."""

    path: str
    items: Tuple[Override, ...] = ()

    def get(self, target: Target) -> Optional[Override]:
        for item in self.items:
            if item.target == target:
                return item
        return None

    def matching(self, facts: VifFacts, now: Optional[_dt.datetime] = None
                 ) -> List[Dict[str, specmod.SpecValue]]:
        """The spec layers of the unexpired overrides matching ``facts``, lowest
        precedence first (domain, device, vif): what
        :func:`vif_qos.core.resolve.plan_vif` takes as ``overrides``.

        :raises InputError: a matching override holds a bad key or value.
        """
        now = now or utc_now()
        found = [o for o in self.items if o.active(now) and o.target.matches(facts)]
        found.sort(key=lambda o: KINDS.index(o.target.kind))
        return [o.spec(self.path) for o in found]


# -- time -------------------------------------------------------------------------


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def format_time(when: Optional[_dt.datetime]) -> Optional[str]:
    if when is None:
        return None
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, source: str) -> _dt.datetime:
    """``2026-12-03T12:00:00Z`` -> aware UTC datetime. :raises ConfigError."""
    try:
        return _dt.datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=_dt.timezone.utc)
    except ValueError:
        raise ConfigError("not a UTC time like 2026-12-03T12:00:00Z", token=text,
                          source=source) from None


# -- reading ----------------------------------------------------------------------


def load(path: Optional[str] = None) -> Overrides:
    """The overrides file (``path`` or :func:`default_path`); a missing file is no
    overrides.

    :raises ConfigError: unreadable, not configobj syntax, a bad section name,
        time or qos key (each names ``file:line`` and the token).
    """
    path = path or default_path()
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return Overrides(path)
    except OSError as err:
        raise ConfigError(f"cannot read the overrides file: {err.strerror}",
                          source=path) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError("overrides file is larger than 4 MiB", source=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", source=f"{path}:{line}") from None
    return parse_text(text, path)


def parse_text(text: str, path: str) -> Overrides:
    """:func:`load` for text already read. :raises ConfigError."""
    from configobj import ConfigObj, ConfigObjError
    from vif_qos.config.lines import scan_lines

    lines = text.splitlines()
    try:
        cfg = ConfigObj(lines, interpolation=False, encoding="utf-8")
    except ConfigObjError as err:
        line = getattr(err, "line_number", None)
        raise ConfigError(f"not a configobj file: {' '.join(str(err).split())}",
                          source=f"{path}:{line}" if line else path) from None
    where = scan_lines(lines)
    if cfg.scalars:
        key = cfg.scalars[0]
        raise ConfigError("setting outside a target section", token=key,
                          source=f"{path}:{where.get((key,), 0)}")
    items: List[Override] = []
    for name in cfg.sections:
        section = cfg[name]
        src = f"{path}:{where.get((name,), 0)}"
        target = parse_section(name, src)
        if section.sections:
            sub = section.sections[0]
            raise ConfigError("nested section in an override", token=sub,
                              source=f"{path}:{where.get((name, sub), 0)}")
        keys: Dict[str, str] = {}
        key_lines: Dict[str, int] = {}
        meta: Dict[str, str] = {}
        for key in section.scalars:
            value = section[key]
            line = where.get((name, key), 0)
            if not isinstance(value, str):
                raise ConfigError("expected one value, not a list (quote it)",
                                  token=f"{key} = {value}", source=f"{path}:{line}")
            if key in META_KEYS:
                meta[key] = value
                continue
            try:
                specmod.canonical_keys(key, f"{path}:{line}")
            except InputError as err:
                raise ConfigError(err.message, token=err.token, source=err.source) from None
            keys[key] = value
            key_lines[key] = line
        item = Override(
            target=target, keys=keys, set_by=meta.get("set_by", ""),
            set_at=parse_time(meta["set_at"], f"{path}:{where.get((name, 'set_at'), 0)}")
            if meta.get("set_at") else None,
            reason=meta.get("reason", ""),
            expires=parse_time(meta["expires"],
                               f"{path}:{where.get((name, 'expires'), 0)}")
            if meta.get("expires") else None,
            lines=key_lines)
        try:
            item.spec(path)
        except InputError as err:
            raise ConfigError(err.message, token=err.token, source=err.source) from None
        items.append(item)
    return Overrides(path, tuple(items))


# -- changing (pure) ------------------------------------------------------------------


def with_set(overrides: Overrides, target: Target, spec_text: str, *, who: str,
             reason: str = "", for_s: Optional[int] = None,
             now: Optional[_dt.datetime] = None, source: str = "SPEC") -> Overrides:
    """``overrides`` with ``spec_text``'s keys set for ``target``: keys of the
    target's override that set the same qos values are replaced (``rate`` replaces
    ``rate``, ``rate_in`` and ``rate_out``), the others kept; who/when/why are the
    new ones (an empty ``reason`` keeps the earlier one), ``expires`` is
    ``now + for_s`` for the whole override (None: no expiry). Nothing written.

    :raises InputError: an empty spec, a bad key or value (named with ``source``),
        or a reason holding a line break.
    """
    now = now or utc_now()
    parsed = list(specmod.split_spec(spec_text, source))
    if not parsed:
        raise InputError("nothing to set (give key=value items)", token=spec_text,
                         source=source)
    specmod.parse_items(parsed)  # every key and value checked before anything changes
    if "\n" in reason or "\r" in reason:
        raise InputError("reason must be one line", token=reason, source="--reason")
    old = overrides.get(target)
    keys = dict(old.keys) if old else {}
    for word, value, _src in parsed:
        new = set(specmod.canonical_keys(word, source))
        for existing in list(keys):
            if set(specmod.canonical_keys(existing, source)) & new:
                del keys[existing]
        keys[word.strip().lower()] = value.strip()
    item = Override(target=target, keys=keys, set_by=who, set_at=now,
                    reason=reason or (old.reason if old else ""),
                    expires=now + _dt.timedelta(seconds=for_s) if for_s else None)
    item.spec(overrides.path)  # e.g. latency together with limit
    items = [o for o in overrides.items if o.target != target] + [item]
    return replace(overrides, items=tuple(items))


def with_unset(overrides: Overrides, target: Target, keys: Sequence[str] = (),
               source: str = "KEY") -> Overrides:
    """``overrides`` without ``target``'s override (no ``keys``) or without those
    qos keys (``rate`` also removes ``rate_in``/``rate_out``); an override left
    without keys is dropped. Nothing written.

    :raises InputError: ``target`` has no override, or none of ``keys`` is set.
    """
    old = overrides.get(target)
    if old is None:
        raise InputError("no override for this target (vif-qos overrides lists them)",
                         token=str(target), source="TARGET")
    items = [o for o in overrides.items if o.target != target]
    if keys:
        remove = set()
        for word in keys:
            remove |= set(specmod.canonical_keys(word, source))
        left = {k: v for k, v in old.keys.items()
                if not set(specmod.canonical_keys(k, source)) & remove}
        if left == old.keys:
            raise InputError(f"not set in the override of {target} (set: "
                             f"{', '.join(old.keys) or 'nothing'})",
                             token=" ".join(keys), source=source)
        if left:
            items.append(replace(old, keys=left))
    return replace(overrides, items=tuple(items))


# -- writing ----------------------------------------------------------------------


def render(overrides: Overrides) -> str:
    """The file's text (configobj; values quoted by configobj where needed)."""
    from configobj import ConfigObj

    cfg = ConfigObj(interpolation=False)
    cfg.initial_comment = list(HEADER)
    for item in overrides.items:
        section: Dict[str, str] = dict(item.keys)
        section["set_by"] = item.set_by
        if item.set_at is not None:
            section["set_at"] = format_time(item.set_at) or ""
        if item.reason:
            section["reason"] = item.reason
        if item.expires is not None:
            section["expires"] = format_time(item.expires) or ""
        cfg[item.target.section] = section
    try:
        lines = cfg.write()
    except Exception as err:  # configobj: "Value cannot be safely quoted"
        raise InputError(f"cannot be written to the overrides file: {err}",
                         source="--reason") from None
    return "\n".join(line.decode() if isinstance(line, bytes) else line
                     for line in lines) + "\n"


def save(overrides: Overrides) -> Overrides:
    """Write ``overrides`` to its path atomically (the directory is made, 0755;
    the file is 0644, written to a temp file beside it, fsynced, renamed over);
    returns them as read back (with line numbers). Callers hold the host lock.

    :raises EnvironmentProblem-like OSError: the state directory is not writable.
    """
    text = render(overrides)
    directory = os.path.dirname(os.path.abspath(overrides.path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = f"{overrides.path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, overrides.path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - a filesystem without directory fsync
        pass
    return parse_text(text, overrides.path)
