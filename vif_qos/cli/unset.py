"""``vif-qos unset TARGET [KEY ...]``: remove keys from an operator override (``rate``
also removes ``rate_in``/``rate_out``), or the whole override without KEYs; the
running vifs it matched go back at once to what their other sources give (Xen's
``rate=``, the domain's ``qos =``, the policy).

Exit status: 0 done; 2 no such override or key (nothing changed); 1 the kernel
refused a change.
"""

from __future__ import annotations

from vif_qos.cli import add_config_option


def configure(parser, name) -> None:
    parser.add_argument("target", metavar="TARGET",
                        help="as given to set: a domain name, NAME:DEVID, a vif name")
    parser.add_argument("keys", metavar="KEY", nargs="*",
                        help="qos keys to remove (default: the whole override)")
    add_config_option(parser)


def run(args) -> int:
    from vif_qos.cli.reload import render
    from vif_qos.xen.reload import unset_override

    report = unset_override(args.target, args.keys, conf=args.config)
    print(render(report))
    return report.status
