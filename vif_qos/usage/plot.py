"""``report --plot FILE.png`` (matplotlib, Agg backend: no display needed): the total's
5-minute rate (max of in and out) over the period, its 95th, the ``[billing] target``,
and stacked underneath the contributions of the top guests (per slot, their rate in
the direction that is the total's max there, so the stack adds up to the total line),
the rest as "others". The top guests are those with
the highest average rate over the busiest 5 % of slots (the slots at or above the
total's 95th: the ones that set the bill). Each recorded uplink is drawn as a dotted
line (its netdev counters, so also traffic that is not a guest's)."""

from __future__ import annotations

import datetime
from typing import Optional

from vif_qos.errors import EnvironmentProblem
from vif_qos.usage.report import Report

#: Guests drawn on their own; the rest are summed into "others".
TOP_GUESTS = 5


def plot(rep: Report, path: str, title: Optional[str] = None) -> None:
    """Write the PNG (990x405 pixels) to ``path``.

    :raises OSError: the file cannot be written.
    :raises EnvironmentProblem: matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError:
        raise EnvironmentProblem(
            "matplotlib is missing: apt install python3-matplotlib, or pip install "
            "'vif-qos[plot]'", token="--plot", source="report") from None

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=90)
    try:
        _draw_total(ax, rep)
        for name, _st, urates in rep.uplinks:
            us = sorted(urates)
            ax.step([_when(s) for s in us], [max(urates[s]) / 1e6 for s in us], where="post",
                    linestyle=":", color="tab:blue", linewidth=1.2,
                    label=f"uplink {name}, max(in, out)")
        _draw_lines_and_axes(ax, rep, title)
        fig.tight_layout()
        fig.savefig(path, pil_kwargs={"optimize": True})
    finally:
        plt.close(fig)


def _when(slot_s: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(slot_s, datetime.timezone.utc)


def _draw_total(ax, rep: Report) -> None:
    """The total's max(in, out) per slot, and under it the top guests' contributions
    (each in the direction that is the total's max in that slot) and the others."""
    slots = sorted(rep.total_rates)
    if not slots:
        return
    # per slot, the direction burstable billing counts there: max(in, out) of the total
    direction = {s: 0 if rep.total_rates[s][0] >= rep.total_rates[s][1] else 1 for s in slots}
    p95 = rep.total.p95_bits_per_s
    busy = [s for s in slots if p95 is not None and max(rep.total_rates[s]) >= p95] or slots

    def busy_mean(guest) -> float:
        rates = guest[2]
        return sum(rates.get(s, (0.0, 0.0))[direction[s]] for s in busy) / max(1, len(busy))

    top = sorted(rep.guests, key=lambda g: (-busy_mean(g), g[0]))[:TOP_GUESTS]
    times = [_when(s) for s in slots]
    layers, labels = [], []
    for guest in top:
        (name, devid), _st, rates, _share = guest
        layers.append([rates.get(s, (0.0, 0.0))[direction[s]] / 1e6 for s in slots])
        labels.append(f"{name}:{devid} (avg {busy_mean(guest) / 1e6:.2f} in the "
                      f"busiest 5 %)")
    others = [max(rep.total_rates[s]) / 1e6 - sum(layer[i] for layer in layers)
              for i, s in enumerate(slots)]
    if any(v > 1e-9 for v in others):
        layers.append([max(0.0, v) for v in others])
        labels.append("others")
    if layers:
        ax.stackplot(times, layers, labels=labels, alpha=0.55, step="post")
    ax.step(times, [max(rep.total_rates[s]) / 1e6 for s in slots], where="post",
            color="black", linewidth=0.8, label="total, max(in, out)")


def _draw_lines_and_axes(ax, rep: Report, title: Optional[str]) -> None:
    """The total's 95th and the target as lines; axes, title, legend, grid."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    p95 = rep.total.p95_bits_per_s
    if p95 is not None:
        ax.axhline(p95 / 1e6, color="tab:red", linewidth=1.5,
                   label=f"total 95th {p95 / 1e6:.2f} Mbit/s")
    if rep.target_bits_per_s:
        ax.axhline(rep.target_bits_per_s / 1e6, color="tab:green", linestyle="--",
                   linewidth=1.5, label=f"target {rep.target_bits_per_s / 1e6:.2f} Mbit/s")
    ax.set_ylabel(f"Mbit/s ({rep.slot_s} s averages)" if rep.slot_s != 300
                  else "Mbit/s (5-minute averages)")
    ax.set_ylim(bottom=0)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_title(title or "vif-qos usage: max(in, out) by guest (UTC)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
              borderaxespad=0)
    ax.grid(True, alpha=0.3)
