"""The host policy file ``/etc/xen/vif-qos.conf``: read with configobj, checked with
validate against the configspec shipped in the package (``policy.spec``).

:func:`load_policy` gives a :class:`Policy` or raises the first problem as
:class:`~vif_qos.errors.ConfigError`; :func:`check_policy` collects every problem
(``vif-qos check-config``). Every message is ``file:line: what: 'token'``.

ConfigObj keeps no line numbers for values: :func:`vif_qos.config.lines.scan_lines`
maps each section and key to its line. Parse errors (which ConfigObj does number)
are reported with its line numbers.

The file's sections (``vif-qos.conf.example`` explains every setting):
``[host]`` host settings, ``[bridges]`` uplink per bridge, ``[defaults]`` qos keys
for every vif, ``[pools]`` shared HTB classes, ``[domains]`` per-guest entries
matched by domain name glob, ``uuid:``, ``mac:`` or ``vif:`` (vif name glob).
"""

from __future__ import annotations

import os
import re
import stat
import time
from typing import Dict, List, Optional, Sequence, Tuple

from vif_qos.constants import DEFAULT_MINOR, POOL_MINOR_BASE, ROOT_MINOR
from vif_qos.core import duration
from vif_qos.core import spec as specmod
from vif_qos.core import units
from vif_qos.core.units import MAX_NUMBER_CHARS
from vif_qos.errors import ConfigError, InputError
from vif_qos.config.lines import scan_lines
from vif_qos.core.ifname import ifname_problem
from vif_qos.core.sizing import rate_floor_problem
from vif_qos.core.settings import (BUILTIN, KERNEL_MAX_BUCKET_US, BillingSettings,
                                   BridgeSettings, DomainEntry, Policy, PoolSettings)
from vif_qos.model import HostSettings

#: The policy file read when neither a path nor $VIF_QOS_CONFIG is given.
DEFAULT_PATH = "/etc/xen/vif-qos.conf"
ENV_VAR = "VIF_QOS_CONFIG"

#: A policy file larger than this is refused (a guard against reading a device or a
#: runaway file into memory; thousands of [domains] entries take well under 1 MiB).
MAX_FILE_BYTES = 16 << 20

SPEC_PATH = os.path.join(os.path.dirname(__file__), "policy.spec")
EXAMPLE_PATH = os.path.join(os.path.dirname(__file__), "vif-qos.conf.example")

MATCH_KINDS = ("name", "uuid", "mac", "vif")

#: uuid: and mac: entries compare exactly (any case), so their pattern must be one.
_EXACT_PATTERNS = {
    "uuid": (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                        re.IGNORECASE), "a uuid like 5c0b5f64-5717-4562-b3fc-2c963f66afa6"),
    "mac": (re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}", re.IGNORECASE),
            "a MAC like 00:16:3e:12:34:56"),
}


# --- validate checks --------------------------------------------------------------

_DEC_INT = re.compile(r"[+-]?[0-9]+")
_HEX_INT = re.compile(r"0x[0-9a-f]+")


def _validator():
    from validate import ValidateError, Validator, VdtTypeError

    class UnitError(ValidateError):
        pass

    def wrap(parse):
        def check(value, *args, **kwargs):
            if isinstance(value, list):
                raise VdtTypeError(value)
            try:
                return parse(value)
            except InputError as err:
                # "rate: unknown unit ..." -> "unknown unit ..." (the caller names the key)
                raise UnitError(err.message.split(": ", 1)[-1]) from None
        return check

    def hexint(value, min=None, max=None):  # noqa: A002 (validate's argument names)
        if isinstance(value, list):
            raise VdtTypeError(value)
        if isinstance(value, int):
            number = value
        else:
            # ASCII digits only: int() alone also takes '_' and any Unicode digit.
            text = str(value).strip().lower()
            if len(text) > MAX_NUMBER_CHARS:
                raise UnitError(f"not an integer of at most {MAX_NUMBER_CHARS} digits")
            if _HEX_INT.fullmatch(text):
                number = int(text, 16)
            elif _DEC_INT.fullmatch(text):
                number = int(text, 10)
            else:
                raise UnitError("not an integer (decimal, or hex with 0x)")
        if min is not None and number < int(str(min), 0):
            raise UnitError(f"below the smallest allowed value {min}")
        if max is not None and number > int(str(max), 0):
            raise UnitError(f"above the largest allowed value {max}")
        return number

    validator = Validator()
    builtin_integer = validator.functions["integer"]

    def integer(value, *args, **kwargs):
        if isinstance(value, str) and not _DEC_INT.fullmatch(value.strip()):
            raise UnitError("not an integer (decimal digits)")
        if isinstance(value, str) and len(value.strip()) > MAX_NUMBER_CHARS:
            raise UnitError(f"not an integer of at most {MAX_NUMBER_CHARS} digits")
        return builtin_integer(value, *args, **kwargs)

    validator.functions.update({
        "integer": integer,
        "rate": wrap(lambda v: units.parse_rate(v, None, "rate")),
        "time": wrap(lambda v: units.parse_time(v, None, "time")),
        "hexint": hexint,
        "duration": wrap(lambda v: duration.parse_duration(v, None, "duration")),
    })
    return validator


# --- loading ----------------------------------------------------------------------

class _Problems:
    def __init__(self, path: str, lines: Dict[Tuple[str, ...], int]):
        self.path = path
        self.lines = lines
        self.items: List[ConfigError] = []
        self.pools: List[str] = []
        self.raw_cfg: dict = {}  # the file's values as written, before validation

    def raw(self, converted: object, *keys: str) -> str:
        """The value of ``keys`` as the admin wrote it (errors quote that, not
        ``converted``, what validation made of it)."""
        node = _get(self.raw_cfg, keys[:-1])
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(converted) if value is None or isinstance(value, dict) else str(value)

    def where(self, *keys: str) -> str:
        keys_t = tuple(keys)
        while keys_t and keys_t not in self.lines:
            keys_t = keys_t[:-1]
        line = self.lines.get(keys_t)
        return f"{self.path}:{line}" if line else self.path

    def add(self, message: str, token: Optional[str], *keys: str) -> None:
        self.items.append(ConfigError(message, token=token, source=self.where(*keys)))

    def add_error(self, err: InputError) -> None:
        self.items.append(ConfigError(err.message, token=err.token, source=err.source))


def _section_label(keys: Sequence[str]) -> str:
    return "".join(f"[{k}]" if i == 0 else f"[[{k}]]" for i, k in enumerate(keys))


def check_policy(path: Optional[str] = None) -> Tuple[Optional[Policy], List[ConfigError]]:
    """Read and check the policy file; collect every problem instead of stopping.

    :returns: ``(policy, problems)``; ``policy`` is ``None`` when the file could
        not be parsed at all. A missing file at the default path (no ``path``, no
        ``$VIF_QOS_CONFIG``) gives the built-in policy and no problems.
    """
    if path == "":
        return None, [ConfigError("empty policy file name", token="")]
    explicit = path is not None or bool(os.environ.get(ENV_VAR))
    path = path or os.environ.get(ENV_VAR) or DEFAULT_PATH
    try:
        for attempt in (1, 2):
            before = os.stat(path)
            if not stat.S_ISREG(before.st_mode) and not stat.S_ISDIR(before.st_mode):
                # a FIFO would block the open, /dev/zero would never end
                return None, [ConfigError("policy file is not a regular file", source=path)]
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
                opened = os.fstat(handle.fileno())
            after = _settled_stat(path)
            if _same_file_state(before, opened) and _same_file_state(before, after):
                break
            if attempt == 2:
                return None, [ConfigError(
                    "policy file changed while it was read, twice (an edit in place: "
                    "write a new file and rename it over the old one, e.g. "
                    "vif-qos check-config --config NEW && mv NEW FILE)", source=path)]
    except FileNotFoundError:
        if explicit:
            return None, [ConfigError("policy file not found", source=path)]
        return Policy(), []
    except OSError as err:
        return None, [ConfigError(f"cannot read policy file: {err.strerror}", source=path)]
    if len(data) > MAX_FILE_BYTES:
        return None, [ConfigError(f"policy file is larger than {MAX_FILE_BYTES >> 20} MiB",
                                  source=path)]
    try:
        text = data.decode("utf-8-sig")  # an editor's BOM, as ConfigObj strips it
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        return None, [ConfigError("not UTF-8 text", source=f"{path}:{line}")]
    return check_policy_text(text, path)


#: A policy file modified less than this long ago may be in the middle of an edit
#: in place (truncated, the new text not all written yet): its state is looked at
#: again after this long, nanoseconds.
SETTLE_NS = 20_000_000


def _settled_stat(path: str) -> os.stat_result:
    """``os.stat(path)``; for a file modified within :data:`SETTLE_NS`, the stat
    taken that long later (so that a read between an editor's truncate and its
    write shows up as a change)."""
    first = os.stat(path)
    if 0 <= time.time_ns() - first.st_mtime_ns < SETTLE_NS:
        time.sleep(SETTLE_NS / 1e9)
        return os.stat(path)
    return first


def _same_file_state(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats show the same file with the same contents as far as the
    kernel tells: inode, size and modification time (ns)."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (
        b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def check_policy_text(text: str, path: str) -> Tuple[Optional[Policy], List[ConfigError]]:
    """:func:`check_policy` for text already read; ``path`` names it in messages."""
    from configobj import ConfigObj, ConfigObjError, flatten_errors, get_extra_values

    lines = text.splitlines()
    problems = _Problems(path, scan_lines(lines))
    try:
        cfg = ConfigObj(lines, configspec=SPEC_PATH, interpolation=False,
                        raise_errors=False, list_values=True)
    except ConfigObjError as err:
        for sub in getattr(err, "errors", None) or [err]:
            message = str(sub).rsplit(" at line ", 1)[0]
            line = getattr(sub, "line_number", None)
            problems.items.append(ConfigError(message, token=getattr(sub, "line", "").strip()
                                              or None,
                                              source=f"{path}:{line}" if line else path))
        return None, problems.items

    problems.raw_cfg = cfg.dict()
    validator = _validator()
    result = cfg.validate(validator, preserve_errors=True, copy=False)
    broken: List[Tuple[str, ...]] = []
    if result is not True:
        for sections, key, error in flatten_errors(cfg, result):
            keys = list(sections) + ([key] if key is not None else [])
            label = _section_label(sections) + (f" {key}" if key else "")
            raw = _raw(cfg, sections, key)
            if error is False:
                if key is None:
                    problems.add(f"{label}: missing section", None, *keys)
                else:
                    problems.add(f"{label}: missing required setting", None, *keys)
            else:
                message = str(error)
                kind = type(error).__name__
                if kind == "VdtTypeError" and raw is not None and "," in raw:
                    message = "one value expected, not a list (quote a value holding a comma)"
                elif kind in ("VdtTypeError", "VdtValueError", "VdtValueTooSmallError",
                              "VdtValueTooBigError"):
                    message = f"not allowed here, expected {_expected(cfg, sections, key)}"
                problems.add(f"{label}: {message}", raw, *keys)
            broken.append(tuple(keys))
        # Drop what failed and validate again, so that everything else is still
        # checked (check-config lists every problem, not just the first).
        for keys in broken:
            node = _get(cfg, keys[:-1])
            if keys and isinstance(node, dict) and keys[-1] in node \
                    and not isinstance(node[keys[-1]], dict):
                del node[keys[-1]]
        cfg.validate(validator, preserve_errors=True, copy=False)
    for sections, name in get_extra_values(cfg):
        keys = list(sections) + [name]
        kind = "section" if isinstance(_get(cfg, sections).get(name), dict) else "setting"
        problems.add(f"{_section_label(sections) or 'top level'}: unknown {kind}",
                     name, *keys)
    policy = _build(cfg, problems)
    problems.items.sort(key=_line_of)
    return (policy if not problems.items else None), problems.items


def _line_of(err: ConfigError) -> int:
    tail = (err.source or "").rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _expected(cfg, sections: Sequence[str], key: Optional[str]) -> str:
    node = cfg.configspec
    try:
        for name in sections:
            node = node[name] if name in node else node["__many__"]
        return str(node[key]) if key is not None else "a section"
    except (KeyError, TypeError):
        return "something else"


def _get(cfg, sections: Sequence[str]):
    node = cfg
    for name in sections:
        node = node.get(name, {}) if isinstance(node, dict) else {}
    return node


def _raw(cfg, sections: Sequence[str], key: Optional[str]) -> Optional[str]:
    node = _get(cfg, sections)
    if key is None or not isinstance(node, dict) or key not in node:
        return None
    value = node[key]
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return None if value is None else str(value)


def _set_in_file(problems: _Problems, *keys: str) -> bool:
    return tuple(keys) in problems.lines


def _spec_from_section(section, problems: _Problems, *keys: str) -> Dict[str, specmod.SpecValue]:
    items = []
    for word in specmod.KEY_WORDS:
        raw = section.get(word)
        if raw is None:
            continue
        source = problems.where(*keys, word)
        try:
            specmod.parse_items([(word, raw, source)])
        except InputError as err:
            problems.add_error(err)
            continue
        items.append((word, raw, source))
    try:
        return specmod.parse_items(items)
    except InputError as err:
        problems.add_error(err)
        return {}


def _build(cfg, problems: _Problems) -> Policy:
    """The :class:`Policy` of a validated configobj ``cfg``; every problem found is
    added to ``problems`` (the caller raises them together)."""
    policy = Policy(path=problems.path)
    _build_host(cfg["host"], len(cfg["pools"]), problems, policy)
    _build_bridges(cfg["bridges"], problems, policy)
    policy.defaults = _spec_from_section(cfg["defaults"], problems, "defaults")
    _build_pools(cfg["pools"], problems, policy)
    _build_domains(cfg["domains"], problems, policy)
    _check_pool_references(cfg["pools"].sections, problems, policy)
    policy.billing = _billing(cfg["billing"], list(cfg["pools"].sections), problems,
                              policy.sources)
    return policy


def _build_host(host, n_pools: int, problems: _Problems, policy: Policy) -> None:
    for key in ("mark_mask", "qdisc_major", "classid_min", "classid_max", "on_failure",
                "admission", "debug", "domain_config_dirs", "xen_rate_inbound",
                "xen_rate_outbound", "mtu", "max_burst_time", "leaf_qdisc"):
        policy.sources[f"host.{key}"] = problems.where("host", key) \
            if _set_in_file(problems, "host", key) else BUILTIN

    mask = host["mark_mask"]
    low = mask & -mask
    if ((mask // low) & ((mask // low) + 1)) != 0:
        problems.add("[host] mark_mask: must be one contiguous run of bits",
                     problems.raw(hex(mask), "host", "mark_mask"), "host", "mark_mask")
    if host["classid_min"] > host["classid_max"]:
        problems.add("[host] classid_min: above classid_max",
                     problems.raw(hex(host["classid_min"]), "host", "classid_min"),
                     "host", "classid_min")
    if host["classid_min"] < POOL_MINOR_BASE + n_pools:
        problems.add(f"[host] classid_min: must lie above the pool classes "
                     f"({POOL_MINOR_BASE:#x}..{POOL_MINOR_BASE + n_pools - 1:#x}) and the "
                     f"root/default classes ({ROOT_MINOR}, {DEFAULT_MINOR})",
                     problems.raw(hex(host["classid_min"]), "host", "classid_min"),
                     "host", "classid_min")
    if host["max_burst_time"] > KERNEL_MAX_BUCKET_US:
        problems.add("[host] max_burst_time: above 4s (the kernel keeps TBF bucket "
                     "times in 32-bit nanoseconds)",
                     problems.raw(host["max_burst_time"], "host", "max_burst_time"),
                     "host", "max_burst_time")
    policy.host = HostSettings(mark_mask=mask, qdisc_major=host["qdisc_major"],
                               classid_min=host["classid_min"],
                               classid_max=host["classid_max"],
                               on_failure=host["on_failure"], debug=host["debug"],
                               admission=host["admission"])
    policy.domain_config_dirs = [str(d) for d in host["domain_config_dirs"]]
    for directory in policy.domain_config_dirs:
        if not os.path.isabs(directory):
            problems.add("[host] domain_config_dirs: not an absolute path (a hotplug run "
                         "does not start in your working directory)", directory,
                         "host", "domain_config_dirs")
    policy.xen_rate_inbound = host["xen_rate_inbound"]
    policy.xen_rate_outbound = host["xen_rate_outbound"]
    policy.mtu_bytes = host["mtu"]
    policy.max_burst_time_us = min(host["max_burst_time"], KERNEL_MAX_BUCKET_US)
    policy.leaf_qdisc = host["leaf_qdisc"]


def _check_rate_floors(section, frame_bytes: int, problems: _Problems, *keys: str) -> None:
    """The shared classes' rates of ``section`` against the vifs' rate floor
    (:func:`vif_qos.core.sizing.rate_floor_problem`)."""
    for key in ("rate", "default_rate", "default_ceil", "ceil", "member_rate",
                "member_ceil"):
        rate = section.get(key)
        problem = rate_floor_problem(rate, frame_bytes) if isinstance(rate, int) else None
        if problem is not None:
            problems.add(f"{_section_label(keys)} {key}: too slow: {problem}",
                         problems.raw(units.format_rate(rate), *keys, key), *keys, key)


def _check_uplink(value, problems: _Problems, *keys: str) -> None:
    problem = None if value in (None, "auto") else ifname_problem(value)
    if problem is not None:
        problems.add(f"{_section_label(keys[:-1])} uplink: not a netdev name or "
                     f"'auto' ({problem})", str(value), *keys)


def _build_bridges(bridges, problems: _Problems, policy: Policy) -> None:
    """``[bridges]`` (the defaults of every bridge) and its ``[[name]]`` subsections."""
    frame = policy.frame_bytes
    src = policy.sources
    _check_rate_floors(bridges, frame, problems, "bridges")
    uplink = bridges["uplink"]
    _check_uplink(uplink, problems, "bridges", "uplink")
    bsrc = {}
    for key in ("uplink", "rate", "default_rate", "default_ceil"):
        bsrc[key] = problems.where("bridges", key) if _set_in_file(problems, "bridges", key) \
            else BUILTIN
        src[f"bridges.{key}"] = bsrc[key]
    policy.bridge_defaults = BridgeSettings(
        "*", None if uplink == "auto" else uplink, bridges["rate"],
        bridges["default_rate"], bridges["default_ceil"], bsrc)
    for name in bridges.sections:
        sub = bridges[name]
        _check_rate_floors(sub, frame, problems, "bridges", name)
        if ifname_problem(name) is not None:
            problems.add(f"[bridges]: not a bridge name ({ifname_problem(name)})", name,
                         "bridges", name)
        _check_uplink(sub["uplink"], problems, "bridges", name, "uplink")
        d = policy.bridge_defaults
        sources = dict(d.sources)
        for key in ("uplink", "rate", "default_rate", "default_ceil"):
            if sub.get(key) is not None:
                sources[key] = problems.where("bridges", name, key)
            src[f"bridges.{name}.{key}"] = sources[key]
        up = sub["uplink"] if sub["uplink"] is not None else (d.uplink or "auto")
        policy.bridges[name] = BridgeSettings(
            name, None if up == "auto" else up,
            sub["rate"] if sub["rate"] is not None else d.rate_bits_per_s,
            sub["default_rate"] if sub["default_rate"] is not None else d.default_rate_bits_per_s,
            sub["default_ceil"] if sub["default_ceil"] is not None else d.default_ceil_bits_per_s,
            sources)


def _build_pools(pools, problems: _Problems, policy: Policy) -> None:
    for index, name in enumerate(pools.sections):
        pool = pools[name]
        if not specmod._POOL_NAME.fullmatch(name):
            problems.add("[pools]: not a pool name (letters, digits, '_', '.', '-')", name,
                         "pools", name)
        elif name.lower() in specmod.NONE_WORDS:
            problems.add("[pools]: reserved name (pool = none means no pool)", name,
                         "pools", name)
        psrc = {key: problems.where("pools", name, key)
                for key in ("rate", "ceil", "member_rate", "member_ceil")
                if pool.get(key) is not None}
        if pool.get("rate") is None:
            continue  # reported as missing
        _check_rate_floors(pool, policy.frame_bytes, problems, "pools", name)
        if pool["ceil"] is not None and pool["ceil"] < pool["rate"]:
            problems.add(f"[pools][[{name}]] ceil: below the pool's rate "
                         f"({units.format_rate(pool['rate'])})",
                         problems.raw(units.format_rate(pool["ceil"]), "pools", name, "ceil"),
                         "pools", name, "ceil")
        policy.pools[name] = PoolSettings(
            name, index, pool["rate"], pool["ceil"], pool["member_rate"],
            pool["member_ceil"], problems.where("pools", name), psrc)


def _build_domains(domains, problems: _Problems, policy: Policy) -> None:
    for name in domains.sections:
        kind, sep, pattern = name.partition(":")
        if not sep:
            kind, pattern = "name", name
        kind = kind.strip().lower()
        pattern = pattern.strip()
        if kind not in MATCH_KINDS or not pattern:
            problems.add("[domains]: entry name must be a domain name glob or "
                         "name:, uuid:, mac:, vif: followed by a pattern", name,
                         "domains", name)
            continue
        exact = _EXACT_PATTERNS.get(kind)
        if exact is not None and not exact[0].fullmatch(pattern):
            # matched exactly, not as a glob: anything else would never match
            problems.add(f"[domains]: {kind}: entries match exactly, want {exact[1]}",
                         name, "domains", name)
            continue
        entry_spec = _spec_from_section(domains[name], problems, "domains", name)
        policy.domains.append(DomainEntry(kind, pattern, entry_spec,
                                          problems.where("domains", name)))


def _check_pool_references(pool_names: List[str], problems: _Problems,
                           policy: Policy) -> None:
    """Every ``pool =`` of the defaults and the domain entries names a defined pool."""
    for layer in [policy.defaults] + [e.spec for e in policy.domains]:
        unknown = specmod.unknown_pool(layer.get("pool"), pool_names)
        if unknown is not None:
            problems.add_error(unknown)


def _billing(section, pool_names: List[str], problems: _Problems,
             src: Dict[str, str]) -> BillingSettings:
    """``[billing]``; auto_overage needs a target and an overage pool that exists."""
    for key in ("day", "target", "overage_pool", "auto_overage", "cooldown", "retention"):
        src[f"billing.{key}"] = problems.where("billing", key) \
            if _set_in_file(problems, "billing", key) else BUILTIN
    settings = BillingSettings(day=section["day"], target_bits_per_s=section["target"],
                               overage_pool=str(section["overage_pool"]),
                               auto_overage=section["auto_overage"],
                               cooldown_s=section["cooldown"], retention_s=section["retention"])
    if settings.auto_overage:
        if settings.target_bits_per_s is None:
            problems.add("[billing] auto_overage: needs a target (target = 10mbit)", "yes",
                         "billing", "auto_overage")
        if settings.overage_pool not in pool_names:
            problems.add(f"[billing] overage_pool: no such pool in [pools] (defined: "
                         f"{', '.join(pool_names) or 'none'})", settings.overage_pool,
                         "billing", "overage_pool" if _set_in_file(
                             problems, "billing", "overage_pool") else "auto_overage")
    return settings


def load_policy(path: Optional[str] = None) -> Policy:
    """Load the host policy.

    :param path: the policy file; ``None`` means ``$VIF_QOS_CONFIG``, else
        ``/etc/xen/vif-qos.conf``. A missing file at that default path gives the
        built-in defaults.
    :raises ConfigError: an explicitly named file is missing, or the file is not
        valid (the first problem, as ``file:line: message: 'token'``; the message
        says how many more ``vif-qos check-config`` would list).
    """
    policy, problems = check_policy(path)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            more = len(problems) - 1
            raise ConfigError(f"{first.message} (and {more} more problem"
                              f"{'s' if more > 1 else ''}: run vif-qos check-config)",
                              token=first.token, source=first.source)
        raise first
    assert policy is not None
    return policy
