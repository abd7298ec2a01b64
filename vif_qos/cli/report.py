"""``vif-qos report [--period YYYY-MM | --from T --to T] [--domain NAME] [--json | --csv]
[--plot FILE.png] [--samples FILE.csv] [--preview]``: usage and the 95th percentile per
guest, per uplink and for the total (see :mod:`vif_qos.usage.report` and README.rst,
"Usage and the 95th percentile"). Without a period: the current billing period
(``[billing] day``) up to now. ``--samples`` reads cumulative counters from a CSV
(``time,domain,devid,in_bytes,out_bytes``) instead of the database; without a period
the report then covers the samples' own span (from the start of the first sample's
5-minute slot to the last sample), and a period that holds none of them is refused
with where the samples lie and which ``--period`` holds them. ``--preview`` adds what
auto-overage would do now, without doing it.

Exit 0; 1 when the database cannot be read; 2 for bad input (also a samples file
without samples, or none in the period given).
"""

from __future__ import annotations

import calendar
import json
import re
import time
from typing import Optional, Tuple

from vif_qos.cli import add_config_option
from vif_qos.core import billing
from vif_qos.errors import InputError
from vif_qos.usage import report as reportmod


def configure(parser, name) -> None:
    parser.add_argument("--period", metavar="YYYY-MM",
                        help="a billing period (starting on [billing] day, UTC)")
    parser.add_argument("--from", dest="from_", metavar="T",
                        help="start: YYYY-MM-DD[THH:MM[:SS]] (UTC) or unix seconds")
    parser.add_argument("--to", metavar="T", help="end (exclusive), as --from")
    parser.add_argument("--domain", metavar="NAME", help="only this guest in the guest list")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--csv", action="store_true", help="print CSV, one row per guest")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw the total, its 95th, the target and the top guests")
    parser.add_argument("--samples", metavar="FILE.csv",
                        help="cumulative counters time,domain,devid,in_bytes,out_bytes "
                             "(unix seconds) instead of the database")
    parser.add_argument("--preview", "--dry-run", action="store_true",
                        help="also show the moves auto-overage would make now")
    add_config_option(parser, "[billing]")


_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})"
                   r"(?::([0-9]{2}))?)?Z?")


def parse_time_arg(text: str, source: str) -> float:
    """``2026-12-01``, ``2026-12-01T13:05[:00]`` (UTC) or unix seconds."""
    text = text.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    m = _TIME.fullmatch(text)
    if not m:
        raise InputError("not a time (YYYY-MM-DD[THH:MM[:SS]] UTC, or unix seconds)",
                         token=text, source=source)
    parts = [int(p) if p else 0 for p in m.groups()]
    try:
        time.strptime("%04d-%02d-%02d" % tuple(parts[:3]), "%Y-%m-%d")
        if parts[3] > 23 or parts[4] > 59 or parts[5] > 59:
            raise ValueError
    except ValueError:
        raise InputError("not a valid date/time", token=text, source=source) from None
    return float(calendar.timegm(tuple(parts) + (0, 0, 0)))


def explicit_period(args, day: int) -> Optional[Tuple[float, float]]:
    """``--period`` or ``--from``/``--to`` as (from, to) unix seconds; None when
    neither is given. :raises InputError: both, one of --from/--to, a bad value."""
    if args.period and (args.from_ or args.to):
        raise InputError("give --period or --from/--to, not both", token=args.period,
                         source="--period")
    if args.period:
        return billing.parse_period(args.period, day)
    if not (args.from_ or args.to):
        return None
    if not (args.from_ and args.to):
        raise InputError("--from and --to go together", token=args.from_ or args.to,
                         source="--from" if args.from_ else "--to")
    from_s = parse_time_arg(args.from_, "--from")
    to_s = parse_time_arg(args.to, "--to")
    if to_s <= from_s:
        raise InputError("--to is not after --from", token=args.to, source="--to")
    return from_s, to_s


def samples_period(samples, period: Optional[Tuple[float, float]], args, day: int
                   ) -> Tuple[float, float]:
    """The period of a ``--samples`` report: ``period`` when given and holding
    samples, else the samples' own span.

    :raises InputError: no samples at all, or none in ``period`` (the message says
        where they lie and which ``--period`` holds them).
    """
    if not samples:
        raise InputError("the samples file holds no samples", token=args.samples,
                         source="--samples")
    if period is None:
        return reportmod.samples_span(samples)
    if not reportmod.holds_samples(samples, *period):
        token, source = ((args.period, "--period") if args.period else
                         (f"{args.from_} .. {args.to}", "--from/--to"))
        raise InputError(f"no sample of {args.samples} lies in this period: "
                         f"{reportmod.samples_hint(samples, day)}", token=token,
                         source=source)
    return period


def _from_database(from_s: float, to_s: float, now: float, policy, preview: bool):
    """(samples, moves, preview decisions) of the period from the usage database."""
    from vif_qos.usage.store import UsageStore

    decisions = []
    with UsageStore(readonly=True) as store:
        samples = store.samples(from_s - 2 * billing.MAX_INTERVAL_S,
                                to_s + billing.MAX_INTERVAL_S)
        moves = store.moves(from_s, to_s)
        if preview:
            from vif_qos.usage import overage
            decisions = overage.plan_moves(store, policy, now)
    return samples, moves, decisions


def _plot(rep, path: str) -> None:
    from vif_qos.usage.plot import plot
    try:
        plot(rep, path)
    except OSError as err:
        raise InputError(f"cannot write the plot: {err.strerror}", token=path,
                         source="--plot") from None


def _print(rep, args, policy, preview) -> None:
    if args.json:
        data = reportmod.to_json(rep)
        if args.preview:
            data["preview"] = [vars(d) for d in preview]
        print(json.dumps(data, indent=2))
    elif args.csv:
        print(reportmod.to_csv(rep), end="")
    else:
        print(reportmod.to_text(rep))
        if args.preview:
            if not policy.billing.auto_overage:
                print("preview: [billing] auto_overage is off; what it would do:")
            for d in preview:
                print(f"preview: {d.action} {d.target}: {d.reason}")
            if not preview:
                print("preview: no move")


def run(args) -> int:
    from vif_qos.config.policy import load_policy

    policy = load_policy(args.config)
    now = time.time()
    period = explicit_period(args, policy.billing.day)
    moves, preview = [], []
    if args.samples:
        samples = reportmod.read_samples_csv(args.samples)
        from_s, to_s = samples_period(samples, period, args, policy.billing.day)
        now = max([s.wall_s for s in samples] + [from_s])
    else:
        from_s, to_s = period or billing.period_containing(now, policy.billing.day)
        samples, moves, preview = _from_database(from_s, to_s, now, policy, args.preview)
    rep = reportmod.build(samples, from_s, to_s, now, domain=args.domain, moves=moves,
                          target_bits_per_s=policy.billing.target_bits_per_s)
    if args.domain is not None and not rep.guests:
        raise InputError("no usage recorded for this domain in the period", token=args.domain,
                         source="--domain")
    if args.plot:
        _plot(rep, args.plot)
    _print(rep, args, policy, preview)
    return 0
