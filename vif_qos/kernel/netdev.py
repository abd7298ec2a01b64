"""Whether a netdev exists, without netlink: ``if_nametoindex`` (an ioctl in the
calling thread's network namespace, not sysfs).

Only the standard library: the cheap paths (``cleanup --vif`` of a gone vif, the
drift check's live vifs) ask this without importing pyroute2.
"""

from __future__ import annotations

import socket


def netdev_exists(name: str) -> bool:
    """Whether a netdev called ``name`` exists in this network namespace (False for
    a name no netdev can have)."""
    try:
        socket.if_nametoindex(name)
        return True
    except (OSError, ValueError):
        return False
