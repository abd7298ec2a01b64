"""``vif-qos overrides [--json]``: the operator overrides (``vif-qos set``/``assign``),
with who set them, when, why and until when, from
``$VIF_QOS_STATE_DIR/overrides.conf``. Expired ones are marked (they no longer
apply; ``unset`` removes them).

Text output, one line per override::

    TARGET          KEYS                    SET BY  SET AT                EXPIRES               REASON
    domain:heavy1   pool=overage            root    2026-12-03T12:00:00Z  2026-12-03T18:00:00Z  backup
"""

from __future__ import annotations

import json


def configure(parser, name) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def render(data: dict) -> str:
    if not data["overrides"]:
        return f"vif-qos: no overrides ({data['path']})"
    header = ("TARGET", "KEYS", "SET BY", "SET AT", "EXPIRES", "REASON")
    rows = [header]
    for o in data["overrides"]:
        expires = o["expires"] or "never"
        if not o["active"]:
            expires += " (expired)"
        rows.append((o["target"], ",".join(f"{k}={v}" for k, v in o["keys"].items()),
                     o["set_by"] or "-", o["set_at"] or "-", expires, o["reason"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(args) -> int:
    from vif_qos.xen.reload import list_overrides

    data = list_overrides()
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else render(data))
    return 0
