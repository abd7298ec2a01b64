"""Shared fixtures. Kernel tests never skip silently: without root they fail."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

KERNEL_TOOLS = ("ip", "tc", "nft")
#: Every namespace the tests make starts with this, so a leftover is easy to see.
TEST_PREFIX = "vqt-"


def _need_kernel_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (they run inside namespaces they create)")
    missing = [tool for tool in KERNEL_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"kernel tests need {', '.join(missing)} (see .ci/run)")


@pytest.fixture
def host():
    """The simulated dom0 (``vif_qos.sim.net.SimHost``: bridge ``xenbr0``, uplink
    ``peth0``, an "internet" host; guests by ``host.add_guest(domid)``), deleted
    after the test."""
    from vif_qos.sim.net import SimHost

    _need_kernel_tools()
    with SimHost(prefix=TEST_PREFIX) as made:
        yield made


@pytest.fixture
def namespaces():
    """Bare namespaces by ``namespaces.make(role)``; all deleted after the test."""
    from vif_qos.sim.net import Namespaces

    _need_kernel_tools()
    registry = Namespaces(prefix=TEST_PREFIX)
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A lock directory of this test's own (``VIF_QOS_RUN_DIR``), returned; kernel
    test modules use it for every test (``pytest.mark.usefixtures("run_dir")``)."""
    monkeypatch.setenv("VIF_QOS_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


@pytest.fixture(autouse=True, scope="session")
def private_run_dir():
    """vif-qos's lock directory for this test session, removed afterwards, so tests
    leave nothing in the host's /run (the product's default is /run/vif-qos)."""
    if os.environ.get("VIF_QOS_RUN_DIR"):
        yield os.environ["VIF_QOS_RUN_DIR"]
        return
    path = tempfile.mkdtemp(prefix="vif-qos-test-run-")
    os.environ["VIF_QOS_RUN_DIR"] = path
    # Hotplug runs inside tests log to a file of the session, never to the host's
    # /var/log/xen/xen-hotplug.log or syslog (tests that check those set their own).
    saved = {key: os.environ.get(key) for key in ("VIF_QOS_HOTPLUG_LOG", "VIF_QOS_SYSLOG",
                                                  "VIF_QOS_STATE_DIR")}
    os.environ.setdefault("VIF_QOS_HOTPLUG_LOG", os.path.join(path, "xen-hotplug.log"))
    # Operator overrides (overrides.conf) of this session, never /var/lib/vif-qos's.
    os.environ.setdefault("VIF_QOS_STATE_DIR", os.path.join(path, "state"))
    os.environ.setdefault("VIF_QOS_SYSLOG", "0")
    try:
        yield path
    finally:
        del os.environ["VIF_QOS_RUN_DIR"]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def quiet_logs(tmp_path, monkeypatch):
    """Hotplug runs of this test log to its own file (returned), not syslog; no debug,
    and no policy file named by the environment."""
    log = tmp_path / "xen-hotplug.log"
    monkeypatch.setenv("VIF_QOS_HOTPLUG_LOG", str(log))
    monkeypatch.setenv("VIF_QOS_SYSLOG", "0")
    monkeypatch.delenv("VIF_QOS_DEBUG", raising=False)
    monkeypatch.delenv("VIF_QOS_CONFIG", raising=False)
    return log


XENSTORE_TOOLS = ("xenstore-read", "xenstore-write", "xenstore-rm", "xenstore-ls",
                  "xenstore-list", "xenstore-exists", "xenstore-watch", "xenstore-chmod")


@pytest.fixture
def xs():
    """A running xenstored double (the real xenstore tools reach it via ``xs.env()``)."""
    from vif_qos.sim.xsdouble import XenstoreDouble

    missing = [t for t in XENSTORE_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"xenstore-utils is not installed (missing {missing}); see ./dev")
    with XenstoreDouble() as double:
        yield double
