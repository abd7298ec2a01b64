"""Sphinx: the man pages vif-qos(8) and vif-qos.conf(5) as pages of the docs.

``.. vif-qos-manpage:: vif-qos.8`` puts the page that ``man/mkman.py`` generates
from the sources (the command table, every command's argparse options, the hotplug
words, ``policy.spec`` and the example policy) into the document, translated from
roff into document nodes. The shipped man pages and these pages are therefore the
same text from the same generator; nothing is written twice.

The translation knows exactly the requests and escapes mkman.py writes (``.SH``
``.SS`` ``.PP`` ``.TP`` ``.IP`` ``.nf``/``.fi`` ``.RS``/``.RE`` ``.B`` ``.I``
``.RI`` ``.br``; ``\\fB`` ``\\fI`` ``\\fR`` ``\\-`` ``\\e`` ``\\&`` ``\\(bu``
``\\[uXXXX]``). Anything else is an error naming the line, so a generator change
that this translation does not follow fails the docs build instead of showing
raw roff.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import List, Optional

from docutils import nodes
from docutils.parsers.rst import Directive

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKMAN = os.path.join(ROOT, "man", "mkman.py")


class RoffError(ValueError):
    """A line of the generated page that this translation does not know."""


def sources() -> List[str]:
    """What the generated pages are made from: mkman.py and every file of the
    package (command modules, ``policy.spec``, the example policy)."""
    paths = [MKMAN]
    for dirpath, dirs, files in os.walk(os.path.join(ROOT, "vif_qos")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        paths += [os.path.join(dirpath, f) for f in sorted(files) if not f.endswith(".pyc")]
    return paths


def load_mkman():
    spec = importlib.util.spec_from_file_location("mkman", MKMAN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ESCAPE = re.compile(r"\\(f[BIRP]|-|e|&|\(bu|\[u([0-9A-F]{4})\]|.)")


def plain(text: str) -> str:
    """Roff text without its escapes and font changes."""
    return "".join(text for _font, text in spans(text))


def spans(text: str):
    """``(font, text)`` pieces of one roff text line; font is ``R``, ``B`` or ``I``."""
    font, out, pos = "R", [], 0
    buf = ""
    for m in _ESCAPE.finditer(text):
        buf += text[pos:m.start()]
        pos = m.end()
        esc = m.group(1)
        if esc.startswith("f"):
            if buf:
                out.append((font, buf))
                buf = ""
            font = "R" if esc[1] in "RP" else esc[1]
        elif esc == "-":
            buf += "-"
        elif esc == "e":
            buf += "\\"
        elif esc == "&":
            pass
        elif esc == "(bu":
            buf += "\u2022"
        elif m.group(2):
            buf += chr(int(m.group(2), 16))
        else:
            raise RoffError(f"unknown escape \\{esc} in {text!r}")
    buf += text[pos:]
    if buf:
        out.append((font, buf))
    return out


def inline(text: str) -> List[nodes.Node]:
    """A paragraph's roff text as text, literal (bold) and emphasis (italic) nodes."""
    out: List[nodes.Node] = []
    for font, piece in spans(text):
        if font == "B":
            out.append(nodes.literal(piece, piece))
        elif font == "I":
            out.append(nodes.emphasis(piece, piece))
        else:
            out.append(nodes.Text(piece))
    return out


def request_args(rest: str) -> List[str]:
    """A request's arguments: split at spaces, ``"..."`` kept together."""
    return [a[1:-1] if a.startswith('"') else a
            for a in re.findall(r'"[^"]*"?|\S+', rest)]


def title_text(text: str) -> str:
    """``SEE ALSO`` -> ``See also``; ``SECTION [host]`` -> ``Section [host]``."""
    text = plain(request_args(text)[0] if text.startswith('"') else text)
    words = text.split(" ")
    if words and words[0].isupper():
        words = [w.capitalize() if w.isupper() and w.isalpha() else w for w in words]
        words = [words[0]] + [w.lower() if w.isalpha() else w for w in words[1:]]
    return " ".join(words)


class Translator:
    """Builds the nodes of one page, line by line (see the module doc)."""

    def __init__(self, document):
        self.document = document
        self.root: List[nodes.Node] = []
        self.section: Optional[nodes.section] = None   # the current .SH
        self.sub: Optional[nodes.section] = None       # the current .SS
        self.item: Optional[nodes.Element] = None      # a .TP/.IP body being filled
        self.para: List[str] = []
        self.synopsis: Optional[List[str]] = None

    # -- where nodes go ---------------------------------------------------------------

    def container(self) -> nodes.Element:
        if self.item is not None:
            return self.item
        here = self.sub or self.section
        if here is None:
            raise RoffError("text before the first .SH")
        return here

    def flush(self) -> None:
        if self.para:
            self.container().append(nodes.paragraph("", "", *inline(" ".join(self.para))))
            self.para = []
        if self.synopsis is not None:
            text = "".join(self.synopsis).strip()
            self.container().append(nodes.literal_block(text, text))
            self.synopsis = None

    def close_item(self) -> None:
        self.flush()
        self.item = None

    def new_section(self, title: str) -> nodes.section:
        self.close_item()
        title = title_text(title)
        section = nodes.section()
        section["names"].append(nodes.fully_normalize_name(title))
        section += nodes.title(title, title)
        self.document.note_implicit_target(section, section)
        return section

    def list_for(self, kind) -> nodes.Element:
        """The list the next item joins: the last node of the container when it is
        a list of that kind, else a new one."""
        self.close_item()
        here = self.container()
        if here.children and isinstance(here.children[-1], kind):
            return here.children[-1]
        new = kind()
        here.append(new)
        return new

    # -- the lines ----------------------------------------------------------------------

    def run(self, roff: str) -> List[nodes.Node]:
        lines = roff.splitlines()
        i = 0
        while i < len(lines):
            text = lines[i]
            i += 1
            if not text.startswith("."):
                if self.synopsis is not None or not text.strip():
                    self.flush()
                if text.strip():
                    self.para.append(text)
                continue
            request, _, rest = text[1:].partition(" ")
            if request in ("TH", '\\"'):
                continue
            if request == "SH":
                self.sub = None
                self.section = self.new_section(rest)
                self.root.append(self.section)
            elif request == "SS":
                if self.section is None:
                    raise RoffError(f".SS before any .SH: {text!r}")
                self.sub = self.new_section(rest)
                self.section.append(self.sub)
            elif request == "PP":
                self.close_item()
            elif request == "TP":
                dlist = self.list_for(nodes.definition_list)
                if i >= len(lines) or lines[i].startswith("."):
                    raise RoffError(f".TP without its term line (line {i})")
                term = nodes.term("", "", *inline(lines[i]))
                i += 1
                self.item = nodes.definition()
                dlist.append(nodes.definition_list_item("", term, self.item))
            elif request == "IP" and rest == "\\(bu 2":
                blist = self.list_for(nodes.bullet_list)
                self.item = nodes.list_item()
                blist.append(self.item)
            elif request == "nf":
                self.flush()
                block = []
                while i < len(lines) and lines[i] != ".fi":
                    line = lines[i]
                    i += 1
                    if re.match(r"^\.(RS( \d+)?|RE)$", line):
                        continue
                    if line.startswith("."):
                        raise RoffError(f"request inside .nf: {line!r}")
                    block.append(plain(line))
                if i >= len(lines):
                    raise RoffError(".nf without .fi")
                i += 1
                while block and not block[0].strip():
                    block.pop(0)
                literal = "\n".join(block)
                self.container().append(nodes.literal_block(literal, literal))
            elif request in ("B", "I", "RI", "br"):
                if self.synopsis is None:
                    self.close_item()
                    self.synopsis = []
                if request == "br":
                    self.synopsis.append("\n")
                else:
                    args = request_args(rest)
                    words = "".join(args) if request == "RI" else " ".join(args)
                    if self.synopsis and not self.synopsis[-1].endswith("\n"):
                        self.synopsis.append(" ")
                    self.synopsis.append(plain(words))
            else:
                raise RoffError(f"unknown request: {text!r}")
        self.close_item()
        return self.root


class ManPage(Directive):
    """``.. vif-qos-manpage:: NAME``: the generated man page NAME as document nodes."""

    required_arguments = 1

    def run(self):
        name = self.arguments[0]
        pages = load_mkman().generate()
        if name not in pages:
            raise self.error(f"mkman.py generates {sorted(pages)}, not {name!r}")
        env = self.state.document.settings.env
        for path in sources():   # an incremental build redoes the page when they change
            env.note_dependency(path)
        try:
            return Translator(self.state.document).run(pages[name])
        except RoffError as err:
            raise self.error(f"{name}: {err}")


def setup(app):
    app.add_directive("vif-qos-manpage", ManPage)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
