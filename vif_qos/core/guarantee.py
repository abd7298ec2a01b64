"""Guaranteed rates: do the HTB ``rate``s under a class fit into its own rate?

HTB lends a class its ``rate`` before any class borrows (``net/sched/sch_htb.c``,
tc-htb(8): "rate: maximum rate this class and all its children are guaranteed").
When the rates of a class's children add up to more than the class's rate, the
parent runs out of tokens before every child has had its rate, and HTB cannot
honour them: the guarantees are oversold. These functions find that; they are
pure (the kernel side reads the classes it compares).

Children of the root class: the default class, every pool class and the leaves
of vifs outside pools; children of a pool class: its members' leaves.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from vif_qos.core import units
from vif_qos.model import OutboundPlan, UplinkPlan, VifPlan


def oversold(parent: str, parent_rate_bits_per_s: int,
             children: Sequence[Tuple[str, int]]) -> Optional[str]:
    """One line when the children's rates (``(label, bits/s)``) add up to more than
    ``parent_rate_bits_per_s``, else None."""
    total = sum(rate for _label, rate in children)
    if total <= parent_rate_bits_per_s:
        return None
    return (f"guaranteed rates under {parent} add up to {units.format_rate(total)}, "
            f"above its rate {units.format_rate(parent_rate_bits_per_s)} "
            f"({len(children)} classes): HTB cannot honour them all")


def tree_problems(uplink: UplinkPlan, leaves: Sequence[Tuple[str, OutboundPlan]],
                  where: str = "") -> List[str]:
    """The oversold classes of one uplink's tree with these vif leaves
    (``(vif, outbound plan)``); ``where`` names the uplink in the lines."""
    label = where or f"the uplink of {uplink.bridge}"
    root_children = [("default", uplink.default.rate_bits_per_s)]
    root_children += [(f"pool {p.name}", p.rate_bits_per_s) for p in uplink.pools]
    members: Dict[str, List[Tuple[str, int]]] = {p.name: [] for p in uplink.pools}
    for vif, out in leaves:
        if out.pool is None:
            root_children.append((vif, out.rate_bits_per_s))
        else:
            members.setdefault(out.pool, []).append((vif, out.rate_bits_per_s))
    problems = []
    line = oversold(f"the root class of {label}", uplink.root.rate_bits_per_s,
                    root_children)
    if line:
        problems.append(line)
    for pool in uplink.pools:
        line = oversold(f"pool {pool.name} on {label}", pool.rate_bits_per_s,
                        members.get(pool.name, []))
        if line:
            problems.append(line)
    return problems


def plans_problems(plans: Sequence[VifPlan]) -> List[str]:
    """:func:`tree_problems` for every bridge the shaped ``plans`` use (each
    bridge's tree taken from its first plan)."""
    by_bridge: Dict[str, Tuple[UplinkPlan, List[Tuple[str, OutboundPlan]]]] = {}
    for plan in plans:
        if plan.outbound is None or plan.uplink is None:
            continue
        entry = by_bridge.setdefault(plan.bridge, (plan.uplink, []))
        entry[1].append((plan.vif, plan.outbound))
    problems: List[str] = []
    for bridge in sorted(by_bridge):
        uplink, leaves = by_bridge[bridge]
        problems += tree_problems(uplink, leaves)
    return problems
