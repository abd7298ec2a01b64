"""``vif-qos record [--config FILE] [--textfile DIR]``: one usage sample of every
running vif and uplink into ``$VIF_QOS_STATE_DIR/usage.sqlite`` (see
:mod:`vif_qos.usage.record`), retention (``[billing] retention``), then, with
``[billing] auto_overage = yes``, the auto-overage moves (:mod:`vif_qos.usage.overage`).
Run every 5 minutes by ``vif-qos-record.timer``.

Never takes the host lock the hotplug path uses: only its own ``usage.lock`` (waits at
most 2 s) and SQLite's busy timeout (2 s). Exit 0; 1 when the kernel, xenstore or the
database cannot be used; 2 for a bad policy file.
"""

from __future__ import annotations

import sys

from vif_qos.cli import add_config_option


def configure(parser, name) -> None:
    add_config_option(parser)
    parser.add_argument("--textfile", metavar="DIR",
                        help="also write DIR/vif_qos.prom as vif-qos metrics --textfile does")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")


def run(args) -> int:
    from vif_qos.config.policy import load_policy
    from vif_qos.usage import overage, record
    from vif_qos.usage.store import UsageStore, record_lock

    policy = load_policy(args.config)
    snap = record.take_snapshot()
    for line in snap.skipped:
        print(f"vif-qos record: not recorded: {line}", file=sys.stderr)
    with record_lock():
        with UsageStore() as store:
            purged = record.store_snapshot(store, snap, policy.billing.retention_s)
            moves = []
            if policy.billing.auto_overage:
                present = sorted({g.reading.key.guest for g in snap.guests})
                moves = overage.act(store, policy, snap.wall_s, present=present)
    if args.textfile:
        from vif_qos.usage.metrics import write_textfile
        write_textfile(snap, args.textfile, policy.billing.target_bits_per_s)
    if not args.quiet:
        print(f"vif-qos record: {len(snap.guests)} vif port(s), {len(snap.uplinks)} uplink(s)"
              + (f", {purged} old sample(s) deleted" if purged else "")
              + "".join(f"\n  {m.action} {m.target}: {m.reason} [{m.outcome}]" for m in moves))
    return 0
