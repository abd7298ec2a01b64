"""Network namespaces for kernel tests: unique names, always removed.

Every namespace, interface and file a test makes carries a unique name and is
removed when the test ends, failed or not. Nothing here touches the root
namespace's interfaces, qdiscs or nftables ruleset.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import uuid
from contextlib import contextmanager
from typing import Iterator, List

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

#: Every test namespace starts with this, so a leftover is easy to recognise.
PREFIX = "vqt-"


def unique(prefix: str = "") -> str:
    """A short unique token for names (interface names are at most 15 bytes)."""
    return prefix + uuid.uuid4().hex[:8]


def sh(*args: str, ns: str | None = None, check: bool = True, input: str | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command (inside namespace ``ns`` when given); text output."""
    cmd: List[str] = list(args)
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns] + cmd
    return subprocess.run(cmd, check=check, text=True, capture_output=True,
                          input=input, timeout=timeout)


class Namespaces:
    """A registry of namespaces made by one test; :meth:`cleanup` deletes them all."""

    def __init__(self) -> None:
        self.names: List[str] = []

    def make(self, role: str = "ns") -> str:
        name = f"{PREFIX}{role[:10]}-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "link", "set", "lo", "up", ns=name)
        return name

    def cleanup(self) -> None:
        for name in reversed(self.names):
            # Kill anything still running in it (an iperf3 server, say), then delete.
            pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", name, check=False)
        self.names.clear()


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Move this thread into namespace ``ns`` for the block, then back.

    Netlink and nftables handles opened inside the block live in ``ns``. sysfs is not
    remounted, so code under test must learn about links through netlink only.
    """
    with open("/proc/thread-self/ns/net") as orig, open(f"/run/netns/{ns}") as target:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(orig.fileno(), CLONE_NEWNET) != 0:  # pragma: no cover
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")


def tc_json(ns: str, *args: str):
    """``tc -j ARGS`` inside ``ns``, parsed: an independent oracle of kernel state."""
    out = sh("tc", "-j", *args, ns=ns).stdout
    return json.loads(out) if out.strip() else []


def nft_json(ns: str, *args: str):
    """``nft -j ARGS`` inside ``ns``, parsed (the ``nftables`` list)."""
    out = sh("nft", "-j", *args, ns=ns).stdout
    return json.loads(out)["nftables"] if out.strip() else []
