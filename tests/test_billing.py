"""The billing arithmetic (vif_qos.core.billing) against hand-computed vectors."""

import calendar

import pytest

from vif_qos.core import billing as b
from vif_qos.errors import InputError

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, a slot boundary


# --- the 95th by nearest rank -------------------------------------------------------

@pytest.mark.parametrize("n, position", [
    (1, 1),        # ceil(0.95) = 1
    (19, 19),      # ceil(18.05) = 19: the maximum
    (20, 19),      # ceil(19.0) = 19: the one top sample is discarded
    (21, 20),      # ceil(19.95) = 20
    (8640, 8208),  # a 30-day month: ceil(8208.0); the top 432 slots are free
    (8928, 8482),  # a 31-day month: ceil(8481.6); the top 446 slots are free
])
def test_rank_position(n, position):
    assert b.rank_position(n) == position


@pytest.mark.parametrize("n", [1, 19, 20, 21, 8640, 8928])
def test_nearest_rank_of_a_shuffled_range(n):
    # values 1..n in a scrambled order: the 95th is the value at the rank itself
    values = [(i * 7919) % n + 1 for i in range(n)]
    assert sorted(values) == list(range(1, n + 1))
    assert b.nearest_rank(values) == b.rank_position(n)


def test_hand_vectors():
    assert b.nearest_rank([42.0]) == 42.0
    twenty = [10.0] * 18 + [50.0, 99.0]           # position 19 -> 50
    assert b.nearest_rank(twenty) == 50.0
    assert b.nearest_rank(twenty[:-1]) == 50.0    # n=19, position 19 = the max
    assert b.nearest_rank(twenty + [7.0]) == 50.0  # n=21, position 20 -> 50 (99 is 21st)
    assert b.nearest_rank([]) is None


def test_ties():
    # 20 values, the top 3 equal: position 19 is inside the tie
    values = [1.0] * 17 + [5.0, 5.0, 5.0]
    assert b.nearest_rank(values) == 5.0
    assert b.nearest_rank([3.0] * 8928) == 3.0


def test_month_of_8928_slots_with_446_free_bursts():
    # 446 bursts at 100 are free (8928 - 8482 = 446); the 447th is billed
    base = [1.0] * (8928 - 446) + [100.0] * 446
    assert b.nearest_rank(base) == 1.0
    assert b.nearest_rank(base[1:] + [100.0]) == 100.0


# --- counters -----------------------------------------------------------------------

def test_counter_increase_and_restart():
    assert b.counter_increase(100, 150) == 50
    assert b.counter_increase(150, 150) == 0
    assert b.counter_increase(150, 40) == 40   # restart: counted as Prometheus does


def test_64bit_counters_are_exact():
    big = 2 ** 64 - 1000
    assert b.counter_increase(big, 2 ** 64 - 1) == 999
    s = [b.Sample("g", T0, big, 2 ** 63 - 1), b.Sample("g", T0 + 300, big + 3_750_000,
                                                       2 ** 63 - 1 + 375_000)]
    (iv,) = b.intervals(s)
    assert (iv.in_bytes, iv.out_bytes) == (3_750_000, 375_000)
    rates = b.series_slot_rates([iv])["g"]
    assert rates == {T0: (100_000.0, 10_000.0)}


def _series(points, series="g", boot="b1", instance="1/10"):
    """points: (wall, uptime, in, out)"""
    return [b.Sample(series, w, i, o, boot_id=boot, uptime_s=u, instance=instance)
            for w, u, i, o in points]


def test_counter_restart_counts_the_new_value():
    s = _series([(T0, 1000, 0, 0), (T0 + 300, 1300, 3_000_000, 0),
                 (T0 + 600, 1600, 1_500_000, 0)])   # went down: vif recreated
    ivs = b.intervals(s)
    assert [iv.in_bytes for iv in ivs] == [3_000_000, 1_500_000]
    assert [iv.restarted for iv in ivs] == [False, True]


def test_reboot_with_a_new_domid_is_a_restart_even_when_the_counter_is_higher():
    before = _series([(T0, 1000, 0, 0), (T0 + 300, 1300, 1_000, 0)], instance="5/20")
    after = _series([(T0 + 600, 1600, 9_000, 0)], instance="6/31")   # new domid, ifindex
    ivs = b.intervals(before + after)
    assert [iv.in_bytes for iv in ivs] == [1_000, 9_000]
    assert ivs[-1].restarted


def test_dom0_reboot_uses_the_wall_clock_and_restarts():
    s = [b.Sample("g", T0, 0, 5_000, "boot1", 86_000.0, "1/10"),
         b.Sample("g", T0 + 300, 0, 8_000, "boot2", 40.0, "1/10")]   # uptime went down
    (iv,) = b.intervals(s)
    assert iv.duration_s == 300 and iv.out_bytes == 8_000 and iv.restarted


def test_clock_step_backwards_uses_the_boot_clock():
    # the wall clock steps back 1 h between two runs; boot time says 300 s passed
    s = _series([(T0 + 3600, 5000, 0, 0), (T0 + 300, 5300, 375_000, 0)])
    (iv,) = b.intervals(s)
    assert iv.duration_s == 300
    assert b.series_slot_rates([iv])["g"] == {T0: (10_000.0, 0.0)}


def test_clock_step_forwards_is_not_a_gap():
    # wall jumps 2 h ahead; boot time says 300 s: a normal interval, not a gap
    s = _series([(T0, 5000, 0, 0), (T0 + 7500, 5300, 375_000, 0)])
    (iv,) = b.intervals(s)
    assert not iv.gap and iv.duration_s == 300


def test_gaps_stay_gaps():
    pts = [(T0 + k * 300, 1000 + k * 300, k * 375_000, 0) for k in range(4)]
    # 1 hour without a sample, then the rate continues
    pts += [(T0 + 4200 + k * 300, 1000 + 4200 + k * 300, (14 + k) * 375_000, 0)
            for k in range(3)]
    ivs = b.intervals(_series(pts))
    gaps = [iv for iv in ivs if iv.gap]
    assert len(gaps) == 1 and gaps[0].in_bytes == 11 * 375_000
    rates = b.series_slot_rates(ivs)["g"]
    assert sorted(rates) == [T0, T0 + 300, T0 + 600, T0 + 4200, T0 + 4500]
    assert all(v == (10_000.0, 0.0) for v in rates.values())
    st = b.stats(rates, 0, 0, T0, T0 + 4800)
    assert (st.slots, st.slots_expected) == (5, 16)
    assert st.gaps == ((T0 + 900, T0 + 4200),)
    # the gap's hour is not a slot of zeros: the 95th is of the five real slots
    assert st.inbound.p95_bits_per_s == 10_000.0


def test_a_late_timer_lands_in_the_slot_of_its_midpoint():
    s = _series([(T0 + 1, 1001, 0, 0), (T0 + 302, 1302, 376_250, 0)])
    assert list(b.series_slot_rates(b.intervals(s))["g"]) == [T0]


def test_total_sums_guests_per_slot():
    a = {T0: (1.0, 2.0), T0 + 300: (3.0, 4.0)}
    c = {T0 + 300: (10.0, 0.0)}
    assert b.sum_slot_rates([a, c]) == {T0: (1.0, 2.0), T0 + 300: (13.0, 4.0)}


# --- periods, projection (durations: tests/test_duration.py) ------------------------------------------------

def test_period_bounds_and_billing_day():
    assert b.parse_period("2026-02") == (calendar.timegm((2026, 2, 1, 0, 0, 0)),
                                         calendar.timegm((2026, 3, 1, 0, 0, 0)))
    start, end = b.period_bounds(2026, 12, 15)
    assert (start, end) == (calendar.timegm((2026, 12, 15, 0, 0, 0)),
                            calendar.timegm((2027, 1, 15, 0, 0, 0)))
    assert b.period_containing(calendar.timegm((2027, 1, 3, 12, 0, 0)), 15) == (start, end)
    with pytest.raises(InputError):
        b.parse_period("2026-13")


def test_project_p95():
    so_far = [1.0] * 100
    # 100 slots done at 1, 9 left at 50: n=109, position ceil(103.55)=104 -> 1
    assert b.project_p95(so_far, 50.0, 5) == 1.0
    # 100 left at 50: n=200, position 190 -> 50
    assert b.project_p95(so_far, 50.0, 100) == 50.0
    # current rate below everything so far: the 95th comes from the past
    assert b.project_p95([5.0] * 19 + [9.0], 0.0, 20) == 5.0
    assert b.project_p95([], 3.0, 10) == 3.0
    assert b.project_p95([], 3.0, 0) is None
    # the same as sorting the union
    for cur in (0.5, 1.0, 2.0, 7.0):
        past = [float(i % 7) for i in range(50)]
        assert b.project_p95(past, cur, 30) == b.nearest_rank(past + [cur] * 30)
