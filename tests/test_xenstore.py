"""The xenstore adapter: failure modes told apart, values unescaped, raw writes.

The tool's failure modes are faked with pytest-subprocess (the messages are
libxenstore 4.17's, checked against the real tools in test_xsdouble.py); the
success paths also run the real tools against the xenstored double.
"""

from __future__ import annotations

import os
import shutil

import pytest

from vif_qos.errors import EnvironmentProblem, XenstoreError
from vif_qos.xen.xenstore import (Xenstore, XenstoreMissing, XenstoreTimeout,
                              XenstoreUnreachable, unescape)
from vif_qos.sim.xsdouble import XenstoreDouble


def test_missing_key_is_xenstore_missing_naming_the_path(fp):
    fp.register(["xenstore-read", "--", "backend/vif/3/0/rate"], returncode=1,
                stderr="xenstore-read: couldn't read path backend/vif/3/0/rate\n")
    with pytest.raises(XenstoreMissing) as err:
        Xenstore().read("backend/vif/3/0/rate")
    assert err.value.token == "backend/vif/3/0/rate"
    assert "no such xenstore node" in str(err.value)


def test_daemon_down_is_unreachable(fp):
    fp.register(["xenstore-read", "--", "x"], returncode=1,
                stderr="xenstore-read: xs_open: Connection refused\n")
    with pytest.raises(XenstoreUnreachable) as err:
        Xenstore(env={"XENSTORED_PATH": "/run/x.sock"}).read("x")
    assert "cannot connect to xenstored (Connection refused" in str(err.value)
    assert "/run/x.sock" in str(err.value)
    assert not isinstance(err.value, XenstoreMissing)


def test_timeout_is_xenstore_timeout(fp):
    fp.register(["xenstore-read", "--", "x"], wait=1)
    with pytest.raises(XenstoreTimeout) as err:
        Xenstore(timeout_s=0.2).read("x")
    assert "did not finish within 0.2 s" in str(err.value)


def test_other_failure_is_plain_xenstore_error(fp):
    fp.register(["xenstore-write", "-R", "--", "a", "b"], returncode=1,
                stderr="xenstore-write: couldn't start transaction\n")
    with pytest.raises(XenstoreError) as err:
        Xenstore().write("a", "b")
    assert type(err.value) is XenstoreError
    assert "couldn't start transaction" in str(err.value)


def test_tool_not_installed_is_environment_problem(tmp_path):
    with pytest.raises(EnvironmentProblem) as err:
        Xenstore(tool_dir=str(tmp_path)).read("x")
    assert "xenstore-utils" in str(err.value)


def test_read_optional_drops_missing_paths_one_run_each(fp):
    fp.register(["xenstore-read", "--", "a", "b", "c"], returncode=1,
                stderr="xenstore-read: couldn't read path b\n")
    fp.register(["xenstore-read", "--", "a", "c"], stdout="1\nthree\n")
    assert Xenstore().read_optional(["a", "b", "c"]) == {"a": "1", "c": "three"}
    assert fp.call_count(["xenstore-read", "--", "a", "b", "c"]) == 1


def test_read_optional_still_raises_when_daemon_down(fp):
    fp.register(["xenstore-read", "--", "a"], returncode=1,
                stderr="xenstore-read: xs_open: No such file or directory\n")
    with pytest.raises(XenstoreUnreachable):
        Xenstore().read_optional(["a"])


@pytest.mark.parametrize("escaped, value", [
    ("plain", "plain"),
    ("a\\nb", "a\nb"),
    ("back\\\\slash", "back\\slash"),
    ("caf\\xc3\\xa9", "café"),
    ("tab\\there", "tab\there"),
])
def test_unescape(escaped, value):
    assert unescape(escaped) == value


def test_timeout_must_be_positive():
    with pytest.raises(ValueError):
        Xenstore(timeout_s=0)


@pytest.fixture
def double():
    if shutil.which("xenstore-read") is None:
        pytest.fail("xenstore-utils is not installed; see ./dev")
    with XenstoreDouble() as xs:
        yield xs


def test_against_double_round_trip(double):
    xs = Xenstore(env=dict(os.environ, **double.env()))
    message = 'bad rate: "10ZB/s" \\ \n second line'
    xs.write_many([("backend/vif/1/0/hotplug-error", message),
                   ("backend/vif/1/0/hotplug-status", "error")])
    assert double.read("/local/domain/0/backend/vif/1/0/hotplug-error") == message
    assert xs.read("backend/vif/1/0/hotplug-error") == message
    assert xs.read_default("backend/vif/1/0/absent", "dflt") == "dflt"
    assert xs.list("backend/vif/1/0") == ["hotplug-error", "hotplug-status"]
    with pytest.raises(XenstoreMissing):
        xs.list("backend/vif/1/9")
    xs.rm("backend/vif/1")
    assert not double.exists("/local/domain/0/backend/vif/1")


def test_against_stopped_double_is_unreachable(double):
    env = dict(os.environ, **double.env())
    double.stop()
    with pytest.raises(XenstoreUnreachable):
        Xenstore(env=env).read("x")


def test_real_timeout_against_a_daemon_that_never_answers(tmp_path):
    import socket
    path = str(tmp_path / "hung.sock")
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(path)
    hung.listen(8)  # connections queue up, nothing ever answers
    try:
        with pytest.raises(XenstoreTimeout):
            Xenstore(timeout_s=0.5, env=dict(os.environ, XENSTORED_PATH=path)).read("x")
    finally:
        hung.close()
