"""Latency under load and Gbit/s goodput, measured with GSO on (issue 10).

Guests behind the simulated dom0 (``vif_qos.sim.net``, GSO on at every sender as
netback hands dom0 a guest's TSO frames) are shaped with the plans the resolver
derives (``vif_qos.core.resolve.plan_vif``): a TBF on the vif (inbound) and an HTB
leaf with its bfifo leaf qdisc on the uplink (outbound), both sized from the one
``latency`` setting (built-in 50 ms).

Asserted, per guest at 1, 10 and 100 Mbit/s and per direction: the median ping RTT
(internet host -> guest, one echo request every 50 ms for 3 s) while the guest runs
32 parallel TCP flows in that direction is at most

    base RTT (idle median) + latency + the time of one 64 KiB packet at the rate

(the leaf holds at most rate x latency + 64 KiB; the TBF at most
max(rate x latency, its largest whole packet); both drain at the rate); also for
a TBF with a ``peak`` bucket at 10 Mbit/s (peak 20). Single-flow
goodput at these rates is asserted in tests/test_accuracy.py with the same plans.
A 1 Gbit/s guest reaches TCP goodput >= 0.90 of its rate both ways, IPv4 and IPv6.

A reading above the bound is re-measured once: another job on the 2-core machine
can slow dom0's dequeueing, while a queue sized wrong shows again.
"""

from __future__ import annotations

import pytest

from vif_qos.config.policy import check_policy_text
from vif_qos.core.resolve import plan_vif
from vif_qos.model import VifFacts, VifPlan
from vif_qos.sim.dom0 import BFIFO_10GBIT_UPLINK_POLICY
from vif_qos.sim.net import INBOUND, OUTBOUND, SimHost

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

MBIT = 10 ** 6
GBIT = 10 ** 9
RATES_BITS_PER_S = (1 * MBIT, 10 * MBIT, 100 * MBIT)
LATENCY_US = 50_000
GSO_PACKET_BYTES = 65536
FLOWS = 32
#: (rate, peak) of the guest whose TBF has a peak bucket.
PEAK_CASE = (10 * MBIT, 20 * MBIT)
GOODPUT_MIN_SHARE = 0.90


def vif_plan(vif: str, qos: str) -> VifPlan:
    policy, problems = check_policy_text(BFIFO_10GBIT_UPLINK_POLICY, "test_latency policy")
    assert not problems and policy is not None, problems
    return plan_vif(VifFacts(vif=vif, devid=0), policy, (qos, "test_latency qos"))


def bound_ms(base_ms: float, rate: int) -> float:
    return base_ms + LATENCY_US / 1000 + GSO_PACKET_BYTES * 8 * 1000 / rate


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    from vif_qos.kernel.apply import apply_vif

    with pytest.MonkeyPatch.context() as patch, SimHost(prefix="vqt-lat-") as host:
        patch.setenv("VIF_QOS_RUN_DIR", str(tmp_path_factory.mktemp("run")))
        guests = {}
        for i, rate in enumerate(RATES_BITS_PER_S + (GBIT,)):
            guest = host.add_guest(domid=3301 + i)
            plan = vif_plan(guest.vif, f"rate={rate}bit")
            assert plan.outbound.leaf_qdisc.latency_us == LATENCY_US
            with host.in_dom0():
                apply_vif(plan)
            guests[rate] = guest
        # A TBF with a second bucket: peak 2x the rate, minburst one frame.
        guest = host.add_guest(domid=3309)
        plan = vif_plan(guest.vif, f"rate={PEAK_CASE[0]}bit,peak={PEAK_CASE[1]}bit")
        assert plan.inbound.peak_bits_per_s == PEAK_CASE[1]
        with host.in_dom0():
            apply_vif(plan)
        guests[PEAK_CASE] = guest
        yield host, guests


@pytest.mark.parametrize("direction", (INBOUND, OUTBOUND))
@pytest.mark.parametrize("rate", RATES_BITS_PER_S, ids=lambda r: f"{r // MBIT}mbit")
def test_rtt_under_32_flows_within_latency_plus_one_packet(shaped, rate, direction):
    host, guests = shaped
    guest = guests[rate]
    idle = host.rtt_under_load(guest, None, ping_s=1.0)
    assert idle.rtts_ms, "no ping reply while idle"
    limit = bound_ms(idle.median_ms, rate)
    for _attempt in range(2):
        loaded = host.rtt_under_load(guest, direction, flows=FLOWS)
        if loaded.median_ms <= limit:
            break
    why = (f"{direction} {rate // MBIT} Mbit/s, {FLOWS} flows: median RTT "
           f"{loaded.median_ms:.1f} ms ({len(loaded.rtts_ms)}/{loaded.sent} replies), idle "
           f"{idle.median_ms:.3f} ms, bound {limit:.1f} ms; load "
           f"{loaded.load_bits_per_s / rate:.3f} of the rate")
    print("\n" + why)
    assert len(loaded.rtts_ms) >= loaded.sent // 2, why
    assert loaded.median_ms <= limit, why
    # The flows still fill the rate: the bound does not come from starving them.
    assert loaded.load_bits_per_s >= 0.75 * rate, why


def test_rtt_under_32_flows_with_a_peak_bucket(shaped):
    """The TBF's second bucket (``peak``) lets short bursts through faster; the
    queue still holds at most rate x latency (the peak splits GSO packets into
    frames), so the inbound bound is the same."""
    host, guests = shaped
    guest, rate = guests[PEAK_CASE], PEAK_CASE[0]
    idle = host.rtt_under_load(guest, None, ping_s=1.0)
    limit = bound_ms(idle.median_ms, rate)
    for _attempt in range(2):
        loaded = host.rtt_under_load(guest, INBOUND, flows=FLOWS)
        if loaded.median_ms <= limit:
            break
    why = (f"inbound {rate // MBIT} Mbit/s peak {PEAK_CASE[1] // MBIT} Mbit/s, {FLOWS} "
           f"flows: median RTT {loaded.median_ms:.1f} ms, idle {idle.median_ms:.3f} ms, "
           f"bound {limit:.1f} ms; load {loaded.load_bits_per_s / rate:.3f}")
    print("\n" + why)
    assert loaded.median_ms <= limit, why
    assert loaded.load_bits_per_s >= 0.75 * rate, why


@pytest.mark.parametrize("family", (4, 6), ids=lambda f: f"ipv{f}")
@pytest.mark.parametrize("direction", (INBOUND, OUTBOUND))
def test_gbit_guest_goodput_at_least_90_percent(shaped, direction, family):
    host, guests = shaped
    readings = []
    for _attempt in range(3):
        m = host.measure(guests[GBIT], direction, family)
        readings.append(m)
        if m.goodput_ratio(GBIT) >= GOODPUT_MIN_SHARE:
            break
    m = max(readings, key=lambda r: r.goodput_ratio(GBIT))
    why = (f"{direction} IPv{family} 1 Gbit/s: goodput {m.goodput_ratio(GBIT):.3f}, wire "
           f"{m.wire_ratio(GBIT):.3f} (interface bytes {m.interface_bytes}, "
           f"{m.interface_packets} packets, {m.segments} segments); readings "
           + ", ".join(f"{r.goodput_ratio(GBIT):.3f}" for r in readings))
    print("\n" + why)
    assert m.goodput_ratio(GBIT) >= GOODPUT_MIN_SHARE, why
    assert m.wire_ratio(GBIT) <= 1.05, why
