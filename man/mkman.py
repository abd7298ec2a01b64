#!/usr/bin/env python3
"""Generate the man pages vif-qos(8) and vif-qos.conf(5) from the sources.

- ``vif-qos.8``: one section per command of ``vif_qos.cli.COMMANDS``, built from the
  argparse parser each module's ``configure(parser, name)`` fills (synopsis, every
  option with its metavar and help) and the module's docstring; the hotplug commands
  from ``vif_qos.xen.hotplug.HOTPLUG_WORDS`` (their ``key=value`` words);
- ``vif-qos.conf.5``: the sections and keys of ``vif_qos/config/policy.spec`` (check,
  built-in default), each described by the comments above it in
  ``vif_qos/config/vif-qos.conf.example``, then that example file whole.

Usage: ``python3 man/mkman.py [OUTDIR]`` (default: this directory). The Debian
package build runs it (the .deb's pages are generated at build time); the copies
committed beside this script go into the wheel, and tests/test_manpages.py fails
when they differ from what this script generates now.

Nothing here needs pyroute2, nftables or configobj: the command modules import
them only when they run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Dict, Iterator, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from vif_qos import __version__  # noqa: E402
from vif_qos.cli import COMMANDS, HOTPLUG_COMMANDS, _Parser  # noqa: E402

PAGES = ("vif-qos.8", "vif-qos.conf.5")
#: A fixed date keeps the output reproducible (the page says which version it is).
HEADER = '.TH {name} {section} "" "vif-qos {version}" "{title}"\n'


# -- roff ------------------------------------------------------------------------------


def esc(text: str) -> str:
    """Plain text as roff: backslashes, hyphens of option-like words, leading dots."""
    text = text.replace("\\", "\\e")
    text = re.sub(r"(?<![\w])-", r"\\-", text)
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)


def line(text: str) -> str:
    """One roff text line: a line starting with '.' or "'" is protected."""
    text = esc(text)
    return "\\&" + text if text[:1] in (".", "'") else text


#: Docstrings cite the project's design notes, which are not shipped: a man page
#: drops those citations.
_NOTES = re.compile(r"\s*\((?:[^()]*?)(?:design|cases|realxen)\.md[^()]*\)")


def inline(text: str) -> str:
    """A docstring paragraph's text: ``code`` and :role:`x` become bold words."""
    text = _NOTES.sub("", text)
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    parts = re.split(r"``([^`]+)``", text)
    out = []
    for i, part in enumerate(parts):
        part = esc(part.replace("`", ""))
        out.append(f"\\fB{part}\\fR" if i % 2 else part)
    joined = "".join(out)
    return "\\&" + joined if joined[:1] in (".", "'") else joined


def docstring_roff(doc: str) -> List[str]:
    """A module docstring (after its summary paragraph) as roff paragraphs; indented
    blocks after ``::`` and bullet lists stay as written (no fill)."""
    lines = doc.strip("\n").splitlines()
    while lines and lines[0].strip():  # the summary paragraph: the command's help says it
        lines = lines[1:]
    out: List[str] = []
    para: List[str] = []
    literal = False

    def flush() -> None:
        if para:
            out.append(".PP")
            out.append(inline(" ".join(p.strip() for p in para)))
            para.clear()

    i = 0
    while i < len(lines):
        text = lines[i]
        if literal:
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += [".PP", ".nf", ".RS 4"] + [line(b) if b else "" for b in block] + \
                [".RE", ".fi"]
            literal = False
            continue
        if not text.strip():
            flush()
        elif re.match(r"\s*[-*] ", text):
            flush()
            item = [text.strip()[2:]]
            while i + 1 < len(lines) and lines[i + 1].startswith("  ") and \
                    not re.match(r"\s*[-*] ", lines[i + 1]) and lines[i + 1].strip():
                i += 1
                item.append(lines[i].strip())
            out += [".IP \\(bu 2", inline(" ".join(item))]
        else:
            if text.rstrip().endswith("::"):
                para.append(text.rstrip()[:-1])
                flush()
                literal = True
            else:
                para.append(text)
        i += 1
    flush()
    return out


# -- vif-qos(8) ------------------------------------------------------------------------


def command_parsers() -> Iterator[Tuple[str, str, str, Optional[argparse.ArgumentParser]]]:
    """``(name, module, help, parser)`` per command, in COMMANDS order; the parser
    is ``None`` for the hotplug commands (they take key=value words)."""
    for name, (module_name, text) in COMMANDS.items():
        if name in HOTPLUG_COMMANDS:
            yield name, module_name, text, None
            continue
        module = importlib.import_module(module_name)
        parser = _Parser(prog=f"vif-qos {name}", description=text)
        module.configure(parser, name)
        yield name, module_name, text, parser


def synopsis(parser: argparse.ArgumentParser) -> str:
    usage = " ".join(parser.format_usage().replace(" [-h]", "", 1).split())
    return usage[len("usage: "):] if usage.startswith("usage: ") else usage


def option_entries(parser: argparse.ArgumentParser) -> List[Tuple[str, str]]:
    """``(term, help)`` for every argument of ``parser`` but ``-h``, help expanded
    as argparse prints it (``%(default)s``)."""
    formatter = parser._get_formatter()
    entries = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                metavar = " " + formatter._format_args(action, action.dest.upper())
            term = ", ".join(f"{opt}{metavar}" for opt in action.option_strings)
        else:
            term = formatter._format_args(action, action.dest)
        helptext = formatter._expand_help(action) if action.help else ""
        entries.append((term, " ".join(helptext.split())))
    return entries


def hotplug_section(name: str, text: str, module_name: str) -> List[str]:
    type_if = "tap" if name in ("add", "remove") else "vif"
    out = [f".SS {esc(name)}", f".B vif-qos {esc(name)} type_if={type_if}",
           ".RI [ key = value \" ...]\"", ".PP", line(text + ".")]
    return out


def hotplug_words(module_name: str) -> List[str]:
    hotplug = importlib.import_module(module_name)
    out = [".SS The hotplug commands' words",
           ".PP",
           line("online, offline, add and remove take Xen's key=value words, as "
                "vif-bridge's hook and the script= wrapper pass them; each word overrides "
                "the environment variable of the same name (vif-common.sh's "
                "evalVariables). The first word without '=' is the command."),
           ".PP",
           ".nf", ".RS 4"] + [line(l) for l in hotplug.USAGE.format(command="COMMAND")
                              .splitlines()] + [".RE", ".fi"]
    for key, metavar, meaning in hotplug.HOTPLUG_WORDS:
        out += [".TP", f"\\fB{esc(key)}\\fR=\\fI{esc(metavar)}\\fR", line(meaning)]
    out += docstring_roff(hotplug.__doc__ or "")
    return out


def environment_variables() -> List[str]:
    """Every ``VIF_QOS_*`` name the package's source mentions, sorted."""
    names = set()
    package = os.path.join(os.path.dirname(HERE), "vif_qos")
    for base, _dirs, files in os.walk(package):
        for fname in files:
            if fname.endswith(".py"):
                with open(os.path.join(base, fname), encoding="utf-8") as fh:
                    names.update(re.findall(r"\bVIF_QOS_[A-Z][A-Z_]*[A-Z]\b", fh.read()))
    return sorted(names)


#: What each variable does, for the admin; a variable not listed here is shown
#: with the module that reads it.
ENV_MEANINGS = {
    "VIF_QOS_CONFIG": "the policy file (default /etc/xen/vif-qos.conf)",
    "VIF_QOS_DEBUG": "1: log every step (as debug = yes in [host]) and print an "
                     "unexpected error's Python traceback",
    "VIF_QOS_HOTPLUG_LOG": "the hotplug runs' log file (default "
                           "/var/log/xen/xen-hotplug.log)",
    "VIF_QOS_HOTPLUG_TIMEOUT": "seconds a whole hotplug run may take (default 30, "
                               "inside libxl's 40)",
    "VIF_QOS_RUN_DIR": "the directory of the host lock (default /run/vif-qos)",
    "VIF_QOS_STATE_DIR": "vif-qos's state directory (default /var/lib/vif-qos)",
    "VIF_QOS_SYSLOG": "0: hotplug runs do not log to syslog",
    "VIF_QOS_XENSTORE_TIMEOUT": "seconds per xenstore tool run (default 5)",
}


def env_meaning(name: str) -> str:
    """The module that reads the variable (``environ.get("NAME"`` or a constant set
    to it), the product's before the simulation's; else the first that names it."""
    package = os.path.join(os.path.dirname(HERE), "vif_qos")
    found = []
    for base, _dirs, files in sorted(os.walk(package)):
        for fname in sorted(files):
            if not fname.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(base, fname), os.path.dirname(HERE))
            with open(os.path.join(base, fname), encoding="utf-8") as fh:
                text = fh.read()
            if name not in text:
                continue
            reads = re.search(rf'(get\(|\[|=\s*)"{name}"', text) is not None
            found.append((not reads, rel.startswith(os.path.join("vif_qos", "sim")),
                          rel[:-3].replace(os.sep, ".")))
    return min(found)[2] if found else ""


def vif_qos_8() -> str:
    out = [HEADER.format(name="VIF\\-QOS", section=8, version=__version__,
                         title="System Administration").rstrip("\n"),
           ".\\\" Generated by man/mkman.py from vif_qos/cli; do not edit.",
           ".SH NAME", "vif\\-qos \\- per\\-guest bandwidth shaping for Xen dom0 hosts",
           ".SH SYNOPSIS", ".B vif\\-qos", ".I COMMAND", ".RI [ ARGS ]", ".br",
           ".B vif\\-qos \\-\\-version", ".br", ".B vif\\-qos \\-\\-help",
           ".SH DESCRIPTION",
           line("vif-qos shapes the network traffic of Xen guests on a Linux dom0: a TBF "
                "on each guest's vif limits the traffic toward the guest (inbound), an HTB "
                "leaf class on the bridge's physical uplink the traffic from the guest "
                "(outbound), and an nftables bridge table classifies the guest's frames "
                "into that class. Xen's hotplug scripts run it for every vif (the "
                "vif-post.d hook, or script=vif-qos); the host policy is "
                "/etc/xen/vif-qos.conf, see vif-qos.conf(5)."),
           ".PP",
           line("Exit status: 0 on success, 2 for bad input (a one-line error naming the "
                "bad token and where it came from), 1 for other failures, 141 when the "
                "reader of the output went away."),
           ".SH COMMANDS"]
    seen_modules = set()
    hotplug_module = None
    for name, module_name, text, parser in command_parsers():
        if parser is None:
            out += hotplug_section(name, text, module_name)
            hotplug_module = module_name
            continue
        out += [f".SS {esc(name)}", f".B {esc(synopsis(parser))}",
                ".PP", line(text[:1].upper() + text[1:] + ".")]
        for term, helptext in option_entries(parser):
            out += [".TP", f"\\fB{esc(term)}\\fR", line(helptext)]
        if module_name not in seen_modules:
            seen_modules.add(module_name)
            out += docstring_roff(importlib.import_module(module_name).__doc__ or "")
    if hotplug_module:
        out += hotplug_words(hotplug_module)
    out += [".SH ENVIRONMENT"]
    for name in environment_variables():
        out += [".TP", f"\\fB{esc(name)}\\fR", line(ENV_MEANINGS.get(name) or f"see {env_meaning(name)}")]
    out += [".SH FILES",
            ".TP", "\\fB/etc/xen/vif\\-qos.conf\\fR", "the host policy, see vif\\-qos.conf(5)",
            ".TP", "\\fB/etc/xen/scripts/vif\\-post.d/00\\-vif\\-qos.hook\\fR",
            line("sourced by vif-bridge, vif-route and vif-nat after a vif joined or left"),
            ".TP", "\\fB/etc/xen/scripts/vif\\-qos\\fR",
            line("the script=vif-qos wrapper around vif-bridge"),
            ".TP", "\\fB85\\-vif\\-qos.rules\\fR",
            line("udev: vif-qos cleanup when a guest netdev goes (/lib/udev/rules.d from "
                 "the Debian package, /etc/udev/rules.d from vif-qos install)"),
            ".TP", "\\fB/var/lib/vif\\-qos\\fR", line("vif-qos's state ($VIF_QOS_STATE_DIR)"),
            ".TP", "\\fB/run/vif\\-qos\\fR", line("the host lock ($VIF_QOS_RUN_DIR)"),
            ".SH SEE ALSO", "vif\\-qos.conf(5), xl.cfg(5), xl\\-network\\-configuration(5), "
            "tc\\-tbf(8), tc\\-htb(8), nft(8)", ""]
    return "\n".join(out)


# -- vif-qos.conf(5) -------------------------------------------------------------------


def read_spec(path: str) -> List[Tuple[str, str, str]]:
    """``(section path, key, check)`` per key of the configspec, in file order;
    a section path is ``host`` or ``pools/NAME`` (``__many__`` shown as NAME)."""
    entries = []
    stack: List[str] = []
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            m = re.match(r"^(\[+)(.+?)(\]+)$", text)
            if m:
                depth = len(m.group(1))
                name = "NAME" if m.group(2) == "__many__" else m.group(2)
                stack = stack[:depth - 1] + [name]
                continue
            key, _, check = text.partition("=")
            entries.append(("/".join(stack), key.strip(), check.strip()))
    return entries


class ExampleDoc:
    """What the example file says: its header comment; per section, an introduction
    (a comment block not directly above a key), the meaning of keys listed in a
    ``#   key   meaning`` table, and the comment directly above each key line (a
    ``# key = value`` line counts: the example shows some defaults commented out).
    A block directly above several keys belongs to the first; the others point to it."""

    KEY_LINE = re.compile(r"^([a-z_]+)\s*=|^#\s?([a-z_]+) = \S+$")
    TABLE_LINE = re.compile(r"^\s{2,}([a-z_]+)\s{2,}(\S.*)$")

    def __init__(self, path: str, keys: set):
        self.keys = keys
        self.header: List[str] = []
        self.intro: Dict[str, List[str]] = {}
        self.table: Dict[Tuple[str, str], str] = {}
        self.above: Dict[Tuple[str, str], List[str]] = {}
        self.shares: Dict[Tuple[str, str], str] = {}
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        section: Optional[str] = None
        block: List[str] = []
        last_key: Optional[str] = None   # the key the previous line set
        for raw in lines + [""]:
            text = raw.strip()
            if re.match(r"^\[[^\[].*\]$", text):
                if section is None:
                    self.header = block
                section, block, last_key = text[1:-1], [], None
                continue
            if section is None:
                block.append(text[2:] if text.startswith("# ") else text.lstrip("#"))
                continue
            if raw[:1].isspace():       # the examples' own subsections and comments
                block, last_key = [], None
                continue
            key = self.KEY_LINE.match(text)
            if key:
                name = key.group(1) or key.group(2)
                if block and not self._is_table(block):
                    self.above[(section, name)] = block
                elif block:
                    self._take_table(section, block)
                    self.intro.setdefault(section, block)
                elif last_key is not None:
                    self.shares[(section, name)] = last_key
                block, last_key = [], name
                continue
            if text.startswith("#") and not key:
                block.append(text[2:] if text.startswith("# ") else text[1:])
                continue
            if block:                  # a block that no key follows: the introduction
                self._take_table(section, block)
                self.intro.setdefault(section, block)
            block, last_key = [], None

    def _table_key(self, text: str) -> Optional[re.Match]:
        m = self.TABLE_LINE.match(text)
        return m if m and m.group(1) in self.keys else None

    def _is_table(self, block: List[str]) -> bool:
        return any(self._table_key(b) for b in block)

    def _take_table(self, section: str, block: List[str]) -> None:
        current = None
        for b in block:
            m = self._table_key(b)
            if m:
                current = m.group(1)
                self.table[(section, current)] = m.group(2).strip()
            elif current and b.startswith("     ") and b.strip():
                self.table[(section, current)] += " " + b.strip()
            else:
                current = None

    def meaning(self, section: str, key: str) -> List[str]:
        """The key's description as roff lines, ``[]`` when the example has none."""
        if (section, key) in self.table:
            return [line(self.table[(section, key)])]
        if (section, key) in self.above:
            return comment_roff(self.above[(section, key)])[1:]
        if (section, key) in self.shares:
            return [line(f"see {self.shares[(section, key)]} above")]
        where = "defaults" if section == "domains" else section
        if (where, key) in self.table:
            return [line(self.table[(where, key)])]
        for (sec, other), text in self.table.items():   # tc's alias of a key
            if sec == where and re.search(rf"\b{key}\b", text):
                return [line(f"accepted for {other} (tc's name)")]
        return []

    def intro_lines(self, section: str) -> List[str]:
        """The section's introduction without its key table."""
        out, in_table = [], False
        for text in self.intro.get(section, []):
            if self._table_key(text):
                in_table = True
            elif not (in_table and text.startswith("     ")):
                in_table = False
                out.append(text)
        return out


def comment_roff(lines: List[str]) -> List[str]:
    """Comment lines as roff paragraphs (split at empty lines); a paragraph with
    indented lines (a table) keeps its line breaks."""
    out: List[str] = []
    para: List[str] = []
    for text in lines + [""]:
        if text.strip():
            para.append(text)
        elif para:
            if any(p.startswith("  ") for p in para):
                out += [".PP", ".nf"] + [line(p) for p in para] + [".fi"]
            else:
                out += [".PP", line(" ".join(p.strip() for p in para))]
            para = []
    return out


def check_words(check: str) -> Tuple[str, str]:
    """``rate(default=1gbit)`` -> (``rate``, ``1gbit``); no default -> ``required``."""
    m = re.match(r"^(\w+)\((.*)\)$", check)
    if not m:
        return check, ""
    kind, args = m.group(1), m.group(2)
    d = re.search(r"default=(list\([^)]*\)|'[^']*'|[^,]*)", args)
    if not d:
        return kind, "required"
    default = d.group(1)
    if default.startswith("list("):
        default = ", ".join(x.strip().strip("'") for x in default[5:-1].split(","))
    default = default.strip("'")
    words = {"None": "none", "True": "yes", "False": "no"}
    return kind, words.get(default, default)


def vif_qos_conf_5() -> str:
    config_dir = os.path.join(os.path.dirname(HERE), "vif_qos", "config")
    spec = read_spec(os.path.join(config_dir, "policy.spec"))
    example_path = os.path.join(config_dir, "vif-qos.conf.example")
    doc = ExampleDoc(example_path, {key for _section, key, _check in spec})
    out = [HEADER.format(name="VIF\\-QOS.CONF", section=5, version=__version__,
                         title="File Formats").rstrip("\n"),
           ".\\\" Generated by man/mkman.py from vif_qos/config/policy.spec and "
           "vif-qos.conf.example; do not edit.",
           ".SH NAME", "vif\\-qos.conf \\- host policy of vif\\-qos (Xen per\\-guest "
           "bandwidth shaping)",
           ".SH SYNOPSIS", ".B /etc/xen/vif\\-qos.conf",
           ".SH DESCRIPTION",
           line("An INI-style file read with configobj and checked against vif-qos's "
                "configspec (policy.spec). Check it after every edit with "
                "vif-qos check-config; vif-qos plan shows what one vif would get and "
                "where every value came from. The Debian package installs the example "
                "below as a conffile; vif-qos install writes it when no policy file "
                "exists.")]
    out += comment_roff(doc.header[1:])
    current = None
    for section, key, check in spec:
        top = section.split("/")[0]
        if top != current:
            current = top
            out += [f'.SH "SECTION [{esc(top)}]"']
            out += comment_roff(doc.intro_lines(top))
        kind, default = check_words(check)
        sub = section.split("/")[1] if "/" in section else None
        out += [".TP", (f"[[{esc(sub)}]] " if sub else "") +
                f"\\fB{esc(key)}\\fR = \\fI{esc(kind)}\\fR (default: {esc(default)})"]
        meaning = doc.meaning(top, key)
        if sub and top == "bridges":
            meaning = [line(f"{key} of the bridge {sub} (default: [bridges] {key})")]
        out += meaning or [line("(not described in the example)")]
    with open(example_path, encoding="utf-8") as fh:
        example = fh.read().rstrip("\n").splitlines()
    out += [".SH EXAMPLE", line("The example shipped with vif-qos:"), ".PP", ".nf", ".RS 2"]
    out += [line(t) if t else "" for t in example]
    out += [".RE", ".fi",
            ".SH SEE ALSO", "vif\\-qos(8), xl.cfg(5), tc\\-tbf(8), tc\\-htb(8)", ""]
    return "\n".join(out)


def generate() -> Dict[str, str]:
    """The pages' text by file name."""
    return {"vif-qos.8": vif_qos_8(), "vif-qos.conf.5": vif_qos_conf_5()}


def main(argv: List[str]) -> int:
    outdir = argv[0] if argv else HERE
    os.makedirs(outdir, exist_ok=True)
    for name, text in generate().items():
        with open(os.path.join(outdir, name), "w", encoding="utf-8") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
