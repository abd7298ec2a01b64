"""``vif-qos assign TARGET POOL [--for DURATION] [--reason TEXT]``: move a running
guest into a pool (``none``: out of every pool): ``vif-qos set TARGET pool=POOL``.

The seed's "re-assign domains to existing classes": a heavy customer into the
overage pool and back (``vif-qos unset TARGET pool``). The move never leaves the
guest unshaped: the new HTB leaf is made first, the nftables rule switched in one
transaction, the old leaf removed once empty. See :mod:`vif_qos.cli.set_override`.
"""

from __future__ import annotations

from vif_qos.cli.set_override import configure, run  # noqa: F401
