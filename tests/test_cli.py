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


def _check_report(vifs=(), uplinks=(), leftovers=(), failed=()):
    from vif_qos.kernel.reconcile import Result, VifResult
    from vif_qos.xen.reload import Report

    result = Result([VifResult(**v) for v in vifs], list(uplinks), list(leftovers))
    return Report(result, False, list(failed))


def test_check_exit_status_comes_from_the_comparison_not_its_summary(monkeypatch):
    """``vif-qos check``'s exit status is computed from the Result/Report data: the
    first line's wording can change without changing what Nagios sees."""
    from vif_qos.cli import check

    cases = [
        (_check_report([{"vif": "vif1.0"}]), 0, 0),
        (_check_report([{"vif": "vif1.0", "changes": ["inbound TBF missing"]}]), 1, 1),
        (_check_report([{"vif": "vif1.0"}], uplinks=["uplink eth0: no HTB root"]), 1, 1),
        (_check_report([{"vif": "vif1.0"}], leftovers=["vif9.0 (netdev gone)"]), 1, 1),
        (_check_report([{"vif": "vif1.0", "error": "EPERM", "status": 1}]), 1, 1),
        (_check_report(failed=[("vif2.0", "bad rate", 2)]), 2, 1),
        (_check_report(failed=[("vif2.0", "xenstore gone", 1)]), 1, 1),
    ]
    for report, status, count in cases:
        assert check.exit_status(report) == status, report
        assert check.differences(report) == count
        assert check.summary(report).startswith("VIF-QOS OK" if count == 0 else
                                                "VIF-QOS DIFFERS")
    monkeypatch.setattr(check, "summary", lambda report: "VIF-QOS DIFFERS: reworded")
    assert check.exit_status(cases[0][0]) == 0
    monkeypatch.setattr(check, "summary", lambda report: "all fine")
    assert check.exit_status(cases[1][0]) == 1
