"""``vif-qos report``: per guest, per uplink and for the total over a period: bytes,
average rates, the 95th of in, of out and of max(in, out), coverage and gaps, each
guest's share of the total's 95th, and the auto-overage moves. The arithmetic is
:mod:`vif_qos.core.billing`; this module groups, renders and reads CSV.

``total`` sums all guests per 5-minute slot before its percentiles are taken (also
with ``--domain``, which only narrows the guest list). A guest's ``share_of_total_p95``
is its rate, in the direction that set the total's max(in, out), in the slot that is
the total's 95th, divided by the total's 95th: the guests' shares add up to 1. That
slot is the one the 95th was taken from (``Stats.p95_slot``): one of the complete
slots inside the period, up to now.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from typing import Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

from vif_qos.core import billing
from vif_qos.core.billing import Sample, SlotRates, Stats
from vif_qos.errors import InputError
from vif_qos.usage.store import Move, SeriesKey

CSV_HEADER = ["time", "domain", "devid", "in_bytes", "out_bytes"]


@dataclass
class Report:
    """What :func:`build` computed; :func:`to_json` gives the ``--json`` object."""

    from_s: float
    to_s: float
    guests: List[Tuple[Tuple[str, int], Stats, SlotRates, Optional[float]]]
    total: Stats
    total_rates: SlotRates
    uplinks: List[Tuple[str, Stats, SlotRates]]
    moves: List[Move]
    target_bits_per_s: Optional[int] = None
    slot_s: int = billing.SLOT_S


def iso(time_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_s))


def _in_period(iv: billing.Interval, from_s: float, to_s: float) -> bool:
    """An interval counts in the period that holds its midpoint."""
    return from_s <= (iv.start_s + iv.end_s) / 2 < to_s


def _group(ivals: Iterable[billing.Interval], from_s: float, to_s: float, slot_s: int):
    """Per series: (slot rates, in bytes, out bytes) of intervals with their
    midpoint in the period."""
    kept = [iv for iv in ivals if _in_period(iv, from_s, to_s)]
    rates = billing.series_slot_rates(kept, slot_s)
    sums: Dict[Hashable, List[int]] = {}
    for iv in kept:
        cell = sums.setdefault(iv.series, [0, 0])
        cell[0] += iv.in_bytes
        cell[1] += iv.out_bytes
    return rates, sums


def build(samples: Sequence[Sample], from_s: float, to_s: float, now_s: float,
          domain: Optional[str] = None, moves: Sequence[Move] = (),
          target_bits_per_s: Optional[int] = None, slot_s: int = billing.SLOT_S) -> Report:
    """The report over ``from_s``..``to_s`` (coverage counted up to ``now_s``).

    ``samples``: in recording order; ``series`` a :class:`SeriesKey` (or any object
    with ``kind``, ``guest`` and ``port``). ``slot_s``: the billing slot (5 minutes;
    ``vif-qos simulate`` uses seconds, its run being short); intervals longer than
    2.5 slots are gaps.
    """
    end = min(to_s, now_s)
    rates, sums = _group(billing.intervals(samples, 2.5 * slot_s), from_s, to_s, slot_s)
    guest_parts: Dict[Tuple[str, int], List[Hashable]] = {}
    uplink_parts: Dict[str, List[Hashable]] = {}
    for series in set(rates) | set(sums):
        if series.kind == "uplink":
            uplink_parts.setdefault(series.port, []).append(series)
        else:
            guest_parts.setdefault(series.guest, []).append(series)

    def summarise(parts) -> Tuple[Stats, SlotRates]:
        r = billing.sum_slot_rates(rates.get(p, {}) for p in parts)
        b_in = sum(sums.get(p, [0, 0])[0] for p in parts)
        b_out = sum(sums.get(p, [0, 0])[1] for p in parts)
        return billing.stats(r, b_in, b_out, from_s, end, slot_s), r

    per_guest = {g: summarise(parts) for g, parts in guest_parts.items()}
    total_rates = billing.sum_slot_rates(r for _s, r in per_guest.values())
    total = billing.stats(total_rates, sum(s.inbound.bytes for s, _r in per_guest.values()),
                          sum(s.outbound.bytes for s, _r in per_guest.values()), from_s, end,
                          slot_s)
    guests = [(g, st, r, share_of_total_p95(r, total, total_rates))
              for g, (st, r) in sorted(per_guest.items())
              if domain is None or g[0] == domain]
    uplinks = [(name,) + summarise(parts) for name, parts in sorted(uplink_parts.items())]
    return Report(from_s, to_s, guests, total, total_rates, uplinks, list(moves),
                  target_bits_per_s, slot_s)


def share_of_total_p95(rates: SlotRates, total: Stats, total_rates: SlotRates
                       ) -> Optional[float]:
    """A guest's part of the total's 95th: its rate in the slot of the total's 95th
    (``total.p95_slot``, the slot :func:`vif_qos.core.billing.stats` took the 95th
    from), in the direction that set the total's max(in, out) there, divided by
    that 95th; 0..1, the guests' shares adding up to 1. None when the total has no
    positive 95th."""
    slot = total.p95_slot
    if slot is None or not total.p95_bits_per_s:
        return None
    t_in, t_out = total_rates[slot]
    g_in, g_out = rates.get(slot, (0.0, 0.0))
    return (g_in if t_in >= t_out else g_out) / total.p95_bits_per_s


def _num(value: Optional[float]):
    if value is None:
        return None
    return round(value, 3)


def _direction(d: billing.DirectionStats) -> dict:
    return {"bytes": int(d.bytes), "avg_bits_per_s": _num(d.avg_bits_per_s),
            "p95_bits_per_s": _num(d.p95_bits_per_s)}


def _coverage(st: Stats) -> dict:
    return {"slots": st.slots, "slots_expected": st.slots_expected,
            "ratio": round(st.coverage, 4),
            "gaps": [{"from": iso(a), "to": iso(b)} for a, b in st.gaps]}


def to_json(rep: Report) -> dict:
    """The ``--json`` object: ``from``, ``to``, ``guests``, ``total`` as README.rst
    gives them; added: per guest ``coverage`` and ``share_of_total_p95``, the total's
    ``coverage``, ``uplinks`` and ``moves``."""
    return {
        "from": iso(rep.from_s), "to": iso(rep.to_s),
        "guests": [{"domain": g[0], "devid": g[1], "in": _direction(st.inbound),
                    "out": _direction(st.outbound), "p95_bits_per_s": _num(st.p95_bits_per_s),
                    "share_of_total_p95": None if share is None else round(share, 4),
                    "coverage": _coverage(st)}
                   for g, st, _r, share in rep.guests],
        "total": {"in": _direction(rep.total.inbound), "out": _direction(rep.total.outbound),
                  "p95_bits_per_s": _num(rep.total.p95_bits_per_s),
                  "coverage": _coverage(rep.total)},
        "uplinks": [{"uplink": name, "in": _direction(st.inbound),
                     "out": _direction(st.outbound), "p95_bits_per_s": _num(st.p95_bits_per_s),
                     "coverage": _coverage(st)} for name, st, _r in rep.uplinks],
        "moves": [{"time": iso(m.wall_s), "action": m.action, "target": m.target,
                   "pool": m.pool, "for_s": m.for_s, "reason": m.reason, "outcome": m.outcome}
                  for m in rep.moves],
    }


def _mbit(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1e6:.3f}"


def _size(value: int) -> str:
    for factor, unit in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= factor:
            return f"{value / factor:.2f} {unit}"
    return f"{value} B"


def to_text(rep: Report) -> str:
    """The human form (rates in Mbit/s)."""
    slot = "5-minute" if rep.slot_s == billing.SLOT_S else f"{rep.slot_s}-second"
    lines = [f"usage {iso(rep.from_s)} .. {iso(rep.to_s)}  (rates Mbit/s; 95th = nearest "
             f"rank of {slot} averages; MAX95 = 95th of max(in, out))"]
    header = ("GUEST", "DEVID", "IN", "OUT", "IN AVG", "IN 95th", "OUT AVG", "OUT 95th",
              "MAX95", "SHARE", "COVERAGE")
    rows = [header]

    def row(name, devid, st: Stats, share):
        return (name, devid, _size(st.inbound.bytes), _size(st.outbound.bytes),
                _mbit(st.inbound.avg_bits_per_s), _mbit(st.inbound.p95_bits_per_s),
                _mbit(st.outbound.avg_bits_per_s), _mbit(st.outbound.p95_bits_per_s),
                _mbit(st.p95_bits_per_s), "-" if share is None else f"{100 * share:.1f}%",
                f"{100 * st.coverage:.1f}%" + (f" ({len(st.gaps)} gaps)" if st.gaps else ""))

    for g, st, _r, share in rep.guests:
        rows.append(row(g[0], str(g[1]), st, share))
    rows.append(row("TOTAL", "", rep.total, None))
    for name, st, _r in rep.uplinks:
        rows.append(row(f"uplink {name}", "", st, None))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if rep.target_bits_per_s:
        p95 = rep.total.p95_bits_per_s or 0
        lines.append(f"target {_mbit(rep.target_bits_per_s)} Mbit/s: total 95th "
                     f"{_mbit(p95)} is {'ABOVE' if p95 > rep.target_bits_per_s else 'within'}")
    if rep.total.gaps:
        longest = max(b - a for a, b in rep.total.gaps)
        span = f"{longest // 60} min" if longest >= 120 else f"{longest} s"
        lines.append(f"gaps: {len(rep.total.gaps)} (longest {span}, first "
                     f"{iso(rep.total.gaps[0][0])}); never interpolated")
    for m in rep.moves:
        lines.append(f"move {iso(m.wall_s)} {m.action} {m.target}"
                     f"{' -> ' + m.pool if m.action == 'assign' and m.pool else ''}: "
                     f"{m.reason} [{m.outcome}]")
    return "\n".join(lines)


def to_csv(rep: Report) -> str:
    """One row per guest, then ``TOTAL`` and the uplinks; rates in bits/s."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["domain", "devid", "in_bytes", "out_bytes", "in_avg_bits_per_s",
                "in_p95_bits_per_s", "out_avg_bits_per_s", "out_p95_bits_per_s",
                "p95_bits_per_s", "share_of_total_p95", "coverage"])

    def fmt(v):
        return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else v)

    def row(name, devid, st: Stats, share):
        w.writerow([name, devid, st.inbound.bytes, st.outbound.bytes,
                    fmt(st.inbound.avg_bits_per_s), fmt(st.inbound.p95_bits_per_s),
                    fmt(st.outbound.avg_bits_per_s), fmt(st.outbound.p95_bits_per_s),
                    fmt(st.p95_bits_per_s), fmt(share), f"{st.coverage:.4f}"])

    for g, st, _r, share in rep.guests:
        row(g[0], g[1], st, share)
    row("TOTAL", "", rep.total, None)
    for name, st, _r in rep.uplinks:
        row(f"uplink:{name}", "", st, None)
    return buf.getvalue()


# -- a samples file's own span ----------------------------------------------------------


def samples_span(samples: Sequence[Sample], slot_s: int = billing.SLOT_S
                 ) -> Tuple[float, float]:
    """The period ``report --samples`` covers without ``--period``/``--from``: from
    the start of the first sample's slot to the last sample (every interval
    between them counts; the slot the first one falls in is whole).

    :raises ValueError: no samples.
    """
    if not samples:
        raise ValueError("no samples")
    return (billing.slot_of(min(s.wall_s for s in samples), slot_s),
            max(s.wall_s for s in samples))


def holds_samples(samples: Sequence[Sample], from_s: float, to_s: float) -> bool:
    """Whether any interval between ``samples`` counts in ``from_s``..``to_s``."""
    return any(_in_period(iv, from_s, to_s) for iv in billing.intervals(samples))


def samples_hint(samples: Sequence[Sample], day: int = 1) -> str:
    """Where ``samples`` lie and which billing period(s) (starting on ``day``) hold
    them, for a period that holds none: ``the samples lie in A .. B (--period
    2026-03 holds them)``."""
    first = min(s.wall_s for s in samples)
    last = max(s.wall_s for s in samples)
    names = [time.strftime("%Y-%m", time.gmtime(billing.period_containing(t, day)[0]))
             for t in (first, last)]
    which = (f"--period {names[0]} holds them" if names[0] == names[1] else
             f"--period {names[0]} to {names[1]} hold them")
    return f"the samples lie in {iso(first)} .. {iso(last)} ({which})"


def read_samples_csv(path: str) -> List[Sample]:
    """``--samples FILE.csv``: header ``time,domain,devid,in_bytes,out_bytes`` (unix
    seconds, cumulative counters), rows in the order they were taken per guest.

    :raises InputError: unreadable file, wrong header, or a bad value (``file:line``).
    """
    try:
        fh = open(path, encoding="utf-8", newline="")
    except OSError as err:
        raise InputError(f"cannot read the samples file: {err.strerror}", token=path,
                         source="--samples") from None
    out: List[Sample] = []
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != CSV_HEADER:
            raise InputError(f"the header must be {','.join(CSV_HEADER)}",
                             token=",".join(header or []), source=f"{path}:1")
        for line, row in enumerate(reader, 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(CSV_HEADER):
                raise InputError(f"{len(row)} fields, want {len(CSV_HEADER)}",
                                 token=",".join(row), source=f"{path}:{line}")
            t, dom, devid, b_in, b_out = (c.strip() for c in row)
            try:
                time_s = float(t)
                if not math.isfinite(time_s):
                    raise ValueError
            except ValueError:
                raise InputError("time: not unix seconds", token=t,
                                 source=f"{path}:{line}") from None
            for name, value in (("devid", devid), ("in_bytes", b_in), ("out_bytes", b_out)):
                if not value.isdigit():
                    raise InputError(f"{name}: not a whole number >= 0", token=value,
                                     source=f"{path}:{line}")
            if not dom:
                raise InputError("domain: empty", token=",".join(row), source=f"{path}:{line}")
            out.append(Sample(series=SeriesKey("vif", dom, "", int(devid), "vif"),
                              wall_s=time_s, in_bytes=int(b_in), out_bytes=int(b_out)))
    return out
