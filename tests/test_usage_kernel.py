"""`vif-qos record` against the real kernel: a shaped guest in the simulated dom0 (Debian's
vif-bridge, the xenstored double) sends a known number of bytes with iperf3 -n; the
recorded out-bytes between two record runs must be 1.00-1.06 of what iperf3 sent (the
netdev counts link, IP and TCP headers on top of iperf3's payload; GSO on).

"What iperf3 sent" is the receiver's count (``end.sum_received``): iperf3 -n stops
counting when it has *written* n bytes into the socket and then ends the test, so what
the socket still held never crosses the vif (measured: 8 MiB written, 7.07 MB received
with the default window at 40 Mbit/s). A 64 KiB window (-w) keeps that tail small; the
recorded bytes are also checked against the written count (at most 1.06 of it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from vif_qos.sim.dom0 import Dom0
from vif_qos.usage.store import UsageStore

from helpers import UPLINK_1GBIT

pytestmark = pytest.mark.kernel

POLICY = UPLINK_1GBIT + """\
[pools]
    [[overage]]
    rate = 5mbit
[domains]
    [[web*]]
    rate_in = 20mbit
    rate_out = 40mbit
[billing]
target = 10mbit
"""

SEND_BYTES = 8 * 1024 * 1024
INTERNET_IPV4 = "198.18.0.2"


@pytest.fixture
def dom0(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (namespaces, mounts)")
    if shutil.which("iperf3") is None:
        pytest.fail("iperf3 is missing (./dev installs it)")
    with Dom0(str(tmp_path / "tree"), policy=POLICY, prefix="vqu-") as d:
        yield d


def run_ok(res):
    assert res.returncode == 0, res.stderr
    return res


def test_record_counts_what_iperf3_sent(dom0, tmp_path):
    host = dom0.host
    guest = host.add_guest(domid=3, attach=False)
    dom0.xs.seed_vif(3, 0, name="web1", mac=guest.mac)
    # GSO on at the sender, as a real guest's netfront has it
    subprocess.run(["ip", "-n", guest.ns, "link", "set", "eth0", "gso_max_segs", "65535"],
                   check=True)
    run_ok(dom0.hotplug("online", 3))
    state = tmp_path / "state"
    env = dict(dom0.base_env(), VIF_QOS_STATE_DIR=str(state),
               VIF_QOS_CONFIG="/etc/xen/vif-qos.conf")
    server = subprocess.Popen(["ip", "netns", "exec", host.internet, "iperf3", "-s", "-1",
                               "-p", "5391"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        run_ok(dom0.run([dom0.program, "record"], env))
        client = None
        for _attempt in range(50):   # until the server listens
            client = subprocess.run(["ip", "netns", "exec", guest.ns, "iperf3", "-J", "-c",
                                     INTERNET_IPV4, "-p", "5391", "-n", str(SEND_BYTES),
                                     "-w", "64K"],
                                    capture_output=True, text=True, timeout=60)
            if client.returncode == 0:
                break
            subprocess.run(["sleep", "0.1"])
        assert client is not None and client.returncode == 0, client.stderr
        end = json.loads(client.stdout)["end"]
        written, sent = end["sum_sent"]["bytes"], end["sum_received"]["bytes"]
        assert written >= SEND_BYTES and sent >= 0.95 * SEND_BYTES
        run_ok(dom0.run([dom0.program, "record"], env))
    finally:
        server.kill()
        server.wait()
    with UsageStore(str(state / "usage.sqlite")) as store:
        rows = [s for s in store.samples(0, 1e12) if s.series.kind == "vif"]
        uplinks = [s for s in store.samples(0, 1e12) if s.series.kind == "uplink"]
        latest = {r.key.port: r for _t, r in store.latest_readings()}
    assert [(s.series.domain, s.series.devid) for s in rows] == [("web1", 0)] * 2
    assert rows[0].series.uuid and rows[0].instance == rows[1].instance
    recorded = rows[1].out_bytes - rows[0].out_bytes
    ratio = recorded / sent
    print(f"iperf3 wrote {written} B, delivered {sent} B, recorded out {recorded} B, "
          f"ratio {ratio:.4f}")
    assert 1.00 <= ratio <= 1.06
    assert recorded <= 1.06 * written
    # the uplink carried it too, and the shaper counters were read
    assert uplinks[1].out_bytes - uplinks[0].out_bytes >= sent
    assert latest["vif"].out_drops is not None and latest["vif"].in_drops is not None
    assert latest["vif"].uplink == "peth0" and latest["vif"].bridge == "xenbr0"

    # status names the domain; metrics writes the textfile; report reads the database
    res = run_ok(dom0.run([dom0.program, "status", "--json"], env))
    (vif,) = json.loads(res.stdout)["vifs"]
    assert (vif["vif"], vif["domain"]) == ("vif3.0", "web1")
    prom = tmp_path / "prom"
    prom.mkdir()
    run_ok(dom0.run([dom0.program, "metrics", "--textfile", str(prom)], env))
    text = (prom / "vif_qos.prom").read_text()
    assert 'vif_qos_guest_out_bytes_total{' in text and 'domain="web1"' in text
    assert "vif_qos_guest_out_ceil_bytes_per_second" in text
    res = run_ok(dom0.run([dom0.program, "report", "--json", "--from", "0", "--to",
                           "4000000000"], env))
    (g,) = json.loads(res.stdout)["guests"]
    assert g["domain"] == "web1" and g["out"]["bytes"] == recorded
