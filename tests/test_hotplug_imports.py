"""What a hotplug run imports: ``offline``, ``remove`` and ``cleanup --vif`` for a vif
that holds nothing of vif-qos (the ledger, vif_qos/kernel/ledger.py) load neither
pyroute2 nor the nftables bindings (nor configobj); with something recorded, they do
(the check can see them). Each case runs in a fresh interpreter, in a namespace of
its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CODE = """
import json, sys
from vif_qos.xen.hotplug import hotplug_main
from vif_qos.cli import main
env = {"vif": "vif9.0", "XENBUS_PATH": "backend/vif/9/0"}
rc = [hotplug_main("offline", ["type_if=vif", "dev=vif9.0"], env),
      hotplug_main("remove", ["type_if=tap", "dev=vif9.0-emu"], {"INTERFACE": "vif9.0-emu"}),
      main(["cleanup", "--vif", "vif9.0"])]
print(json.dumps({"rc": rc, "loaded": sorted(
    m for m in ("pyroute2", "nftables", "configobj") if m in sys.modules)}))
"""


def run_in(namespaces, run_dir, tmp_path):
    ns = namespaces.make("imports")
    env = dict(os.environ, VIF_QOS_RUN_DIR=run_dir, VIF_QOS_SYSLOG="0",
               VIF_QOS_HOTPLUG_LOG=str(tmp_path / "hotplug.log"),
               VIF_QOS_CONFIG=str(tmp_path / "absent.conf"))
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CODE], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.kernel
@pytest.mark.parametrize("ledger", ["empty", "no run directory"])
def test_nothing_recorded_loads_no_netlink_library(namespaces, tmp_path, ledger):
    run_dir = tmp_path / "run"
    if ledger == "empty":
        (run_dir / "vifs").mkdir(parents=True)
    result = run_in(namespaces, str(run_dir), tmp_path)
    assert result == {"rc": [0, 0, 0], "loaded": []}
    assert "no shaping left to remove" in (tmp_path / "hotplug.log").read_text()


@pytest.mark.kernel
@pytest.mark.parametrize("ledger", ["recorded", "run directory without a ledger"])
def test_a_recorded_name_or_an_old_run_directory_looks_in_the_kernel(namespaces, tmp_path, ledger):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if ledger == "recorded":
        (run_dir / "vifs").mkdir()
        (run_dir / "vifs" / "vif9.0").touch()
    result = run_in(namespaces, str(run_dir), tmp_path)
    assert result["rc"] == [0, 0, 0]
    assert {"pyroute2", "nftables"} <= set(result["loaded"]), result
    assert not (run_dir / "vifs" / "vif9.0").exists()  # removed: forgotten
