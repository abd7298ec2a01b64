"""The numbers ``vif-qos report`` prints (issue 19, two wrong ones): the SHARE column
is each guest's part of the total's 95th, so the shares add up to 100 % whenever
that 95th is positive, whatever the period (starting or ending inside a slot,
still running); and ``--samples FILE`` reports over the samples' own span unless
a period is given, and refuses a period that holds none of them. Pure."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vif_qos.cli import main
from vif_qos.core import billing
from vif_qos.core.billing import Sample
from vif_qos.usage import report as reportmod
from vif_qos.usage.store import SeriesKey

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, a slot boundary
MBIT = 1_000_000


def series(name):
    return SeriesKey("vif", name, "", 0, "vif")


def samples_at(name, points):
    """Cumulative samples of one guest from ``(time, in bytes, out bytes)`` steps."""
    out, b_in, b_out = [], 0, 0
    for time_s, d_in, d_out in points:
        b_in += d_in
        b_out += d_out
        out.append(Sample(series(name), time_s, b_in, b_out))
    return out


def shown_share(line):
    """The SHARE column of a guest's row of the text report (the first %)."""
    return float(re.findall(r"([0-9.]+)%", line)[0])


def shares(rep):
    return [share for _g, _st, _r, share in rep.guests]


def test_share_of_a_running_period_ignores_the_slot_still_running():
    """What ``./dev simulate`` printed (129 %, the column summing to 139 %): the
    share was taken in the slot of the 95th of every slot, the running one
    included, and divided by the 95th of the complete slots only."""
    a = samples_at("a", [(T0, 0, 0), (T0 + 300, 0, MBIT * 300 // 8),
                         (T0 + 330, 0, 100 * MBIT * 30 // 8)])
    b = samples_at("b", [(T0, 0, 0), (T0 + 300, 0, MBIT * 300 // 8),
                         (T0 + 330, 0, 50 * MBIT * 30 // 8)])
    rep = reportmod.build(a + b, T0, T0 + 86400, now_s=T0 + 330)
    assert rep.total.p95_bits_per_s == pytest.approx(2 * MBIT)  # one complete slot
    assert rep.total.p95_slot == T0
    assert shares(rep) == [pytest.approx(0.5), pytest.approx(0.5)]
    text = reportmod.to_text(rep)
    assert [shown_share(line) for line in text.splitlines()[2:4]] == [50.0, 50.0]


def test_share_of_a_period_starting_inside_a_slot():
    # the period starts at T0 + 150: slot T0 is cut, T0+300.. are complete
    a = samples_at("a", [(T0, 0, 0)] + [(T0 + 300 * k, 0, (9 if k == 1 else 1) * MBIT *
                                          300 // 8) for k in range(1, 5)])
    b = samples_at("b", [(T0, 0, 0)] + [(T0 + 300 * k, 0, 3 * MBIT * 300 // 8)
                                        for k in range(1, 5)])
    rep = reportmod.build(a + b, T0 + 150, T0 + 1200, now_s=T0 + 1200)
    assert rep.total.slots_expected == 3 and rep.total.p95_slot == T0 + 900
    assert sum(shares(rep)) == pytest.approx(1.0)
    assert rep.total.p95_bits_per_s == pytest.approx(4 * MBIT)


def test_p95_slot_and_p95_are_one_ranking():
    rates = {T0: (1.0, 5.0), T0 + 300: (7.0, 2.0), T0 + 600: (3.0, 3.0),
             T0 + 900: (7.0, 0.0)}
    st_ = billing.stats(rates, 0, 0, T0, T0 + 1200)
    assert st_.p95_slot == T0 + 900 and st_.p95_bits_per_s == 7.0  # latest of the ties
    assert billing.percentile_slot(rates, []) is None
    assert billing.stats({}, 0, 0, T0, T0 + 1200).p95_slot is None
    # the slot is picked among the complete slots inside the period only
    cut = billing.stats(rates, 0, 0, T0 + 1, T0 + 900)
    assert cut.p95_slot == T0 + 300 and cut.p95_bits_per_s == 7.0


steps = st.lists(st.tuples(st.integers(1, 700), st.integers(0, 10 ** 8),
                           st.integers(0, 10 ** 8)), min_size=1, max_size=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(guests=st.lists(st.tuples(st.integers(0, 900), steps), min_size=1, max_size=4),
       start=st.integers(-600, 1500), length=st.integers(1, 9000),
       now=st.integers(0, 10000))
def test_shares_add_up_to_the_whole_95th(guests, start, length, now):
    """For any samples and any period (a slot cut at either end, a period still
    running at ``now``): the shares add up to 1 when the total's 95th is positive,
    each lies in 0..1, and the total's 95th is the nearest rank of its complete
    slots."""
    samples = []
    for index, (offset, points) in enumerate(guests):
        t = T0 + offset
        timeline = [(t, 0, 0)]
        for gap, d_in, d_out in points:
            t += gap
            timeline.append((t, d_in, d_out))
        samples += samples_at(f"g{index}", timeline)
    from_s, to_s = T0 + start, T0 + start + length
    rep = reportmod.build(samples, from_s, to_s, now_s=T0 + now)
    got = shares(rep)
    if rep.total.p95_bits_per_s:
        assert sum(got) == pytest.approx(1.0, rel=1e-9)
        assert all(0.0 <= s <= 1.0 + 1e-12 for s in got)
        shown = [shown_share(line) for line in
                 reportmod.to_text(rep).splitlines()[2:2 + len(got)]]
        assert abs(sum(shown) - 100.0) <= 0.05 * len(got) + 1e-9  # to rounding
    else:
        assert all(s is None for s in got)
    complete = billing.expected_slots(from_s, min(to_s, T0 + now))
    maxima = [max(rep.total_rates[s]) for s in complete if s in rep.total_rates]
    assert rep.total.p95_bits_per_s == billing.nearest_rank(maxima)


# --- report --samples: the samples' own span ------------------------------------------

def write_csv(tmp_path, rows):
    path = tmp_path / "s.csv"
    path.write_text("time,domain,devid,in_bytes,out_bytes\n"
                    + "".join(",".join(str(c) for c in r) + "\n" for r in rows))
    return str(path)


MARCH = 1_772_323_200  # 2026-03-01T00:00:00Z, far from any "this month" of a test run


def march_rows(slots=12):
    return [(MARCH + 300 * k + 7, "web", 0, 0, k * MBIT * 300 // 8) for k in range(slots + 1)]


def test_samples_outside_this_month_are_reported_over_their_own_span(tmp_path, capsys,
                                                                     monkeypatch):
    """Before: the default period (this month) held none of them: an empty table,
    exit 0. Now the report covers the samples' span."""
    monkeypatch.setenv("VIF_QOS_CONFIG", str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("")
    path = write_csv(tmp_path, march_rows())
    assert main(["report", "--samples", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["from"] == "2026-03-01T00:00:00Z"   # the first sample's slot
    assert data["to"] == "2026-03-01T01:00:07Z"     # the last sample
    web, = data["guests"]
    assert web["out"]["bytes"] == 12 * MBIT * 300 // 8
    assert web["coverage"]["slots"] == web["coverage"]["slots_expected"] == 12
    assert web["share_of_total_p95"] == 1.0
    assert main(["report", "--samples", path]) == 0
    assert "\nweb " in capsys.readouterr().out


def test_a_period_holding_none_of_the_samples_says_where_they_are(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("VIF_QOS_CONFIG", str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("")
    path = write_csv(tmp_path, march_rows())
    for argv in (["--period", "2026-05"], ["--from", "2026-01-01", "--to", "2026-01-02"]):
        assert main(["report", "--samples", path] + argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1
        assert ("the samples lie in 2026-03-01T00:00:07Z .. 2026-03-01T01:00:07Z "
                "(--period 2026-03 holds them)") in err and argv[1] in err
    assert main(["report", "--samples", path, "--period", "2026-03"]) == 0
    assert "\nweb " in capsys.readouterr().out


def test_an_empty_samples_file_is_bad_input(tmp_path, capsys):
    path = write_csv(tmp_path, [])
    assert main(["report", "--samples", path]) == 2
    assert "no samples" in capsys.readouterr().err


def test_samples_spanning_periods_name_each(tmp_path):
    rows = [(MARCH - 600, "a", 0, 0, 0), (MARCH + 600, "a", 0, 0, 10)]
    samples = reportmod.read_samples_csv(write_csv(tmp_path, rows))
    assert reportmod.samples_hint(samples, day=1) == (
        "the samples lie in 2026-02-28T23:50:00Z .. 2026-03-01T00:10:00Z "
        "(--period 2026-02 to 2026-03 hold them)")
