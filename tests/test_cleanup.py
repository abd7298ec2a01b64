"""vif-qos cleanup (udev's command): which vifs it removes, and never a live one.

The kernel side is a recording stand-in here; test_hotplug_e2e.py runs the real
rule command against real kernel objects.
"""

from __future__ import annotations

import sys
import types

import pytest

from vif_qos import cli
from vif_qos.cli.cleanup import netdev_exists


@pytest.fixture
def fake_apply(monkeypatch, tmp_path):
    calls = []
    module = types.ModuleType("vif_qos.kernel.apply")
    module.remove_vif = (lambda vif, host=None, only_if_gone=False:
                         calls.append(("remove", vif, host)) or True)
    module.cleanup_orphans = lambda host=None: calls.append(("orphans", host)) or ["vif9.0"]
    monkeypatch.setitem(sys.modules, "vif_qos.kernel.apply", module)
    import vif_qos.kernel
    monkeypatch.setattr(vif_qos.kernel, "apply", module, raising=False)
    monkeypatch.setenv("VIF_QOS_HOTPLUG_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("VIF_QOS_SYSLOG", "0")
    policy = tmp_path / "vif-qos.conf"
    policy.write_text("[host]\ndebug = yes\n")
    monkeypatch.setenv("VIF_QOS_CONFIG", str(policy))
    return calls, policy


def test_netdev_exists_uses_this_namespace():
    assert netdev_exists("lo")
    assert not netdev_exists("vqt-absent0")


def test_cleanup_of_a_gone_vif_removes_it(fake_apply, capsys):
    calls, _ = fake_apply
    assert cli.main(["cleanup", "--vif", "vqt-gone0"]) == 0
    assert [c[:2] for c in calls] == [("remove", "vqt-gone0")]
    assert calls[0][2].debug is True  # the policy's host settings are used
    assert capsys.readouterr().out == "vqt-gone0\n"


def test_cleanup_never_touches_an_existing_netdev(fake_apply):
    calls, _ = fake_apply
    assert cli.main(["cleanup", "--vif", "lo"]) == 0
    assert calls == []


def test_cleanup_without_vif_sweeps_orphans(fake_apply, capsys):
    calls, _ = fake_apply
    assert cli.main(["cleanup"]) == 0
    assert [c[0] for c in calls] == ["orphans"]
    assert capsys.readouterr().out == "vif9.0\n"


def test_broken_policy_still_cleans_up_with_builtin_settings(fake_apply, tmp_path):
    calls, policy = fake_apply
    policy.write_text("[host\n")
    assert cli.main(["cleanup", "--vif", "vqt-gone1"]) == 0
    assert calls == [("remove", "vqt-gone1", None)]
    assert "cleaning up with built-in settings" in (tmp_path / "log").read_text()
