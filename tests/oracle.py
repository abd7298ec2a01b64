"""Shared helpers of the kernel tests: the ``tc`` tool as an independent oracle of
what is in the kernel, and a traffic sender. Everything acts inside a namespace
the test made (``ip netns exec``)."""

from __future__ import annotations

import json
import re
import sys

from vif_qos.sim.net import run


def htb_classes(ns: str, dev: str) -> dict:
    """``tc class show`` parsed: classid -> {parent, rate, ceil, burst, cburst}.

    (iproute2 6.1's ``tc -j class show`` prints text for HTB, so we parse text.)
    """
    out = run("tc", "class", "show", "dev", dev, ns=ns).stdout
    classes = {}
    for line in out.splitlines():
        m = re.match(r"class htb (\S+) (root|parent (\S+)) .*?rate (\S+) ceil (\S+) "
                     r"burst (\S+) cburst (\S+)", line)
        if m:
            classes[m.group(1)] = {"parent": m.group(3), "rate": m.group(4),
                                   "ceil": m.group(5), "burst": m.group(6),
                                   "cburst": m.group(7)}
    return classes


def root_qdisc(ns: str, dev: str) -> dict:
    """``tc -j qdisc show`` of ``dev``: its root qdisc, ``{}`` when it shows none."""
    out = run("tc", "-j", "qdisc", "show", "dev", dev, ns=ns).stdout
    for q in json.loads(out) if out.strip() else []:
        if q.get("root"):
            return q
    return {}


SENDER = """
import socket, sys, time
dest, count = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in dest else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(b"vif-qos test %d" % i, (dest, 9))
    time.sleep(0.05)
"""


def ping(ns: str, dest: str, count: int = 3) -> None:
    """Send ``count`` UDP datagrams to ``dest`` port 9 from namespace ``ns``
    (no ping binary needed; the first one makes the guest resolve ARP/NDP)."""
    run(sys.executable, "-c", SENDER, dest, str(count), ns=ns)
