"""The command line speaks one way: the policy file is ``--config FILE`` in every
admin's command that reads it; the older spellings (``cleanup --conf FILE``,
``check-config FILE``) still work, each with a one-line warning on stderr. Pure
(no kernel object is made: cleanup is run for a name that never held anything)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from vif_qos import cli
from vif_qos.cli import COMMANDS, CONFIG_HELP, HOTPLUG_COMMANDS, _Parser, modern_argv

#: The admin's commands that read the policy file (the others: status, overrides,
#: install, uninstall, serve and the hotplug commands, see vif_qos.cli).
READS_POLICY = {"plan", "check-config", "cleanup", "set", "assign", "unset", "reload",
                "check", "record", "report", "metrics", "simulate"}


def parser_of(name):
    import importlib

    parser = _Parser(prog=f"vif-qos {name}")
    importlib.import_module(COMMANDS[name][0]).configure(parser, name)
    return parser


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - set(HOTPLUG_COMMANDS)))
def test_the_policy_file_is_config_FILE_in_every_command(name):
    parser = parser_of(name)
    actions = parser._option_string_actions
    if name in READS_POLICY:
        action = actions["--config"]
        assert action.metavar == "FILE" and action.dest == "config"
        if name != "simulate":  # its --config replaces the scenario's own file
            assert action.help.startswith("policy file") and action.help.endswith(
                CONFIG_HELP[len("policy file"):])
    else:
        assert "--config" not in actions
    # no other spelling: no --conf, no plain FILE argument
    assert [o for o in actions if "conf" in o] == (["--config"] if name in READS_POLICY
                                                   else [])
    plain = [a for a in parser._actions if not a.option_strings]
    assert all(a.metavar != "FILE" and a.dest not in ("file", "config") for a in plain)


def rewritten(name, *words):
    return modern_argv(name, list(words), parser_of(name))


def test_conf_is_read_as_config_with_a_warning():
    assert rewritten("cleanup", "--vif", "vif1.0", "--conf", "/p.conf") == (
        ["--vif", "vif1.0", "--config", "/p.conf"],
        ["--conf is a deprecated spelling of --config: use --config (still accepted)"])
    assert rewritten("reload", "--conf=/p.conf", "--dry-run")[0] == [
        "--config=/p.conf", "--dry-run"]
    args = parser_of("cleanup").parse_args(rewritten("cleanup", "--conf", "/p.conf")[0])
    assert args.config == "/p.conf"


def test_check_config_FILE_is_read_as_config_with_a_warning():
    words, warnings = rewritten("check-config", "/etc/xen/new.conf")
    assert words == ["--config=/etc/xen/new.conf"]
    assert warnings == ["the policy file as a plain argument is a deprecated spelling of "
                        "--config FILE: use --config (still accepted)"]
    assert parser_of("check-config").parse_args(words).config == "/etc/xen/new.conf"
    # a name starting with '-' after '--', and an empty name, stay the file's name
    assert rewritten("check-config", "--", "-odd.conf")[0] == ["--config=-odd.conf", "--"]
    assert rewritten("check-config", "")[0] == ["--config="]


def test_new_spellings_and_other_words_are_left_alone():
    assert rewritten("check-config", "--config", "a") == (["--config", "a"], [])
    # --config given: a plain word is an extra argument, refused by argparse
    assert rewritten("check-config", "--config", "a", "b") == (["--config", "a", "b"], [])
    # a value that looks like the old option is a value
    assert rewritten("set", "g", "rate=1mbit", "--reason", "--conf") == (
        ["g", "rate=1mbit", "--reason", "--conf"], [])
    assert rewritten("plan", "--qos", "rate=1mbit") == (["--qos", "rate=1mbit"], [])
    # a command without a policy file: nothing rewritten, argparse refuses --conf
    assert rewritten("status", "--conf", "x") == (["--conf", "x"], [])


def run_cli(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_check_config_old_spelling_still_checks_the_file(capsys, tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[host]\nmtu = lots\n")
    old = run_cli(capsys, "check-config", str(bad))
    new = run_cli(capsys, "check-config", "--config", str(bad))
    assert old[0] == new[0] == 2 and old[1] == new[1] and f"{bad}:2" in new[1]
    assert new[2] == "" and old[2] == (
        "vif-qos check-config: warning: the policy file as a plain argument is a "
        "deprecated spelling of --config FILE: use --config (still accepted)\n")
    good = tmp_path / "good.conf"
    good.write_text("[pools]\n[[overage]]\nrate = 10mbit\n")
    assert run_cli(capsys, "check-config", str(good))[1].startswith(f"OK: {good}: 1 pool(s)")


def test_cleanup_old_spelling_runs_with_a_warning(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VIF_QOS_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("VIF_QOS_HOTPLUG_LOG", str(tmp_path / "hotplug.log"))
    monkeypatch.setenv("VIF_QOS_SYSLOG", "0")
    status, out, err = run_cli(capsys, "cleanup", "--vif", "vifqz9.9", "--conf",
                               str(tmp_path / "p.conf"))
    assert status == 0 and out == ""
    assert err == ("vif-qos cleanup: warning: --conf is a deprecated spelling of --config: "
                   "use --config (still accepted)\n")


def test_status_refuses_conf_as_before(capsys):
    status, _out, err = run_cli(capsys, "status", "--conf", "x")
    assert status == 2 and "unrecognized arguments: --conf x" in err
    assert "warning" not in err


def test_shipped_files_use_the_one_spelling():
    """Units, udev rules, scripts, the completion's offers, the example policy, the
    Debian files, CI, xentest, the simulation and the README call the CLI with
    --config only (the old spellings are accepted, not taught)."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    old = re.compile(r"vif-qos\s+check-config\s+(?!--config|\[--config|--help)[^\s`'\"]"
                     r"|vif-qos\s+\w[\w-]*\s.*--conf\b(?!ig)")
    listed = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True,
                            check=True).stdout.split()
    offenders = []
    for rel in listed:
        if rel.startswith(("tests/", "man/")) or rel.endswith((".png", ".gz")):
            continue
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if old.search(line):
                        offenders.append(f"{rel}:{number}: {line.strip()}")
        except (UnicodeDecodeError, IsADirectoryError):
            continue
    assert offenders == []


def test_help_lists_only_the_one_spelling():
    out = subprocess.run([sys.executable, "-m", "vif_qos", "cleanup", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--config FILE" in out and "--conf " not in out
    assert isinstance(parser_of("check-config"), argparse.ArgumentParser)
