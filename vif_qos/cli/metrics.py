"""``vif-qos metrics --textfile DIR``: the counters of every running vif and uplink,
and the configured rates, in node_exporter's textfile-collector format
(``DIR/vif_qos.prom``, written atomically; see :mod:`vif_qos.usage.metrics`).
Without ``--textfile`` prints the same text. Exit 0; 1 when the kernel or xenstore
cannot be read or DIR cannot be written; 2 for a bad policy file.
"""

from __future__ import annotations

import os

from vif_qos.cli import add_config_option
from vif_qos.errors import InputError


def configure(parser, name) -> None:
    parser.add_argument("--textfile", metavar="DIR",
                        help="node_exporter's --collector.textfile.directory, e.g. "
                             "/var/lib/prometheus/node-exporter")
    add_config_option(parser, "[billing] target")


def run(args) -> int:
    from vif_qos.config.policy import load_policy
    from vif_qos.usage.metrics import write_textfile
    from vif_qos.usage.record import take_snapshot

    policy = load_policy(args.config)
    if args.textfile and not os.path.isdir(args.textfile):
        raise InputError("not a directory", token=args.textfile, source="--textfile")
    snap = take_snapshot()
    if args.textfile:
        write_textfile(snap, args.textfile, policy.billing.target_bits_per_s)
        return 0
    import tempfile
    with tempfile.TemporaryDirectory(prefix="vif-qos-metrics-") as tmp:
        path = write_textfile(snap, tmp, policy.billing.target_bits_per_s)
        with open(path, encoding="utf-8") as fh:
            print(fh.read(), end="")
    return 0
