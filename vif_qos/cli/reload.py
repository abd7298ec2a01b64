"""``vif-qos reload [--dry-run] [--json]``: re-resolve every running vif from its
current sources and change the kernel to match, in place.

Run it after editing the policy file or a domain's ``qos =``, after
``xenstore-write backend/vif/D/N/rate``, after a firewall reload (``nft flush
ruleset``) or a deleted uplink qdisc, and at boot (``vif-qos-reload.service``).
The running vifs come from xenstore and the netdevs, not from vif-qos's own
record (:mod:`vif_qos.xen.reload`). Prints one line per vif that changed (what
changed, ``;``-separated), per uplink difference and per leftover removed; vifs
already right are counted, not listed. ``--dry-run`` changes nothing and prints
what would change.

Exit status: 0 done; 2 a vif's input (or the policy file) is bad: that vif was
left as it was; 1 the kernel or xenstore refused something.
"""

from __future__ import annotations

import json
import sys

from vif_qos.cli import add_config_option


def configure(parser, name) -> None:
    add_config_option(parser)
    if name == "reload":
        parser.add_argument("--dry-run", action="store_true",
                            help="change nothing; print what would change")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def render(report, verb: str = "changed") -> str:
    """The text form of a :class:`vif_qos.xen.reload.Report`."""
    lines = []
    unchanged = 0
    for v in report.result.vifs:
        if v.error:
            lines.append(f"{v.vif}: not {verb}: {v.error}")
        elif v.changes:
            lines.append(f"{v.vif}: {'; '.join(v.changes)}")
        else:
            unchanged += 1
    for vif, message, _status in report.failed:
        lines.append(f"{vif}: left as it is: {message}")
    lines += report.result.uplinks
    lines += [f"leftover: {item}" for item in report.result.leftovers]
    for s in report.skipped:
        lines.append(f"skipped {s.vif or s.backend}: {s.reason}")
    lines += [f"warning: {w}" for w in report.warnings]
    lines.append(f"{len(report.result.vifs) + len(report.failed)} vif(s) running, "
                 f"{unchanged} already right")
    return "\n".join(lines)


def run(args) -> int:
    from vif_qos.xen.reload import reload

    dry = getattr(args, "dry_run", False)
    report = reload(args.config, apply=not dry)
    if args.json:
        print(json.dumps(dict(report.to_json(), dry_run=dry), indent=2, sort_keys=True))
    else:
        print(render(report, "changed" if not dry else "compared"))
    for vif, message, _status in report.failed:
        print(f"vif-qos reload: {vif}: {message}", file=sys.stderr)
    return report.status
