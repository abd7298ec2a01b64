"""The usage store, report, CSV import, plot, metrics text and the auto-overage
decision (no kernel: these are the pure and file parts)."""

import json
import os
import sqlite3
import struct
import threading

import pytest

from vif_qos.cli import main
from vif_qos.core.overage import GuestLoad, OverageSettings, decide, pool_membership
from vif_qos.errors import EnvironmentProblem
from vif_qos.usage import report as reportmod
from vif_qos.usage.store import Move, Reading, SeriesKey, UsageStore, record_lock

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
MBIT = 1_000_000


def key(name, devid=0, uuid="u-" + "1" * 8, port="vif"):
    return SeriesKey("vif", name, uuid, devid, port)


def reading(k, in_b, out_b, instance="1/10"):
    return Reading(k, instance, "vif1.0", in_b, out_b, in_b // 1000, out_b // 1000,
                   in_drops=0, out_drops=3, in_overlimits=1, out_overlimits=2,
                   bridge="xenbr0", uplink="peth0")


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("VIF_QOS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


# --- the store --------------------------------------------------------------------

def test_store_round_trip_with_64bit_counters_wal_and_schema(state):
    big = 2 ** 64 - 5
    with UsageStore() as st:
        st.add_samples(T0, "boot", 100.0, [reading(key("web"), big, 2 ** 63)])
        st.add_samples(T0 + 300, "boot", 400.0, [reading(key("web"), 2 ** 64 - 1, 2 ** 63 + 7)])
        got = st.samples(T0 - 1, T0 + 301)
        assert [(s.in_bytes, s.out_bytes) for s in got] == [(big, 2 ** 63),
                                                             (2 ** 64 - 1, 2 ** 63 + 7)]
        assert got[0].series == key("web") and got[1].uptime_s == 400.0
        (_t, latest), = st.latest_readings()
        assert latest.in_bytes == 2 ** 64 - 1 and latest.out_drops == 3
    db = sqlite3.connect(str(state / "usage.sqlite"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    db.close()


def test_history_survives_a_new_domid(state):
    with UsageStore() as st:
        st.add_samples(T0, "b", 0.0, [reading(key("web"), 0, 0, "5/20")])
        st.add_samples(T0 + 300, "b", 300.0, [reading(key("web"), 0, 375_000, "5/20")])
        # rebooted: domid 6, a new ifindex, counters from 0
        st.add_samples(T0 + 600, "b", 600.0, [reading(key("web"), 0, 750_000, "6/33")])
        samples = st.samples(T0, T0 + 600)
        assert st.db.execute("SELECT COUNT(*) FROM series").fetchone()[0] == 1
    rep = reportmod.build(samples, T0, T0 + 600, T0 + 600)
    (g, stats, _r, _share), = rep.guests
    assert g == ("web", 0)
    assert stats.outbound.bytes == 375_000 + 750_000   # the restart counts its new value
    assert stats.slots == 2


def test_schema_from_the_future_is_refused(state):
    with UsageStore() as st:
        st.db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(EnvironmentProblem, match="schema version 99"):
        UsageStore()


def test_retention_deletes_old_samples(state):
    with UsageStore() as st:
        for day in range(5):
            st.add_samples(T0 + day * 86400, "b", None, [reading(key("web"), day, day)])
        assert st.purge(T0 + 2 * 86400) == 2
        assert st.count_samples() == 3


def test_record_lock_is_short_and_exclusive(state):
    os.makedirs(state)
    with record_lock():
        result = []

        def other():
            try:
                with record_lock(timeout_s=0.2):
                    result.append("got it")
            except EnvironmentProblem as err:
                result.append(str(err))

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert "another vif-qos record holds" in result[0]


# --- report ---------------------------------------------------------------------

def _csv(tmp_path, rows, name="s.csv"):
    path = tmp_path / name
    path.write_text("time,domain,devid,in_bytes,out_bytes\n" +
                    "".join(",".join(str(c) for c in r) + "\n" for r in rows))
    return str(path)


def _month_rows(guests, slots):
    """guests: name -> function(slot index) -> out bits/s; cumulative counters."""
    rows, out = [], {g: 0 for g in guests}
    for k in range(slots + 1):
        for g, f in guests.items():
            rows.append((T0 + k * 300, g, 0, 0, out[g]))
            if k < slots:
                out[g] += int(f(k) * 300 / 8)
    return rows


def test_report_json_schema_and_values(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIF_QOS_CONFIG", str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("[billing]\ntarget = 10mbit\n")
    # 20 slots; "a" bursts to 40 Mbit/s in one slot (free: the top 1 of 20), "b" flat 2
    rows = _month_rows({"a": lambda k: 40 * MBIT if k == 7 else 4 * MBIT,
                        "b": lambda k: 2 * MBIT}, 20)
    path = _csv(tmp_path, rows)
    assert main(["report", "--samples", path, "--from", str(T0), "--to", str(T0 + 6000),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"from", "to", "guests", "total"}
    assert data["from"] == "2026-01-01T00:00:00Z"
    a, bg = data["guests"]
    assert (a["domain"], a["devid"]) == ("a", 0)
    assert set(a["in"]) == {"bytes", "avg_bits_per_s", "p95_bits_per_s"}
    assert a["out"]["p95_bits_per_s"] == 4 * MBIT          # position 19 of 20
    assert a["out"]["bytes"] == 19 * 4 * MBIT * 300 // 8 + 40 * MBIT * 300 // 8
    assert a["out"]["avg_bits_per_s"] == pytest.approx((19 * 4 + 40) * MBIT / 20)
    assert a["p95_bits_per_s"] == 4 * MBIT
    assert data["total"]["out"]["p95_bits_per_s"] == 6 * MBIT
    assert a["share_of_total_p95"] + bg["share_of_total_p95"] == pytest.approx(1.0, abs=1e-4)
    assert bg["share_of_total_p95"] == pytest.approx(2 / 6, abs=1e-4)
    assert a["coverage"]["ratio"] == 1.0


def test_report_text_csv_domain_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIF_QOS_CONFIG", str(tmp_path / "p.conf"))
    (tmp_path / "p.conf").write_text("[billing]\ntarget = 5mbit\n")
    rows = _month_rows({"a": lambda k: 8 * MBIT, "b": lambda k: 1 * MBIT}, 24)
    rows = [r for r in rows if not (r[1] == "a" and 10 <= (r[0] - T0) // 300 <= 14)]
    path = _csv(tmp_path, rows)
    png = tmp_path / "u.png"
    assert main(["report", "--samples", path, "--from", "2026-01-01", "--to",
                 "2026-01-01T02:00", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "TOTAL" in text and "ABOVE" in text and "gaps" not in text.split("TOTAL")[0][:0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    assert (width, height) == (990, 405)
    assert main(["report", "--samples", path, "--from", str(T0), "--to", str(T0 + 7200),
                 "--csv", "--domain", "b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("domain,devid,in_bytes") and lines[1].startswith("b,0,")
    assert lines[2].startswith("TOTAL,") and len(lines) == 3
    # a's gap (6 slots without a rate) shows as coverage below 1, never interpolated
    assert main(["report", "--samples", path, "--from", str(T0), "--to", str(T0 + 7200),
                 "--json", "--domain", "a"]) == 0
    a = json.loads(capsys.readouterr().out)["guests"][0]
    assert a["coverage"]["slots"] == 18 and len(a["coverage"]["gaps"]) == 1
    assert a["out"]["p95_bits_per_s"] == 8 * MBIT


@pytest.mark.parametrize("content, message", [
    ("t,domain,devid,in_bytes,out_bytes\n", "header"),
    ("time,domain,devid,in_bytes,out_bytes\n1,a,0,x,3\n", "in_bytes"),
    ("time,domain,devid,in_bytes,out_bytes\nnow,a,0,1,3\n", "time"),
])
def test_report_samples_errors_are_one_line_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["report", "--samples", str(path), "--period", "2026-01"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "bad.csv" in err


def test_report_argument_errors(capsys):
    assert main(["report", "--period", "2026-1"]) == 2
    assert "--period" in capsys.readouterr().err
    assert main(["report", "--from", "2026-02-30", "--to", "2026-03-01"]) == 2
    assert main(["report", "--from", "2026-03-01", "--to", "2026-02-01"]) == 2


def test_report_unknown_domain_is_bad_input(tmp_path, capsys):
    path = _csv(tmp_path, _month_rows({"a": lambda k: MBIT}, 3))
    assert main(["report", "--samples", path, "--from", str(T0), "--to", str(T0 + 900),
                 "--domain", "nosuch"]) == 2
    assert "'nosuch'" in capsys.readouterr().err


# --- the auto-overage decision --------------------------------------------------

SETTINGS = OverageSettings(target_bits_per_s=10 * MBIT, pool="overage",
                           pool_ceil_bits_per_s=2 * MBIT, cooldown_s=3600)
NOW = T0 + 10 * 86400
END = T0 + 31 * 86400


def load(name, rates, in_pool=False, since=None):
    slots = range(NOW - 300 * len(rates), NOW, 300)
    return GuestLoad(name, tuple(zip(slots, rates)), in_pool, since)


def test_no_move_under_target():
    guests = [load(f"g{i}:0", [0.4 * MBIT] * 3) for i in range(20)]
    assert decide(NOW, END, [8 * MBIT] * 2880, guests, SETTINGS) == []


def test_moves_the_guests_furthest_above_fair_share_until_under_target():
    # 17 light guests at 0.3 Mbit/s, three heavy ones at 6, 4 and 1.2; fair share 0.5
    guests = [load(f"light{i}:0", [0.3 * MBIT]) for i in range(17)]
    guests += [load("heavy1:0", [6 * MBIT]), load("heavy2:0", [4 * MBIT]),
               load("mid:0", [1.2 * MBIT])]
    # so far the month was fine (5 Mbit/s); projected with the rest at 16.3 Mbit/s: over
    moves = decide(NOW, END, [5 * MBIT] * 2880, guests, SETTINGS)
    assert [(m.action, m.target) for m in moves] == [("assign", "heavy1:0"),
                                                     ("assign", "heavy2:0")]
    # after both: 17*0.3 + 1.2 + min(10, 2) = 8.3 Mbit/s <= 10: "mid" stays out
    assert all(m.pool == "overage" and m.for_s == END - NOW for m in moves)
    assert "projected 95th" in moves[0].reason and "fair share 0.50" in moves[0].reason


def test_let_out_after_cooldown_of_low_rate():
    base = [load(f"light{i}:0", [0.3 * MBIT] * 13) for i in range(19)]
    quiet = load("heavy1:0", [0.1 * MBIT] * 13, in_pool=True, since=NOW - 7200)
    moves = decide(NOW, END, [5 * MBIT] * 2880, base + [quiet], SETTINGS)
    assert [(m.action, m.target) for m in moves] == [("unset", "heavy1:0")]


@pytest.mark.parametrize("rates, since", [
    ([0.1 * MBIT] * 12 + [0.9 * MBIT], NOW - 7200),   # one busy slot in the last hour
    ([0.1 * MBIT] * 13, NOW - 1800),                  # in the pool for less than cooldown
    ([2 * MBIT] * 13, NOW - 7200),                    # pressing on the pool's ceil
])
def test_stays_in_the_pool(rates, since):
    base = [load(f"light{i}:0", [0.3 * MBIT] * 13) for i in range(19)]
    g = load("heavy1:0", rates, in_pool=True, since=since)
    assert decide(NOW, END, [5 * MBIT] * 2880, base + [g], SETTINGS) == []


def test_pool_membership_from_recorded_moves():
    moves = [(1, "assign", "a:0"), (2, "assign", "b:0"), (3, "unset", "a:0"),
             (4, "assign", "b:0")]
    assert pool_membership(moves) == {"b:0": 2}


def test_act_records_moves_through_the_adapter(state, tmp_path, monkeypatch):
    from vif_qos.config.policy import check_policy_text
    from vif_qos.usage import overage

    policy, problems = check_policy_text(
        "[pools]\n[[overage]]\nrate = 2mbit\n[billing]\ntarget = 10mbit\n"
        "auto_overage = yes\n", "p.conf")
    assert problems == []
    calls = []
    with UsageStore() as st:
        counters = {}
        for k in range(13):
            rs = []
            for g, rate in [(f"light{i}", 0.3 * MBIT) for i in range(17)] + \
                    [("heavy1", 6 * MBIT), ("heavy2", 4 * MBIT), ("mid", 1.2 * MBIT)]:
                counters[g] = counters.get(g, 0) + (int(rate * 300 / 8) if k else 0)
                rs.append(reading(key(g), 0, counters[g]))
            st.add_samples(T0 + k * 300, "b", k * 300.0, rs)
        now = T0 + 12 * 300 + 1
        assert [d.target for d in overage.plan_moves(st, policy, now)] == ["heavy1:0",
                                                                            "heavy2:0"]
        moves = overage.act(st, policy, now, action=lambda d: calls.append(d) or "done")
        assert [m.target for m in moves] == ["heavy1:0", "heavy2:0"]
        assert [m.outcome for m in st.moves()] == ["done", "done"]
        # the adapter calls what 'vif-qos assign heavy1:0 overage --for Ns --reason
        # auto-overage' calls, with the policy's own file
        assert overrides_called(monkeypatch, calls[0], "p.conf") == [
            ("set", "heavy1:0", "pool=overage",
             {"reason": "auto-overage", "for_s": calls[0].for_s, "conf": "p.conf"})]
        # next run: both are in the pool now; nothing more to do at the same rates
        assert overage.plan_moves(st, policy, now + 1) == []


def overrides_called(monkeypatch, decision, conf, status=0):
    """Run the adapter for ``decision`` with the override API replaced by a
    recorder; the calls it made."""
    from vif_qos.kernel.reconcile import Result, VifResult
    from vif_qos.usage import overage
    from vif_qos.xen import reload

    calls = []
    vifs = [VifResult("vif3.0", error="kernel said no", status=status)] if status else []

    def recorder(kind):
        def call(target, arg, **kwargs):
            calls.append((kind, target, arg, kwargs))
            return reload.Report(Result(vifs), True)
        return call

    monkeypatch.setattr(reload, "set_override", recorder("set"))
    monkeypatch.setattr(reload, "unset_override", recorder("unset"))
    outcome = overage.run_override(decision, conf=conf)
    assert outcome == ("done" if not status else
                       f"failed (exit {status}): vif-qos {decision.action}: "
                       "vif3.0: kernel said no")
    return calls


def test_override_adapter_calls_the_override_api(monkeypatch):
    """auto-overage moves a guest in and out through xen/reload.py's set_override /
    unset_override (what 'vif-qos assign' and 'unset' call), not a subprocess; a
    refused kernel change is a failed move naming the vif and the reason."""
    from vif_qos.core.overage import Decision

    out = Decision("unset", "heavy1:0", "overage", 0, "auto-overage: low")
    assert overrides_called(monkeypatch, out, None) == [
        ("unset", "heavy1:0", ["pool"], {"conf": None})]
    into = Decision("assign", "heavy1:0", "overage", 3600, "auto-overage: high")
    assert overrides_called(monkeypatch, into, "/etc/p.conf", status=1)[0][:3] == (
        "set", "heavy1:0", "pool=overage")


def test_metrics_text(tmp_path):
    from vif_qos.usage.metrics import write_textfile
    from vif_qos.usage.record import GuestVif, Snapshot

    snap = Snapshot(T0, "b", 1.0)
    snap.guests.append(GuestVif(reading(key("web", 2), 2 ** 64 - 1, 10), "vif3.2", 3,
                                in_rate_bits_per_s=8 * MBIT, out_rate_bits_per_s=4 * MBIT,
                                out_ceil_bits_per_s=16 * MBIT))
    snap.uplinks.append(Reading(SeriesKey("uplink", "", "", -1, "peth0"), "0/2", "peth0",
                                5, 6, 1, 1))
    path = write_textfile(snap, str(tmp_path), 10 * MBIT)
    from prometheus_client.parser import text_string_to_metric_families

    text = open(path).read()
    values = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            values[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    labels = (("bridge", "xenbr0"), ("devid", "2"), ("domain", "web"), ("vif", "vif3.2"))
    assert values[("vif_qos_guest_in_bytes_total", labels)] == float(2 ** 64 - 1)
    assert values[("vif_qos_guest_out_dropped_packets_total", labels)] == 3
    assert values[("vif_qos_guest_out_overlimits_total", labels)] == 2
    assert values[("vif_qos_guest_in_rate_bytes_per_second", labels)] == 1e6
    assert values[("vif_qos_guest_out_ceil_bytes_per_second", labels)] == 2e6
    assert values[("vif_qos_uplink_out_bytes_total", (("uplink", "peth0"),))] == 6
    assert values[("vif_qos_billing_target_bytes_per_second", ())] == 1.25e6
    assert "# TYPE vif_qos_guest_out_bytes_total counter" in text


def test_move_dataclass_fields():
    m = Move(1.0, "assign", "a:0", "overage", 60, "why", "done")
    assert m.target == "a:0"


def test_override_adapter_reports_a_failing_command(tmp_path, monkeypatch):
    """The adapter calls the override API; when it fails (here xenstore cannot be
    read, or the guest does not exist) the outcome names why, in one line."""
    from vif_qos.core.overage import Decision
    from vif_qos.usage.overage import run_override

    monkeypatch.setenv("VIF_QOS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VIF_QOS_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("VIF_QOS_CONFIG", str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("")
    outcome = run_override(Decision("assign", "no-such-guest:0", "overage", 600,
                                    "auto-overage: test"))
    assert outcome.startswith("failed (exit ") and len(outcome.splitlines()) == 1
    assert not (tmp_path / "state" / "overrides.conf").exists()


def test_auto_overage_projects_from_the_complete_slots_report_ranks(state):
    """The projection's "so far" is the period's complete slots (what report's 95th
    ranks); the slot still running counts among the slots left, at the current total.
    A burst inside the running slot must not enter "so far" as if it were a whole
    slot's average."""
    from vif_qos.core.billing import expected_slots
    from vif_qos.usage.overage import loads

    period = (T0, T0 + 31 * 86400)
    out = 0
    with UsageStore() as st:
        for i in range(5):          # four complete slots at 1 Mbit/s
            st.add_samples(T0 + 300 * i, "b", 300.0 * i, [reading(key("web"), 0, out)])
            out += 37_500_000
        out -= 37_500_000
        # 60 s into the fifth slot: a burst at 50 Mbit/s
        st.add_samples(T0 + 1260, "b", 1260.0, [reading(key("web"), 0, out + 375_000_000)])
        now = T0 + 1260
        so_far, guests = loads(st, now, period, 3600)
    assert len(so_far) == len(expected_slots(T0, now)) == 4
    assert max(so_far) == pytest.approx(1 * MBIT, rel=1e-6)


def test_auto_overage_counts_every_slot_of_the_period_once():
    """Complete slots so far plus slots left (the running one included) are the
    period's slots: mid-slot, the running slot is projected, not dropped."""
    from vif_qos.core import overage as ov
    from vif_qos.core.billing import expected_slots

    seen = {}
    real = ov.project_p95

    def spy(so_far, current, left):
        seen["n"] = len(so_far) + left
        return real(so_far, current, left)

    now = NOW + 120                          # two minutes into a slot
    so_far = [5 * MBIT] * len(expected_slots(T0, now))
    guests = [load("heavy1:0", [20 * MBIT])]
    try:
        ov.project_p95 = spy
        ov.decide(now, END, so_far, guests, SETTINGS)
    finally:
        ov.project_p95 = real
    assert seen["n"] == len(expected_slots(T0, END))
