"""bash completion (completion/vif-qos), run in a real bash against the real program:
commands and options come from its --help, domain names from xenstore tools (here
stand-ins on PATH that answer like xenstore-list/xenstore-read), pool names from the
policy file; without xenstore tools the domain list is empty and nothing is printed."""

from __future__ import annotations

import os
import subprocess
import sys

from vif_qos.cli import COMMANDS
from vif_qos.xen.hotplug import HOTPLUG_WORDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "completion", "vif-qos")
BIN = os.path.dirname(sys.executable)  # the venv's vif-qos


def complete(words, path, env=None, cwd=None):
    """COMPREPLY for the command line ``words`` (the last one being completed)."""
    line = " ".join(f"'{w}'" for w in words)
    script = (f"source '{SCRIPT}'; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
              "_vif_qos; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["/bin/bash", "--norc", "--noprofile", "-c", script],
                         env=dict(env or {}, PATH=path), capture_output=True, text=True,
                         timeout=60, cwd=cwd)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    return [w for w in out.stdout.splitlines() if w]


def base_path(extra=None):
    return ":".join(([extra] if extra else []) + [BIN, "/usr/sbin:/usr/bin:/sbin:/bin"])


def test_commands_and_options_come_from_the_program():
    assert set(complete(["vif-qos", ""], base_path())) == set(COMMANDS) | {"--help", "--version"}
    assert complete(["vif-qos", "check-"], base_path()) == ["check-config"]
    assert sorted(complete(["vif-qos", "che"], base_path())) == ["check", "check-config"]
    options = complete(["vif-qos", "plan", "--"], base_path())
    assert {"--config", "--domain", "--devid", "--xen-rate", "--json", "--help"} <= set(options)


def test_hotplug_words_are_the_documented_ones():
    keys = {key for key, _m, _t in HOTPLUG_WORDS}
    for command in ("online", "add"):
        offered = complete(["vif-qos", command, ""], base_path())
        assert offered and {w.split("=")[0] for w in offered} <= keys


def fake_xenstore(tmp_path, domains):
    """xenstore-list/-read stand-ins answering from ``domains`` ({domid: name})."""
    bindir = tmp_path / "xsbin"
    bindir.mkdir()
    (bindir / "xenstore-list").write_text(
        "#!/bin/sh\n[ \"$1\" = /local/domain ] || exit 1\n" +
        "".join(f"echo {d}\n" for d in domains))
    cases = "".join(f"  /local/domain/{d}/name) echo '{n}' ;;\n" for d, n in domains.items())
    (bindir / "xenstore-read").write_text(
        f"#!/bin/sh\nfor p; do case \"$p\" in\n{cases}  *) exit 1 ;;\nesac; done\n")
    for tool in bindir.iterdir():
        tool.chmod(0o755)
    return str(bindir)


def test_domain_names_from_xenstore(tmp_path):
    bindir = fake_xenstore(tmp_path, {0: "Domain-0", 3: "web-1", 7: "db"})
    assert complete(["vif-qos", "plan", "--domain", ""], base_path(bindir)) == \
        ["Domain-0", "web-1", "db"]
    assert complete(["vif-qos", "plan", "--domain", "w"], base_path(bindir)) == ["web-1"]


def test_no_xenstore_means_no_domains_quietly(tmp_path):
    # PATH without any xenstore tool: bash's own builtins only, plus the program
    empty = tmp_path / "empty"
    empty.mkdir()
    path = f"{empty}:{BIN}"
    assert complete(["vif-qos", "plan", "--domain", ""], path) == []


def test_pool_names_from_the_policy_file(tmp_path):
    conf = tmp_path / "policy.conf"
    conf.write_text("[host]\n[pools]\n  [[overage]]\n  rate = 10mbit\n"
                    "    [[ gold ]]\n    rate = 1gbit\n[domains]\n  [[web]]\n  pool = gold\n")
    assert complete(["vif-qos", "plan", "--config", str(conf), "--pool", ""], base_path()) \
        == ["overage", "gold"]
    assert complete(["vif-qos", "x", "--pool", ""], base_path(),
                    env={"VIF_QOS_CONFIG": str(conf)}) == ["overage", "gold"]
    assert complete(["vif-qos", "x", "--pool", ""], base_path(),
                    env={"VIF_QOS_CONFIG": str(tmp_path / "missing")}) == []


def test_the_policy_file_is_offered_as_config_only():
    """Every command that reads the policy file offers --config (the older --conf
    and check-config FILE are accepted, not offered)."""
    for command in ("check-config", "cleanup", "plan", "reload", "report"):
        options = complete(["vif-qos", command, "--"], base_path())
        assert "--config" in options and "--conf" not in options, command
