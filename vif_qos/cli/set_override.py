"""``vif-qos set TARGET SPEC [--for DURATION] [--reason TEXT]``: an operator
override, applied at once to the running vifs it matches and at every later online.

TARGET: a domain name (all its vifs; kept across reboots and new domids),
``NAME:DEVID`` (one vif), or a vif netdev name (``vif3.0``, a ``vifname``).
SPEC: qos keys as in a qos spec (``rate=20mbit``, ``pool=overage``,
``rate_out=none``, ``rate_in=5mbit,ceil=30mbit``), merged into the target's
existing override. ``--for 2h`` makes it expire (``90s``, ``30m``, ``1h30m``, ``1d``,
``2w``; a bare number is seconds; the same durations as the policy file's); an
expired override stops applying at the next reload or online. The override is
written to ``$VIF_QOS_STATE_DIR/overrides.conf`` with who (``$SUDO_USER`` or the
login name), when and why (``--reason``); ``vif-qos overrides`` lists them.

Prints what changed per vif, as ``reload`` does. Exit status: 0 done; 2 bad input
(unknown domain or pool, a spec error, a guarantee refused by ``admission =
refuse``): nothing was changed, neither the file nor the kernel; 1 the kernel
refused a change.
"""

from __future__ import annotations

from vif_qos.cli import add_config_option


def configure(parser, name) -> None:
    parser.add_argument("target", metavar="TARGET",
                        help="a domain name, NAME:DEVID, or a vif netdev name")
    if name == "assign":
        parser.add_argument("pool", metavar="POOL",
                            help="a pool of the policy file ([pools]), or none")
    else:
        parser.add_argument("spec", metavar="SPEC",
                            help="qos keys: rate=20mbit, pool=overage, rate_out=none, ...")
    parser.add_argument("--for", dest="for_", metavar="DURATION",
                        help="expire after DURATION (90s, 30m, 2h, 1h30m, 1d, 2w; a bare number is seconds)")
    parser.add_argument("--reason", default="", metavar="TEXT",
                        help="why (kept in the overrides file, shown by vif-qos overrides)")
    add_config_option(parser)


def run(args) -> int:
    from vif_qos.cli.reload import render
    from vif_qos.core.duration import parse_duration
    from vif_qos.xen.reload import set_override

    for_s = parse_duration(args.for_, "--for") if args.for_ is not None else None
    spec = f"pool={args.pool}" if getattr(args, "pool", None) is not None else args.spec
    report = set_override(args.target, spec, reason=args.reason, for_s=for_s,
                          conf=args.config)
    print(render(report))
    return report.status
