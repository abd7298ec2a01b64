"""Hotplug in the order a real Xen host runs it (issue 8), through Debian's vif-bridge
with the hook (or the script= wrapper) in the simulated dom0:

- netback frees the vif netdev before libxl runs ``offline``, so udev's
  ``cleanup --vif`` does the normal teardown: the logs say so, not "orphaned",
  and a host where no guest was shaped yet has no table without that being a
  "flush";
- two guests given one ``vifname``: the second's failed start and its offline
  never remove the first guest's shaping;
- a ``vifname`` naming the uplink or the bridge is refused, the uplink's tree kept;
- ``online`` with its stdout closed shapes and exits 0 without a traceback.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from vif_qos.sim.dom0 import WRAPPER, Dom0

from helpers import DOM0_POLICY_HEAD

pytestmark = pytest.mark.kernel

POLICY = DOM0_POLICY_HEAD + """\
[domains]
    [[web*]]
    rate_in = 2mbit
    rate_out = 1mbit
"""


@pytest.fixture
def dom0(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("end-to-end hotplug tests need root (namespaces, mounts)")
    with Dom0(str(tmp_path / "tree"), policy=POLICY) as d:
        yield d


def sh(ns, *args):
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def log_lines(dom0, since=0):
    return dom0.hotplug_log().splitlines()[since:]


def shaping_of(dom0, vif):
    """(tbf on the vif?, leaf classids recorded for it, its nft entry comment)."""
    ns = dom0.host.dom0
    tbf = vif in dom0.host.link_names() and "qdisc tbf 7a51:" in sh(
        ns, "tc", "qdisc", "show", "dev", vif)
    comment = re.search(rf'comment "(vif-qos vif={re.escape(vif)} [^"]*)"',
                        sh(ns, "nft", "list", "ruleset"))
    leaves = re.findall(r"class htb (7a51:[0-9a-f]{3,}) ", sh(ns, "tc", "class", "show",
                                                                "dev", "peth0"))
    return tbf, leaves, comment.group(1) if comment else None


def test_real_xen_teardown_order_is_logged_as_what_happens(dom0):
    # udev's full sweep on a host where no guest was ever shaped: no table yet.
    start = len(log_lines(dom0))
    ok(dom0.vif_qos("cleanup"))
    assert not [ln for ln in log_lines(dom0, start) if "warning" in ln or "flush" in ln]

    guest = dom0.host.add_guest(domid=3, attach=False)
    dom0.xs.seed_vif(3, 0, name="web3")
    ok(dom0.hotplug("online", 3))
    start = len(log_lines(dom0))
    dom0.host.remove_guest(guest)  # netback frees the netdev first
    ok(dom0.run(dom0.udev_cleanup_command("vif3.0"), dom0.base_env()))
    ok(dom0.hotplug("offline", 3))  # then libxl's offline
    ok(dom0.vif_qos("cleanup"))  # and udev's sweep for the backend device
    lines = log_lines(dom0, start)
    text = "\n".join(lines)
    assert "orphan" not in text and "flush" not in text and " warning: " not in text, text
    assert any(re.search(r"info: cleanup vif3\.0: netdev gone: its shaping removed$", ln)
               for ln in lines), text
    assert any(re.search(r"info: offline vif3\.0: no shaping left to remove \(already "
                         r"removed when the netdev went", ln) for ln in lines), text
    assert shaping_of(dom0, "vif3.0") == (False, [], None)


def test_nft_flush_under_live_guests_is_still_called_one(dom0):
    dom0.host.add_guest(domid=3)
    dom0.xs.seed_vif(3, 0, name="web3")
    ok(dom0.hotplug("online", 3))
    sh(dom0.host.dom0, "nft", "delete", "table", "bridge", "vif_qos")
    start = len(log_lines(dom0))
    ok(dom0.vif_qos("cleanup"))
    assert any("nft flush ruleset?" in ln and " warning: " in ln
               for ln in log_lines(dom0, start))
    assert shaping_of(dom0, "vif3.0")[0]  # the live guest's TBF kept


@pytest.mark.parametrize("script", ["/etc/xen/scripts/vif-bridge", WRAPPER])
def test_a_second_guest_with_the_same_vifname_never_removes_the_first_ones(dom0, script):
    dom0.host.add_guest(domid=3, attach=False)
    dom0.xs.seed_vif(3, 0, name="web3", vifname="web0", script=script)
    ok(dom0.hotplug("online", 3, script=script))
    before = shaping_of(dom0, "web0")
    assert before[0] and len(before[1]) == 1 and "dom=3.0" in before[2]
    dom0.host.add_guest(domid=4, attach=False)
    dom0.xs.seed_vif(4, 0, name="web4", vifname="web0", script=script)
    assert dom0.hotplug("online", 4, script=script).returncode != 0  # name taken
    dom0.hotplug("offline", 4, script=script)  # libxl cleans the failed device up
    assert shaping_of(dom0, "web0") == before
    assert any("belongs to guest 3.0" in ln for ln in log_lines(dom0))
    # B's vif-qos run itself, as the wrapper would run it with B's backend, is
    # refused too: web0 is A's netdev (same ifindex as A's entry records).
    env = dom0.script_env(4, 0)
    result = dom0.run([dom0.program, "online", "type_if=vif"], env)
    assert result.returncode == 1
    assert "shaped for guest 3.0" in dom0.xs.read("backend/vif/4/0/hotplug-error")
    assert shaping_of(dom0, "web0") == before
    # A's own offline still removes it.
    ok(dom0.hotplug("offline", 3, script=script))
    assert shaping_of(dom0, "web0") == (False, [], None)


@pytest.mark.parametrize("vifname", ["peth0", "xenbr0"])
def test_a_vifname_naming_the_uplink_or_the_bridge_is_refused(dom0, vifname):
    dom0.host.add_guest(domid=2, attach=False)
    dom0.xs.seed_vif(2, 0, name="web2")
    ok(dom0.hotplug("online", 2))  # the uplink carries the tree and a leaf
    tree = sh(dom0.host.dom0, "tc", "class", "show", "dev", "peth0")
    dom0.host.add_guest(domid=3, attach=False)
    dom0.xs.seed_vif(3, 0, name="web3", vifname=vifname)
    # vif-qos as the wrapper runs it (vif-bridge's own rename check would stop the
    # hook path before vif-qos runs).
    result = dom0.run([dom0.program, "online", "type_if=vif"], dom0.script_env(3, 0))
    assert result.returncode == 2, result.stderr
    error = dom0.xs.read("backend/vif/3/0/hotplug-error")
    assert "not a guest's port" in error and f"'{vifname}'" in error, error
    assert sh(dom0.host.dom0, "tc", "class", "show", "dev", "peth0") == tree
    for dev in ("peth0", "xenbr0"):
        assert "tbf" not in sh(dom0.host.dom0, "tc", "qdisc", "show", "dev", dev)


def test_online_with_stdout_closed_shapes_without_a_traceback(dom0):
    dom0.host.add_guest(domid=3)
    dom0.xs.seed_vif(3, 0, name="web3")
    result = dom0.run(["sh", "-c", 'exec "$0" "$@" >&-', dom0.program, "online",
                       "type_if=vif"], dom0.script_env(3, 0))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert shaping_of(dom0, "vif3.0")[0]
