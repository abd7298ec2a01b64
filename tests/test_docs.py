"""The docs against the code: the module map in docs/architecture.rst names every
module of the package and nothing else, and README.rst stays the five-minute read
it promises (its pointers into docs/ and its commands exist). The docs build
itself (Sphinx, warnings as errors) is ``./dev docs``, which CI runs."""

from __future__ import annotations

import os
import re

from vif_qos.cli import COMMANDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(ROOT, "vif_qos")
DOCS_DIR = os.path.join(ROOT, "docs")
MAP_PAGE = os.path.join(DOCS_DIR, "architecture.rst")
MAP_LABEL = ".. _module-map:"
#: A map entry: the module's dotted name in double backquotes, alone on its line.
MAP_ENTRY = re.compile(r"^``(vif_qos(?:\.\w+)*)``$")


def package_modules(package_dir=PACKAGE_DIR):
    """Every module of the package by dotted name, found on disk: each ``*.py``
    file under ``vif_qos/`` (a package's ``__init__.py`` is the package itself)."""
    found = set()
    for dirpath, dirs, files in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), os.path.dirname(package_dir))
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.add(".".join(parts))
    return found


def map_entries(path=MAP_PAGE):
    """The modules the map names, in order: the entry lines after the
    ``module-map`` label."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    assert text.count(MAP_LABEL) == 1, f"{path}: no single {MAP_LABEL} label"
    section = text.split(MAP_LABEL, 1)[1]
    return [m.group(1) for line in section.splitlines() if (m := MAP_ENTRY.match(line))]


def test_module_map_names_every_module_and_no_other():
    modules = package_modules()
    assert {"vif_qos", "vif_qos.cli", "vif_qos.kernel.netlink"} <= modules  # the walk works
    entries = map_entries()
    duplicated = sorted({e for e in entries if entries.count(e) > 1})
    missing = sorted(modules - set(entries))
    unknown = sorted(set(entries) - modules)
    assert not missing, (f"modules missing from the module map in {MAP_PAGE}: {missing} "
                         "(add an entry per module: ``dotted.name`` alone on a line, "
                         "its description indented below)")
    assert not unknown, f"the module map in {MAP_PAGE} names modules that do not exist: {unknown}"
    assert not duplicated, f"the module map in {MAP_PAGE} names these twice: {duplicated}"


def test_module_map_check_sees_a_missing_and_a_stale_entry(tmp_path):
    """The comparison above fails both ways: a module on disk the map lacks, and an
    entry with no module behind it."""
    package = tmp_path / "vif_qos"
    (package / "kernel").mkdir(parents=True)
    for rel in ("__init__.py", "kernel/__init__.py", "kernel/tc.py", "kernel/new.py"):
        (package / rel).write_text('"""x"""\n')
    (package / "kernel" / "__pycache__").mkdir()
    (package / "kernel" / "__pycache__" / "tc.cpython-311.pyc").write_bytes(b"")
    page = tmp_path / "map.rst"
    page.write_text(f"Intro ``vif_qos.kernel.gone`` in prose.\n\n{MAP_LABEL}\n\n"
                    "``vif_qos``\n    x\n``vif_qos.kernel``\n    x\n"
                    "``vif_qos.kernel.tc``\n    x\n``vif_qos.kernel.gone``\n    x\n")
    modules = package_modules(str(package))
    entries = map_entries(str(page))
    assert modules == {"vif_qos", "vif_qos.kernel", "vif_qos.kernel.tc", "vif_qos.kernel.new"}
    assert entries == ["vif_qos", "vif_qos.kernel", "vif_qos.kernel.tc", "vif_qos.kernel.gone"]
    assert modules - set(entries) == {"vif_qos.kernel.new"}
    assert set(entries) - modules == {"vif_qos.kernel.gone"}


def readme():
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as fh:
        return fh.read()


def test_readme_is_a_five_minute_read():
    lines = readme().splitlines()
    assert len(lines) <= 250, f"README.rst has {len(lines)} lines; the rest belongs in docs/"


def test_readme_names_every_docs_page_and_only_existing_ones():
    named = set(re.findall(r"``(docs/[\w/.-]+\.rst)``", readme()))
    pages = {os.path.relpath(os.path.join(d, f), ROOT)
             for d, _dirs, files in os.walk(DOCS_DIR) if "_build" not in d
             for f in files if f.endswith(".rst")}
    # index.rst is the docs' front page and man/ the man pages, named by their own names
    wanted = {p for p in pages if p != "docs/index.rst" and not p.startswith("docs/man/")}
    assert named <= pages, f"README.rst names docs pages that do not exist: {sorted(named - pages)}"
    assert wanted <= named, f"README.rst does not point to: {sorted(wanted - named)}"


def test_readme_commands_exist():
    """Every ``vif-qos WORD`` the README shows as code (inline or in a literal block)
    is a command of the program."""
    words = set(re.findall(r"(?:``|^ +|/bin/)vif-qos ([a-z][a-z-]*)", readme(), re.M))
    assert {"status", "set", "reload", "report", "install", "check-config"} <= words
    assert words <= set(COMMANDS), sorted(words - set(COMMANDS))
