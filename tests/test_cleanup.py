"""vif-qos cleanup (udev's command): which vifs it removes, and never a live one.

The kernel side is a recording stand-in here; test_hotplug_e2e.py runs the real
rule command against real kernel objects.
"""

from __future__ import annotations

import argparse

import pytest

from vif_qos.cli import cleanup
from vif_qos.kernel.netdev import netdev_exists
from vif_qos.config.policy import load_policy
from vif_qos.xen.services import Services


class KernelRecorder:
    """Recording stand-ins for the kernel's removals; the policy loader is real."""

    def __init__(self):
        self.calls = []

    def services(self) -> Services:
        def remove_vif(vif, host=None, owner=None, only_if_gone=False):
            if only_if_gone and netdev_exists(vif):  # as the real one, under its lock
                return False
            self.calls.append(("remove", vif, host))
            return True

        def cleanup_orphans(host=None):
            self.calls.append(("orphans", host))
            return ["vif9.0"]

        def unused(*args, **kwargs):
            raise AssertionError("cleanup must not plan, apply or read xenstore")
        return Services(load_policy=load_policy, plan_for_facts=unused, apply_vif=unused,
                        remove_vif=remove_vif, xenstore=None,
                        cleanup_orphans=cleanup_orphans)


def run_cleanup(argv, recorder: KernelRecorder) -> int:
    """``vif-qos cleanup ARGV`` with the recorder's services."""
    parser = argparse.ArgumentParser()
    cleanup.configure(parser, "cleanup")
    return cleanup.run(parser.parse_args(argv), services=recorder.services())


@pytest.fixture
def fake_apply(monkeypatch, tmp_path):
    recorder = KernelRecorder()
    monkeypatch.setenv("VIF_QOS_HOTPLUG_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("VIF_QOS_SYSLOG", "0")
    policy = tmp_path / "vif-qos.conf"
    policy.write_text("[host]\ndebug = yes\n")
    monkeypatch.setenv("VIF_QOS_CONFIG", str(policy))
    return recorder, policy


def test_netdev_exists_uses_this_namespace():
    assert netdev_exists("lo")
    assert not netdev_exists("vqt-absent0")
    assert not netdev_exists("x" * 16) and not netdev_exists("a\0b")


def test_cleanup_of_a_gone_vif_removes_it(fake_apply, capsys):
    recorder, _ = fake_apply
    calls = recorder.calls
    assert run_cleanup(["--vif", "vqt-gone0"], recorder) == 0
    assert [c[:2] for c in calls] == [("remove", "vqt-gone0")]
    assert calls[0][2].debug is True  # the policy's host settings are used
    assert capsys.readouterr().out == "vqt-gone0\n"


def test_cleanup_never_touches_an_existing_netdev(fake_apply):
    recorder, _ = fake_apply
    calls = recorder.calls
    assert run_cleanup(["--vif", "lo"], recorder) == 0
    assert calls == []


def test_cleanup_without_vif_sweeps_orphans(fake_apply, capsys):
    recorder, _ = fake_apply
    calls = recorder.calls
    assert run_cleanup([], recorder) == 0
    assert [c[0] for c in calls] == ["orphans"]
    assert capsys.readouterr().out == "vif9.0\n"


def test_broken_policy_still_cleans_up_with_builtin_settings(fake_apply, tmp_path):
    recorder, policy = fake_apply
    calls = recorder.calls
    policy.write_text("[host\n")
    assert run_cleanup(["--vif", "vqt-gone1"], recorder) == 0
    assert calls == [("remove", "vqt-gone1", None)]
    assert "cleaning up with built-in settings" in (tmp_path / "log").read_text()
