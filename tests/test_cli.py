"""The front door: exit statuses and one-line errors."""

import subprocess
import sys

from vif_qos import cli
from vif_qos.errors import InputError, VifQosError


def test_no_arguments_prints_usage_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: vif-qos COMMAND" in capsys.readouterr().out


def test_unknown_command_is_one_line_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_error_one_line_names_token_and_source():
    err = InputError("unknown unit", token="10zbit\nx", source="/etc/xen/vif-qos.conf:3")
    assert str(err) == "/etc/xen/vif-qos.conf:3: unknown unit: '10zbit\\nx'"
    assert "\n" not in VifQosError("a\nb").one_line()


def test_console_entry_point_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "vif_qos", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == cli.__version__


def test_a_reader_that_goes_away_ends_quietly_with_141():
    """``vif-qos plan | head -1``: no traceback, no 'internal error', status 141."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run([sys.executable, "-m", "vif_qos", "plan", "--qos", "rate=1mbit"],
                          stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write_end)
    assert proc.returncode == 141
    assert proc.stderr == ""
