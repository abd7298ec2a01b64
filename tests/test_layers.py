"""The import-layer contract of the package, checked on the source (AST).

Layers, bottom to top (docs/architecture.rst, "How it is built"):

- ``vif_qos`` itself (``errors``, ``model``, ``constants``): the shared vocabulary;
- ``core``: pure functions, may import only the vocabulary and ``core``;
- ``config``: the admin's files, may import the vocabulary, ``core``, ``config``;
- ``kernel``: netlink and nftables, may import the vocabulary, ``core``, ``kernel``;
- ``xen``: may import everything above except ``cli`` and ``sim``;
- ``usage``: the usage database, record/report/metrics, may import the vocabulary,
  ``core``, ``config``, ``kernel``, ``xen``, ``usage``;
- ``cli``: the commands, may import every product layer but not ``sim`` (it names the
  ``simulate`` command's module as a string and imports it only when run);
  ``vif_qos/__main__.py`` belongs to ``cli``;
- ``sim``: the simulated dom0, may import anything; no product layer imports it.
"""

import ast
import os

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vif_qos")
BASE = "base"
ALLOWED = {
    BASE: {BASE},
    "core": {BASE, "core"},
    "config": {BASE, "core", "config"},
    "kernel": {BASE, "core", "kernel"},
    "xen": {BASE, "core", "config", "kernel", "xen"},
    "usage": {BASE, "core", "config", "kernel", "xen", "usage"},
    "cli": {BASE, "core", "config", "kernel", "xen", "usage", "cli"},
    "sim": {BASE, "core", "config", "kernel", "xen", "usage", "cli", "sim"},
}


def layer_of(module: str) -> str:
    """``vif_qos.core.units`` -> ``core``; ``vif_qos.errors`` -> ``base``."""
    parts = module.split(".")
    assert parts[0] == "vif_qos", module
    if len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    if parts[1:] == ["__main__"]:  # ``python -m vif_qos``: the front door
        return "cli"
    return BASE


def module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join(rel)


def imported_modules(path: str, module: str):
    """Every ``vif_qos`` module that ``path`` imports, at any depth of the file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "vif_qos":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "vif_qos":
                continue
            for alias in node.names:
                # "from vif_qos.core import units" imports the submodule core.units
                yield node.lineno, f"{target}.{alias.name}" if target.count(".") < 1 else target


def violations(package_dir: str = PACKAGE_DIR):
    found = []
    for dirpath, _dirs, files in os.walk(package_dir):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            module = module_name(path)
            mine = layer_of(module)
            for line, target in imported_modules(path, module):
                theirs = layer_of(target)
                if theirs not in ALLOWED[mine]:
                    found.append(f"{os.path.relpath(path, package_dir)}:{line}: {mine} imports "
                                 f"{target} ({theirs})")
    return found


def test_the_package_keeps_its_layers():
    assert violations() == []


def violations_in(tmp_path, layer: str, source: str):
    """The violations of a package ``vif_qos`` whose ``layer`` holds one module
    ``bad.py`` with ``source``."""
    root = tmp_path / "vif_qos"
    (root / layer).mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / layer / "__init__.py").write_text("")
    (root / layer / "bad.py").write_text(source)
    global PACKAGE_DIR
    saved, PACKAGE_DIR = PACKAGE_DIR, str(root)
    try:
        return violations(str(root))
    finally:
        PACKAGE_DIR = saved


@pytest.mark.parametrize("layer, source", [
    ("core", "from vif_qos.config import policy\n"),
    ("core", "from vif_qos.kernel.apply import apply_vif\n"),
    ("kernel", "def f():\n    from vif_qos.xen import hotplug\n"),
    ("kernel", "import vif_qos.cli\n"),
    ("xen", "from vif_qos.sim.net import SimHost\n"),
    ("config", "from vif_qos import kernel\n"),
    ("cli", "from vif_qos.sim import simulate\n"),
])
def test_a_forbidden_import_is_caught(tmp_path, layer, source):
    found = violations_in(tmp_path, layer, source)
    assert len(found) == 1 and found[0].startswith(f"{layer}/bad.py:"), found


@pytest.mark.parametrize("layer, source", [
    ("core", "from vif_qos.errors import InputError\nfrom vif_qos.core import units\n"),
    ("kernel", "from vif_qos.model import VifPlan\n"),
    ("sim", "from vif_qos.cli import install\n"),
])
def test_an_allowed_import_passes(tmp_path, layer, source):
    assert violations_in(tmp_path, layer, source) == []


# -- the pure core does no I/O --------------------------------------------------------

#: Modules and builtins through which code reads files, sockets or processes.
IO_MODULES = {"os", "io", "pathlib", "shutil", "glob", "socket", "subprocess", "tempfile",
              "fcntl", "configobj", "pyroute2", "nftables", "sqlite3", "urllib"}
IO_BUILTINS = {"open", "input", "print"}


def io_uses(path: str):
    """``line: what`` for every I/O module imported or I/O builtin called in ``path``."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in IO_BUILTINS):
            yield f"{node.lineno}: {node.func.id}()"
        for name in names:
            if name.split(".")[0] in IO_MODULES:
                yield f"{node.lineno}: import {name}"


def core_io(core_dir: str):
    return [f"{os.path.basename(path)}:{use}" for path in sorted(
        os.path.join(core_dir, n) for n in os.listdir(core_dir) if n.endswith(".py"))
        for use in io_uses(path)]


def test_core_reads_no_files_sockets_or_processes():
    assert core_io(os.path.join(PACKAGE_DIR, "core")) == []


@pytest.mark.parametrize("source", ["import os\n", "from pathlib import Path\n",
                                    "def f(p):\n    return open(p).read()\n"])
def test_io_in_core_is_caught(tmp_path, source):
    (tmp_path / "bad.py").write_text(source)
    assert len(core_io(str(tmp_path))) == 1
