"""What vif-qos adds to a vif's hotplug: Debian's vif-bridge ``online`` alone, with
the vif-post.d hook answered by ``vif-qos serve``, and with the hook running vif-qos
in-process, in a simulated dom0, same run (figures, no assertions).

Run as root from the checkout::

    sudo .venv/bin/python benchmarks/bench_hotplug.py [--runs 10] [--concurrent 40]

Prints, per configuration, the median and max wall time of one ``online`` run
(unshare + ip netns exec + vif-bridge [+ hook + vif-qos]), the median wall time of
N ``online`` runs started at once (``--rounds`` times), and how many guests ended
shaped (an HTB leaf each); the three configurations run interleaved, so that they
share the machine's load alike;
then what the hook adds to one online (median minus vif-bridge's median) and the
N-at-once wall time as a multiple of vif-bridge's. Everything runs in namespaces
and a private mount namespace (vif_qos/sim/dom0.py) and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from vif_qos.sim.dom0 import EVERY_GUEST_10MBIT_POLICY, HOOK_DIR_REL, Dom0

POLICY = EVERY_GUEST_10MBIT_POLICY

CONFIGS = (("alone", "vif-bridge alone"), ("service", "hook via vif-qos serve"),
           ("inprocess", "hook in-process"))


def leaf_count(dom0: Dom0) -> int:
    out = subprocess.run(["ip", "netns", "exec", dom0.host.dom0, "tc", "class", "show",
                          "dev", "peth0"], capture_output=True, text=True).stdout
    return sum(1 for m in re.finditer(r"class htb [0-9a-f]+:([0-9a-f]+) ", out)
               if int(m.group(1), 16) >= 0x100)


class Config:
    """One simulated dom0 set up as ``kind`` (alone, service, inprocess)."""

    def __init__(self, kind: str, stack: contextlib.ExitStack):
        self.kind = kind
        tree = stack.enter_context(tempfile.TemporaryDirectory())
        self.dom0 = stack.enter_context(Dom0(tree, policy=POLICY, prefix=f"vqb{kind[0]}-"))
        self.serve_log = os.path.join(tree, "serve.log")
        if kind == "alone":
            os.unlink(os.path.join(tree, HOOK_DIR_REL, "00-vif-qos.hook"))
        elif kind == "service":
            proc = self.dom0.start_service(self.serve_log)
            stack.callback(self.dom0.stop_service, proc)
        self.next_domid = 100
        self.times = []
        self.walls = []
        self.ok = 0
        self.started = 0

    def guest(self) -> int:
        domid = self.next_domid
        self.next_domid += 1
        self.dom0.host.add_guest(domid=domid, attach=False)
        self.dom0.xs.seed_vif(domid, 0, name=f"g{domid}")
        return domid

    def one(self) -> None:
        domid = self.guest()
        start = time.monotonic()
        result = self.dom0.hotplug("online", domid)
        self.times.append(time.monotonic() - start)
        if result.returncode != 0:
            raise SystemExit(f"{self.kind}: online failed: {result.stderr}")

    def at_once(self, count: int) -> None:
        domids = [self.guest() for _ in range(count)]
        start = time.monotonic()
        procs = [self.dom0.popen(["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
                                 self.dom0.script_env(domid, 0)) for domid in domids]
        codes = [p.wait() for p in procs]
        self.walls.append(time.monotonic() - start)
        for p in procs:
            p.communicate()
        self.ok += codes.count(0)
        self.started += count

    def row(self, label: str, count: int) -> str:
        text = (f"{label:24} one online: median {statistics.median(self.times) * 1000:5.0f} "
                f"ms, max {max(self.times) * 1000:5.0f} ms ({len(self.times)} runs); "
                f"{count} at once: {statistics.median(self.walls):5.2f} s wall (median of "
                f"{len(self.walls)}), {self.ok}/{self.started} succeeded")
        if self.kind != "alone":
            text += f", {leaf_count(self.dom0)}/{self.next_domid - 100} shaped"
        if self.kind == "service":
            with open(self.serve_log, errors="replace") as fh:
                text += f", {fh.read().count('served online')} answered by the service"
        return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3,
                        help="N-at-once rounds per configuration (median reported)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_hotplug: needs root (namespaces, mounts)", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        configs = [Config(kind, stack) for kind, _label in CONFIGS]
        # Interleaved, so that every configuration sees the same load of a shared
        # machine: one online of each in turn, then N at once of each in turn
        # (the order rotated between rounds).
        for _ in range(args.runs):
            for config in configs:
                config.one()
        for round_ in range(args.rounds):
            for config in configs[round_ % 3:] + configs[:round_ % 3]:
                config.at_once(args.concurrent)
        for config, (_kind, label) in zip(configs, CONFIGS):
            print(config.row(label, args.concurrent), flush=True)
        base = configs[0]
        for config, (_kind, label) in zip(configs[1:], CONFIGS[1:]):
            added = statistics.median(config.times) - statistics.median(base.times)
            ratio = statistics.median(config.walls) / statistics.median(base.walls)
            print(f"{label:24} adds {added * 1000:5.0f} ms to one online (vif-bridge's own: "
                  f"{statistics.median(base.times) * 1000:.0f} ms); {args.concurrent} at "
                  f"once take {ratio:.2f}x vif-bridge's wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
