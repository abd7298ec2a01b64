"""Network device names: the kernel's rule, checked before a name reaches netlink.

A name read from xenstore (backend ``vifname``, ``bridge``), from the hotplug
environment (``vif``, ``dev=``, ``bridge=``), from an option (``--vif``) or from
the policy file (``uplink``) is refused here with an
:class:`~vif_qos.errors.InputError` naming the token and its source, instead of
reaching the kernel (which answers ``ERANGE`` for a long name: an exit status 1
that names neither the token nor where it came from).

The rule is Linux's ``dev_valid_name`` (``net/core/dev.c``): not empty, at most
``IFNAMSIZ - 1`` = 15 bytes, not ``.`` or ``..``, and no ``/``, ``:``, NUL or
white space (the kernel's ``isspace``: tab, newline, vertical tab, form feed,
carriage return, space, and byte 0xa0).
"""

from __future__ import annotations

from typing import Optional

from vif_qos.errors import InputError

#: Longest netdev name in bytes: IFNAMSIZ (16, include/uapi/linux/if.h) minus the NUL.
IFNAME_MAX_BYTES = 15

_BAD_BYTES = frozenset(b"/:\x00\t\n\x0b\x0c\r \xa0")


def ifname_problem(name: object) -> Optional[str]:
    """Why ``name`` is not a valid netdev name, or ``None`` when it is."""
    if not isinstance(name, str):
        return "not a string"
    if name == "":
        return "empty"
    if name in (".", ".."):
        return "'.' and '..' are not netdev names"
    raw = name.encode("utf-8", errors="surrogateescape")
    if len(raw) > IFNAME_MAX_BYTES:
        return f"{len(raw)} bytes long, the kernel allows at most {IFNAME_MAX_BYTES} (IFNAMSIZ)"
    if any(byte in _BAD_BYTES for byte in raw):
        return "holds '/', ':', NUL or white space"
    return None


def check_ifname(name: str, source: str, what: str = "netdev name") -> str:
    """Return ``name`` if the kernel would accept it as a netdev name.

    :param source: where the name came from (``xenstore:backend/vif/3/0/vifname``,
        ``--vif``, ``/etc/xen/vif-qos.conf:7``), for the message.
    :raises InputError: the name breaks ``dev_valid_name`` (see the module doc).
    """
    problem = ifname_problem(name)
    if problem is not None:
        raise InputError(f"{what}: not a valid netdev name ({problem})", token=str(name),
                         source=source)
    return name
