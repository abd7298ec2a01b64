"""The simulated dom0 (vif_qos.sim.net): topology, measurement, cleanup.

Checked against the ip tool's JSON (an independent oracle); the measurement is
checked on an unshaped path, where wire and goodput must agree with each other.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from vif_qos.sim.net import run
from vif_qos.errors import EnvironmentProblem
from vif_qos.sim.net import (INBOUND, NETBACK_VIF_MAC, OUTBOUND, Flow, SimHost,
                            in_netns)

PREFIX = "vqt-sim-"

pytestmark = pytest.mark.kernel


def links(ns):
    return {link["ifname"]: link for link in json.loads(run("ip", "-j", "-n", ns, "link").stdout)}


def our_namespaces(host):
    listed = run("ip", "netns", "list").stdout.split()
    return [name for name in listed if name.startswith(f"{PREFIX}{host.token}")]


def test_topology_names_bridge_ports_and_addresses():
    with SimHost(prefix=PREFIX) as host:
        pv = host.add_guest(domid=7)
        hvm = host.add_guest(domid=8, hvm=True)
        renamed = host.add_guest(domid=9, devid=1, vifname="baldr", hvm=True)
        cold = host.add_guest(domid=10, attach=False)
        dom0 = links(host.dom0)
        assert {"xenbr0", "peth0", "vif7.0", "vif8.0", "vif8.0-emu", "baldr", "baldr-emu",
                "vif10.0"} <= set(dom0)
        for dev in ("peth0", "vif7.0", "vif8.0", "vif8.0-emu", "baldr", "baldr-emu"):
            assert dom0[dev].get("master") == "xenbr0", dev
            assert "UP" in dom0[dev]["flags"], dev
        # attach=False: as netback leaves it before vif-bridge runs.
        assert "master" not in dom0["vif10.0"]
        assert "UP" not in dom0["vif10.0"]["flags"]
        assert dom0["vif7.0"]["address"] == NETBACK_VIF_MAC
        with pytest.raises(EnvironmentProblem, match="not up"):
            host.wait_up([(host.dom0, cold.vif)], timeout_s=0.2)
        host.attach(cold.vif)
        assert links(host.dom0)["vif10.0"].get("master") == "xenbr0"
        host.wait_up([(host.dom0, cold.vif), (cold.ns, "eth0")])
        assert (pv.vif, hvm.emu, renamed.vif, renamed.emu) == (
            "vif7.0", "vif8.0-emu", "baldr", "baldr-emu")
        addrs = json.loads(run("ip", "-j", "-n", pv.ns, "addr", "show", "eth0").stdout)[0]
        got = {(a["family"], a["local"]) for a in addrs["addr_info"]}
        assert ("inet", pv.ipv4) in got and ("inet6", pv.ipv6) in got
        # The global addresses are usable at once (nodad); the link-local one
        # may stay tentative until the kernel's DAD worker runs, which is harmless.
        assert not any("tentative" in a for a in addrs["addr_info"]
                       if a["scope"] == "global"), addrs["addr_info"]
        assert len({g.ipv4 for g in (pv, hvm, renamed, cold)}) == 4
        assert len(our_namespaces(host)) == 6
    assert our_namespaces(host) == []


def test_unshaped_measurement_both_directions_both_families():
    with SimHost(prefix=PREFIX) as host:
        guest = host.add_guest(domid=3)
        for flow in (Flow(guest, INBOUND, 4), Flow(guest, OUTBOUND, 6)):
            m = host.measure(flow.guest, flow.direction, flow.family, window_s=1.0,
                             warmup_s=0.75)
            assert m.wire_interface == (guest.vif if flow.direction == INBOUND else "peth0")
            # Rates are computed over the actual windows; on a loaded machine the
            # sampling thread may wake late, so the counter window only roughly
            # matches the requested one.
            assert 0.5 < m.window_s < 1.5, m
            assert m.goodput_window_s == pytest.approx(1.0, abs=0.01), m
            assert m.wire_bits_per_s > 10e6, m
            # Unshaped, the rate is CPU-bound and swings with the machine's load,
            # and the two windows are offset by iperf3's start-up: loose bounds.
            assert 0.6 < m.goodput_bits_per_s / m.wire_bits_per_s < 1.4, m


def test_measurement_through_hand_made_tbf_and_htb():
    """Shaped by hand with tc at 20 Mbit/s (TBF on the vif, HTB default class on
    the uplink): the wire figure is the rate, goodput the payload share of it.
    (IPv6 and vif-qos's own shaping: tests/test_accuracy.py.)"""
    rate, family = 20_000_000, 4
    with SimHost(prefix=PREFIX) as host:
        guest = host.add_guest(domid=4)
        run("tc", "qdisc", "add", "dev", guest.vif, "root", "tbf", "rate", f"{rate}bit",
           "burst", "25000", "latency", "50ms", ns=host.dom0)
        run("tc", "qdisc", "add", "dev", "peth0", "root", "handle", "1:", "htb", "default", "1",
           ns=host.dom0)
        run("tc", "class", "add", "dev", "peth0", "parent", "1:", "classid", "1:1", "htb",
           "rate", f"{rate}bit", "ceil", f"{rate}bit", ns=host.dom0)
        # One MSS per packet: 1448 (IPv4) or 1428 (IPv6) payload bytes per 1514-byte
        # frame, with TCP timestamps.
        payload_share = (1448 if family == 4 else 1428) / 1514
        # One direction at a time: with both saturated, each flow's ACKs would
        # queue behind the other flow's data.
        for direction in (INBOUND, OUTBOUND):
            m = host.measure(guest, direction, family)
            if m.wire_bits_per_s < 0.97 * rate:
                # Other jobs' load can only slow a flow down: measure once more.
                m = max(m, host.measure(guest, direction, family),
                        key=lambda x: x.wire_bits_per_s)
            assert m.wire_bits_per_s == pytest.approx(rate, rel=0.03), m
            assert m.goodput_bits_per_s / m.wire_bits_per_s == \
                pytest.approx(payload_share, rel=0.03), m
        stats = json.loads(run("tc", "-s", "-j", "qdisc", "show", "dev", guest.vif,
                              ns=host.dom0).stdout)
        assert stats[0]["kind"] == "tbf" and stats[0]["bytes"] > 0


def test_close_removes_everything_after_an_error_and_kills_processes():
    with pytest.raises(RuntimeError):
        with SimHost(prefix=PREFIX) as host:
            guest = host.add_guest(domid=4)
            sleeper = subprocess.Popen(["ip", "netns", "exec", guest.ns, "sleep", "600"])
            # A process not started by simnet: found through `ip netns pids` once it
            # runs inside the namespace.
            deadline = time.monotonic() + 10
            while str(sleeper.pid) not in run("ip", "netns", "pids", guest.ns).stdout.split():
                assert time.monotonic() < deadline, "sleep never entered the namespace"
                time.sleep(0.01)
            raise RuntimeError("test body failed")
    assert our_namespaces(host) == []
    assert sleeper.wait(timeout=5) != 0


def test_remove_guest_makes_the_vif_vanish_and_in_dom0_enters_dom0():
    with SimHost(prefix=PREFIX) as host:
        guest = host.add_guest(domid=5)
        with host.in_dom0():
            with open("/proc/thread-self/net/dev") as f:
                assert "vif5.0:" in f.read()
        host.remove_guest(guest)
        assert "vif5.0" not in links(host.dom0)
        with pytest.raises(EnvironmentProblem):
            host.counters().read("vif5.0")
    with pytest.raises(EnvironmentProblem):
        with in_netns("vqt-sim-no-such-namespace"):
            pass
