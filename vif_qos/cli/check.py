"""``vif-qos check [--json]``: compare the kernel with what ``reload`` would make,
for every running vif; a Nagios/Icinga check as it is.

Output: a summary first line (``VIF-QOS OK: 12 vifs in sync`` or ``VIF-QOS
DIFFERS: 3 differences in 2 of 12 vifs, 1 leftover``), then one line per
difference: ``VIF: what differs`` (missing TBF, wrong rate, map element gone,
class under the wrong parent...), ``uplink DEV: ...``, ``leftover: ...``.
Nothing is changed; ``vif-qos reload`` would change exactly these.

Exit status: 0 in sync; 1 differences (or a vif that could not be compared);
2 bad input (the policy file, the overrides file, a vif's sources).
"""

from __future__ import annotations

import json

from vif_qos.cli import add_config_option


def configure(parser, name) -> None:
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def differences(report) -> int:
    """How many things differ, from the comparison itself: each vif change, uplink
    difference and leftover (``reconcile.Result.differences``), each vif that could
    not be compared, each vif whose plan could not be made."""
    result = report.result
    return result.differences + len(report.failed) + sum(1 for v in result.vifs if v.error)


def exit_status(report) -> int:
    """2 when a vif's input (or the policy) is bad; else 1 when anything differs
    (:func:`differences`); else 0."""
    if any(status == 2 for _v, _m, status in report.failed):
        return 2
    return 1 if differences(report) else 0


def summary(report) -> str:
    """The first line."""
    result = report.result
    bad_vifs = [v for v in result.vifs if v.changes or v.error] + report.failed
    count = differences(report)
    total = len(result.vifs) + len(report.failed)
    if count == 0:
        return f"VIF-QOS OK: {total} vif(s) in sync"
    extra = f", {len(result.leftovers)} leftover(s)" if result.leftovers else ""
    return (f"VIF-QOS DIFFERS: {count} difference(s) in {len(bad_vifs)} of {total} "
            f"vif(s){extra}")


def lines(report) -> list:
    out = []
    for v in report.result.vifs:
        if v.error:
            out.append(f"{v.vif}: cannot compare: {v.error}")
        out += [f"{v.vif}: {change}" for change in v.changes]
    out += [f"{vif}: bad input: {message}" for vif, message, _s in report.failed]
    out += report.result.uplinks
    out += [f"leftover: {item}" for item in report.result.leftovers]
    return out


def run(args) -> int:
    from vif_qos.xen.reload import check

    report = check(args.config)
    if args.json:
        print(json.dumps(dict(report.to_json(), summary=summary(report)), indent=2,
                         sort_keys=True))
    else:
        print("\n".join([summary(report)] + lines(report)))
    return exit_status(report)
