"""A simulated billing month with and without auto-overage, and what recording costs.

Figures, not assertions (tests/test_overage_month.py asserts the outcome)::

    .venv/bin/python benchmarks/bench_billing.py [--days 31] [--plot DIR]

1. The month (vif_qos/sim/month.py: 20 guests, 3 heavy, target 10 Mbit/s, an overage
   pool with a 2 Mbit/s ceil, cooldown 1 h; an injected clock in 5-minute steps): the
   total's 95th, the slots above target, the moves, each heavy guest's 95th.
2. The cost of the usage database for that month (20 guests, one sample each per
   5 minutes, in a temporary $VIF_QOS_STATE_DIR): time per ``record`` insert, the
   database size, ``report`` over the month, and the auto-overage read a ``record``
   run makes at the month's end; beside them the same inserts without auto-overage.
   With ``--plot DIR`` also writes the report plot of both months.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vif_qos.config.policy import check_policy_text  # noqa: E402
from vif_qos.core import billing  # noqa: E402
from vif_qos.sim.month import MBIT, T0, samples_csv, simulate_month  # noqa: E402
from vif_qos.usage import overage, report  # noqa: E402
from vif_qos.usage.store import Reading, SeriesKey, UsageStore  # noqa: E402


def month_table(days: int):
    rows = []
    results = {}
    for auto in (False, True):
        t = time.perf_counter()
        r = simulate_month(auto, days=days)
        results[auto] = r
        heavy = {n: v for n, v in r.guest_p95_bits_per_s.items() if n.startswith("heavy")}
        rows.append((f"auto_overage = {'yes' if auto else 'no'}",
                     f"{r.total_p95_bits_per_s / MBIT:.2f}", "10.00",
                     f"{r.slots_above_target} / {r.slots} "
                     f"({100 * r.slots_above_target / r.slots:.1f} %)",
                     str(len(r.moves)),
                     " ".join(f"{v / MBIT:.1f}" for _n, v in sorted(heavy.items())),
                     f"{r.delivered_bytes / 1e9:.1f}",
                     f"{time.perf_counter() - t:.1f}"))
    header = ("month", "total 95th Mbit/s", "target", "slots above target", "moves",
              "heavy1-3 95th", "GB delivered", "sim s")
    print(f"Simulated {days}-day month, 20 guests (3 heavy), nearest-rank 95th of "
          f"5-minute totals")
    _table(header, rows)
    return results


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print()


def store_cost(result, days: int):
    policy, problems = check_policy_text("[pools]\n[[overage]]\nrate = 2mbit\n[billing]\n"
                                         "target = 10mbit\nauto_overage = yes\n", "bench")
    assert not problems
    names = sorted(result.rates)
    rows = []
    for with_overage in (False, True):
        with tempfile.TemporaryDirectory(prefix="vif-qos-bench-") as tmp:
            path = os.path.join(tmp, "usage.sqlite")
            counters = {n: 0 for n in names}
            times, read_times = [], []
            with UsageStore(path) as store:
                for k in range(result.slots + 1):
                    readings = [Reading(SeriesKey("vif", n, "", 0, "vif"), "1/1", n, 0,
                                        counters[n], 0, counters[n] // 1000)
                                for n in names]
                    t = time.perf_counter()
                    store.add_samples(T0 + k * billing.SLOT_S, "boot", k * 300.0, readings)
                    times.append(time.perf_counter() - t)
                    # the auto-overage read of a record run, once a simulated day
                    if with_overage and k and k % 288 == 0:
                        t = time.perf_counter()
                        overage.plan_moves(store, policy, T0 + k * billing.SLOT_S + 1)
                        read_times.append((k, time.perf_counter() - t))
                    if k < result.slots:
                        for n in names:
                            counters[n] += int(result.rates[n][k] * billing.SLOT_S / 8)
                t = time.perf_counter()
                samples = store.samples(T0 - 1500, T0 + days * 86400 + 750)
                rep = report.build(samples, T0, T0 + days * 86400, T0 + days * 86400)
                report_s = time.perf_counter() - t
            size = os.path.getsize(path) + (os.path.getsize(path + "-wal")
                                            if os.path.exists(path + "-wal") else 0)
        rows.append(("record + auto-overage" if with_overage else "record only (reference)",
                     f"{1e3 * statistics.median(times):.2f}",
                     f"{1e3 * (max(times)):.1f}",
                     f"{size / 1e6:.1f}",
                     f"{report_s:.2f}",
                     f"{read_times[-1][1]:.2f}" if read_times else "-"))
        total_p95 = rep.total.p95_bits_per_s
    header = ("run", "insert median ms", "insert max ms", "db MB", "report s",
              "auto-overage read s (month end)")
    print(f"Usage database, {days} days x 20 guests x 1 sample / 5 min "
          f"({(result.slots + 1) * len(names)} samples); report's total 95th "
          f"{total_p95 / MBIT:.2f} Mbit/s")
    _table(header, rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--plot", metavar="DIR", help="write month-{no,yes}.png there")
    args = ap.parse_args()
    results = month_table(args.days)
    store_cost(results[False], args.days)
    if args.plot:
        from vif_qos.usage.plot import plot
        for auto, r in results.items():
            with tempfile.NamedTemporaryFile("w", suffix=".csv") as fh:
                fh.write(samples_csv(r))
                fh.flush()
                samples = report.read_samples_csv(fh.name)
            rep = report.build(samples, T0, T0 + args.days * 86400, T0 + args.days * 86400,
                               target_bits_per_s=10 * MBIT)
            out = os.path.join(args.plot, f"month-{'yes' if auto else 'no'}.png")
            plot(rep, out, title=f"Simulated month, auto_overage = {'yes' if auto else 'no'}"
                                 f" (out by guest, UTC)")
            print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
