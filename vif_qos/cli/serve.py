"""``vif-qos serve``: the resident service answering the hook (vif_qos/xen/serve.py).

Started by systemd socket activation (``systemd/vif-qos.socket`` and
``vif-qos.service``) or by hand; optional: without it the hook runs vif-qos
in-process. Runs until SIGTERM; exit status 0, or 1 when it cannot start.
"""

from __future__ import annotations


def configure(parser, name) -> None:
    parser.epilog = ("Listens at $VIF_QOS_RUN_DIR/vif-qos.sock (default "
                     "/run/vif-qos/vif-qos.sock) unless systemd passes the socket.")


def run(args) -> int:
    from vif_qos.xen.serve import serve
    return serve()
