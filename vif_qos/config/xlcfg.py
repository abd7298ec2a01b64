"""xl domain config files: a real parser (no ``eval``) and the ``qos = [...]`` lookup.

The syntax is xl's own, from Xen's ``tools/libs/util/libxlu_cfg_l.l`` (lexer) and
``libxlu_cfg_y.y`` (grammar):

- a setting is ``name = value`` or ``name += value``; settings end at a newline
  or ``;``; the last one may end at end of file;
- a name is ``[a-z][._0-9a-z]*`` (lower case only);
- a value is a string in single or double quotes (no newline inside; escapes
  ``\\" \\' \\\\ \\a \\b \\f \\n \\r \\t \\v``), a number ``[0-9][0-9a-fx]*``
  (kept as its text), or a list ``[ value, value, ]`` that may span lines and
  may end with a comma;
- ``#`` starts a comment that runs to the end of the line; spaces and tabs
  separate tokens; anything else (``+ - . ( ) :`` suggest a Python-style xm
  file) is a lexical error;
- a later setting of the same name replaces an earlier one; ``+=`` appends to a
  list or a string set before it.

vif-qos reads three settings: ``name`` (to find a domain's file), ``qos``, a
list of qos spec strings indexed by devid like ``vif = [...]`` (the entry for
devid N is ``qos[N]``), and the ``vif`` entries' ``rate=``, ``bridge=``, ``mac=``
and ``vifname=`` (:func:`vif_line_values`: what xl would write to the backend). xl ignores unknown top-level settings, so the file stays
valid for xl. Escapes ``\\x..`` and ``\\0..`` that xl also knows are refused here
(nothing a qos spec needs).

Errors raise :class:`vif_qos.errors.ConfigError` with ``file:line`` and the token
(a ``vif`` entry's bad value: :class:`~vif_qos.errors.InputError`, the same).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from vif_qos.core import xenrate
from vif_qos.core.ifname import check_ifname
from vif_qos.errors import ConfigError

#: Files larger than this are not domain config files (skipped when searching).
MAX_FILE_BYTES = 1 << 20

#: Deepest nesting of lists accepted (xl's own grammar allows nesting; nothing a
#: domain config needs comes close, and deeper input would exhaust the stack).
MAX_LIST_DEPTH = 100

_TOKEN = re.compile(r"""
    (?P<ws>[ \t]+)
  | (?P<newline>\n|\#[^\n]*(\n|\Z))
  | (?P<ident>[a-z][._0-9a-z]*)
  | (?P<number>[0-9][0-9a-fx]*)
  | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<add>\+=)
  | (?P<punct>[,\[\]=;])
""", re.VERBOSE)

_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
            "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


@dataclass(frozen=True)
class Atom:
    """A string or number value and the line it is on (1-based)."""

    text: str
    line: int
    is_string: bool = True


XlValue = Union[Atom, "XlList"]


@dataclass(frozen=True)
class XlList:
    """A list value; ``line`` is the line of its ``[``."""

    items: Tuple[XlValue, ...]
    line: int


@dataclass
class XlConfig:
    """A parsed xl config file: setting name -> (value, line of the value)."""

    source: str
    settings: Dict[str, XlValue] = field(default_factory=dict)

    def where(self, line: int) -> str:
        return f"{self.source}:{line}"

    def get_string(self, name: str) -> Optional[Atom]:
        """The string setting ``name``, ``None`` if absent.

        :raises ConfigError: it is a list or a number.
        """
        value = self.settings.get(name)
        if value is None:
            return None
        if not isinstance(value, Atom) or not value.is_string:
            raise ConfigError(f"{name} must be a quoted string", token=_show(value),
                              source=self.where(value.line))
        return value

    def get_string_list(self, name: str) -> Optional[List[Atom]]:
        """The list-of-strings setting ``name``, ``None`` if absent.

        :raises ConfigError: not a list, or an item is not a quoted string.
        """
        value = self.settings.get(name)
        if value is None:
            return None
        if not isinstance(value, XlList):
            raise ConfigError(f"{name} must be a list like vif = [ '...', ... ]",
                              token=_show(value), source=self.where(value.line))
        for item in value.items:
            if not isinstance(item, Atom) or not item.is_string:
                raise ConfigError(f"{name}: each entry must be a quoted string",
                                  token=_show(item), source=self.where(item.line))
        return list(value.items)  # type: ignore[arg-type]


def _show(value: XlValue) -> str:
    if isinstance(value, Atom):
        return value.text
    return "[" + ", ".join(_show(v) for v in value.items) + "]"


def _dequote(raw: str, source: str, line: int) -> str:
    out = []
    i = 1
    while i < len(raw) - 1:
        c = raw[i]
        if c == "\\":
            nc = raw[i + 1]
            if nc not in _ESCAPES:
                raise ConfigError("unsupported escape in quoted string",
                                  token="\\" + nc, source=f"{source}:{line}")
            out.append(_ESCAPES[nc])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _tokens(text: str, source: str) -> Iterator[Tuple[str, str, int]]:
    """Yield (kind, text, line). Kinds: ident number string add punct newline eof."""
    line = 1
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            bad = re.match(r"[^ \t\n]*", text[pos:]).group(0) or text[pos]
            hint = ""
            if text[pos] in "+-.():":
                hint = " (this looks like Python: xm-style files are not xl syntax)"
            raise ConfigError(f"lexical error, not xl config syntax{hint}", token=bad,
                              source=f"{source}:{line}")
        kind = match.lastgroup
        value = match.group(kind)
        pos = match.end()
        if kind == "ws":
            continue
        if kind == "newline":
            yield "newline", "\n", line
            line += 1
            continue
        if kind == "string":
            value = _dequote(value, source, line)
        yield kind, value, line
    yield "eof", "", line


class _Parser:
    def __init__(self, text: str, source: str):
        self.source = source
        self.tokens = list(_tokens(text, source))
        self.pos = 0

    def peek(self) -> Tuple[str, str, int]:
        return self.tokens[self.pos]

    def take(self) -> Tuple[str, str, int]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, what: str, token: Tuple[str, str, int]) -> ConfigError:
        shown = {"newline": "end of line", "eof": "end of file"}.get(token[0], token[1])
        return ConfigError(f"syntax error, expected {what}", token=shown,
                           source=f"{self.source}:{token[2]}")

    def skip_newlines(self) -> None:
        while self.peek()[0] == "newline":
            self.take()

    def value(self, depth: int = 0) -> XlValue:
        kind, text, line = self.take()
        if kind == "string":
            return Atom(text, line, True)
        if kind == "number":
            return Atom(text, line, False)
        if kind == "punct" and text == "[":
            if depth >= MAX_LIST_DEPTH:
                raise ConfigError(f"lists nested more than {MAX_LIST_DEPTH} deep",
                                  token=text, source=f"{self.source}:{line}")
            items: List[XlValue] = []
            self.skip_newlines()
            while True:
                if self.peek()[:2] == ("punct", "]"):
                    self.take()
                    return XlList(tuple(items), line)
                items.append(self.value(depth + 1))
                self.skip_newlines()
                nxt = self.take()
                if nxt[:2] == ("punct", "]"):
                    return XlList(tuple(items), line)
                if nxt[:2] != ("punct", ","):
                    raise self.error("',' or ']' in a list", nxt)
                self.skip_newlines()
        raise self.error("a quoted string, a number or '['", (kind, text, line))

    def parse(self) -> XlConfig:
        config = XlConfig(self.source)
        while True:
            kind, text, line = self.take()
            if kind == "eof":
                return config
            if kind == "newline" or (kind == "punct" and text == ";"):
                continue
            if kind != "ident":
                raise self.error("a setting name (lower case)", (kind, text, line))
            op = self.take()
            if op[0] == "add":
                adding = True
            elif op[:2] == ("punct", "="):
                adding = False
            else:
                raise self.error("'=' after the setting name", op)
            value = self.value()
            end = self.peek()
            if end[0] not in ("newline", "eof") and end[:2] != ("punct", ";"):
                raise self.error("end of line or ';' after the value", end)
            if adding and text in config.settings:
                value = self.concat(config.settings[text], value, text)
            config.settings[text] = value

    def concat(self, old: XlValue, new: XlValue, name: str) -> XlValue:
        # libxlu_cfg.c xlu__cfg_concat_vals: both strings or both lists.
        if isinstance(old, XlList) and isinstance(new, XlList):
            return XlList(old.items + new.items, old.line)
        if isinstance(old, Atom) and isinstance(new, Atom) and old.is_string and new.is_string:
            return Atom(old.text + new.text, old.line, True)
        raise ConfigError(f"{name} += needs the same type as before (list or string)",
                          token=_show(new), source=f"{self.source}:{new.line}")


def parse_xl_config(text: str, source: str) -> XlConfig:
    """Parse xl config text; ``source`` names it in errors (``file`` gives ``file:line``).

    :raises ConfigError: the text is not xl config syntax.
    """
    return _Parser(text, source).parse()


def load_xl_config(path: str) -> XlConfig:
    """Read and parse one xl config file.

    :raises ConfigError: unreadable, or not xl syntax.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read domain config file: {err.strerror}",
                          source=path) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError("domain config file is larger than 1 MiB", source=path)
    # xl's lexer is 8-bit (libxlu_cfg_l.l: %option 8bit): bytes that are not UTF-8
    # (a Latin-1 comment) are fine for xl, so they are kept as surrogate escapes
    # (as vif_qos.xen.xenstore keeps xenstore values) and only a token that holds one
    # is refused, by whatever parses it.
    return parse_xl_config(data.decode("utf-8", "surrogateescape"), path)


def qos_entry(config: XlConfig, devid: int) -> Optional[Tuple[str, str]]:
    """``(qos spec, "file:line")`` for ``devid`` from the ``qos = [...]`` list.

    ``None`` when the file has no ``qos`` or the list is shorter than ``devid+1``.

    :raises ConfigError: ``qos`` is not a list of quoted strings.
    """
    entries = config.get_string_list("qos")
    if entries is None or devid < 0 or devid >= len(entries):
        return None
    atom = entries[devid]
    return atom.text, config.where(atom.line)


# -- the vif = [...] entries ---------------------------------------------------------

#: vifspec keys of an xl ``vif = [...]`` entry that vif-qos reads (``plan --domain``,
#: ``check-config``), as libxl would write them to the backend directory (xl's ``rate=``, ``bridge=``,
#: ``mac=``, ``vifname=``).
VIF_LINE_KEYS = ("rate", "bridge", "mac", "vifname")


def vif_line_values(text: str, where: str) -> Dict[str, str]:
    """What xl would write to the backend directory for one ``vif = [...]`` entry:
    ``xen_rate`` (the backend form of ``rate=``) with ``xen_rate_source``,
    ``bridge``, ``mac``, ``vif`` (``vifname=``).
    ``plan --domain`` reads a guest that is not running yet with it, ``check-config``
    checks every entry with it.

    :raises InputError: a ``rate=`` xl refuses, a ``bridge=``/``vifname=`` that is
        not a netdev name; each naming the value as written and ``where``.
    """
    spec: Dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = item.strip().partition("=")
        if eq and key.strip() in VIF_LINE_KEYS:
            spec[key.strip()] = value.strip()
    values: Dict[str, str] = {}
    if "rate" in spec:
        source = f"{where} (vif rate=)"
        xenrate.xl_rate_bits_per_s(spec["rate"], source)  # errors quote it as given
        values["xen_rate"] = xenrate.parse_xl_rate(spec["rate"], source)
        values["xen_rate_source"] = source
    if "bridge" in spec:
        values["bridge"] = check_ifname(spec["bridge"], f"{where} (vif bridge=)", "bridge")
    if "mac" in spec:
        values["mac"] = spec["mac"]
    if "vifname" in spec:
        values["vif"] = check_ifname(spec["vifname"], f"{where} (vif vifname=)", "vifname")
    return values


_NAME_LINE = re.compile(r"(?:^|;)[ \t]*name[ \t]*=[ \t]*(['\"])(.*?)\1", re.MULTILINE)


def candidate_files(dirs: Sequence[str],
                    skipped: Optional[List[Tuple[str, str]]] = None) -> Iterator[str]:
    """Regular files directly in ``dirs`` (in order, sorted by name, each real file
    once), skipping hidden files and editor/package leftovers. Files (and
    directories) passed over because they cannot be read or exceed
    :data:`MAX_FILE_BYTES` are appended to ``skipped`` as ``(path, reason)``."""
    seen = set()
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError as err:
            if skipped is not None and not isinstance(err, FileNotFoundError):
                skipped.append((directory, f"directory not readable: {err.strerror}"))
            continue
        for name in names:
            if name.startswith(".") or name.endswith(("~", ".dpkg-old", ".dpkg-dist",
                                                      ".dpkg-new", ".rpmnew", ".rpmsave",
                                                      ".bak", ".swp")):
                continue
            path = os.path.join(directory, name)
            try:
                if not os.path.isfile(path):
                    continue
                if os.path.getsize(path) > MAX_FILE_BYTES:
                    if skipped is not None:
                        skipped.append((path, f"larger than {MAX_FILE_BYTES >> 20} MiB"))
                    continue
                if not os.access(path, os.R_OK):
                    if skipped is not None:
                        skipped.append((path, "not readable"))
                    continue
                real = os.path.realpath(path)
            except OSError as err:
                if skipped is not None:
                    skipped.append((path, f"not readable: {err.strerror}"))
                continue
            if real in seen:
                continue
            seen.add(real)
            yield path


def _quick_names(path: str) -> List[str]:
    """Names in ``name = "..."`` lines, read without a full parse (cheap pre-filter)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_FILE_BYTES).decode("utf-8", "surrogateescape")
    except OSError:
        return []
    return [m.group(2) for m in _NAME_LINE.finditer(text)]


def find_domain_config(domain_name: str, dirs: Sequence[str]) -> Tuple[Optional[XlConfig], List[str]]:
    """The parsed config file whose ``name`` is ``domain_name``, searched in ``dirs``.

    Files that do not mention the name are not parsed, so an unrelated file that
    is not xl syntax (``xend-config.sxp``) never gets in the way. Returns
    ``(config or None, other files that also claim the name)``: the first match
    (directory order, then file name) wins.

    :raises ConfigError: the matching file is not valid xl syntax.
    """
    found: Optional[XlConfig] = None
    others: List[str] = []
    for path in candidate_files(dirs):
        if domain_name not in _quick_names(path):
            continue
        config = load_xl_config(path)
        name = config.get_string("name")
        if name is None or name.text != domain_name:
            continue
        if found is None:
            found = config
        else:
            others.append(path)
    return found, others
