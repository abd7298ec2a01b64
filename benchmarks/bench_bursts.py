"""Bursts of guests started at once, and the host lock: Debian's vif-bridge
``online`` with and without the vif-post.d hook (vif-qos in-process), in a
simulated dom0 (figures, no assertions). ``bench_hotplug.py`` compares the hook
through ``vif-qos serve`` with the in-process hook.

Run as root from the checkout::

    sudo .venv/bin/python benchmarks/bench_bursts.py [--runs 10] [--concurrent 20]
        [--bursts 50,100,150]

Prints, per configuration, the median and max wall time of one ``online`` run
(unshare + ip netns exec + vif-bridge [+ hook + vif-qos]), and the wall time of
N ``online`` runs started at once. ``--bursts`` then starts each number of
``online`` runs at once on a fresh simulated dom0, with and without the hook
side by side: the wall time until the last one ended, how many succeeded, and
(with the hook) how long each vif-qos run held the host lock and waited for it
(median/max, from its debug log line). Everything runs in namespaces and a
private mount namespace (vif_qos/sim/dom0.py) and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import statistics
import sys
import tempfile
import time

from vif_qos.sim.dom0 import EVERY_GUEST_10MBIT_POLICY, HOOK_DIR_REL, Dom0

POLICY = EVERY_GUEST_10MBIT_POLICY


def one_config(hook: bool, runs: int, concurrent: int) -> None:
    with tempfile.TemporaryDirectory() as tree:
        with Dom0(tree, policy=POLICY, prefix="vqb-") as dom0:
            if not hook:
                os.unlink(os.path.join(tree, HOOK_DIR_REL, "00-vif-qos.hook"))
            times = []
            for i in range(runs):
                domid = 100 + i
                dom0.host.add_guest(domid=domid, attach=False)
                dom0.xs.seed_vif(domid, 0, name=f"g{domid}")
                start = time.monotonic()
                result = dom0.hotplug("online", domid, VIF_QOS_DEBUG="1")
                times.append(time.monotonic() - start)
                if result.returncode != 0:
                    raise SystemExit(f"online failed: {result.stderr}")
            domids = list(range(1000, 1000 + concurrent))
            for domid in domids:
                dom0.host.add_guest(domid=domid, attach=False)
                dom0.xs.seed_vif(domid, 0, name=f"g{domid}")
            start = time.monotonic()
            procs = [dom0.popen(["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
                                dom0.script_env(domid, 0)) for domid in domids]
            codes = [p.wait() for p in procs]
            wall = time.monotonic() - start
            for p in procs:
                p.communicate()
            label = "vif-bridge + vif-qos hook" if hook else "vif-bridge alone"
            held = sorted(int(h) for h in re.findall(r"host lock: waited \d+ ms, held (\d+) ms",
                                                      dom0.hotplug_log()))
            print(f"{label:28} one online: median {statistics.median(times) * 1000:6.0f} ms, "
                  f"max {max(times) * 1000:6.0f} ms ({runs} runs"
                  + (f"; lock held median {statistics.median(held[:runs]):.0f} ms" if held else "")
                  + f"); {concurrent} at once: "
                  f"{wall:5.2f} s wall, {codes.count(0)}/{concurrent} succeeded")


def burst(hook: bool, count: int) -> None:
    """``count`` vif-bridge onlines started at once on a fresh simulated dom0."""
    with tempfile.TemporaryDirectory() as tree:
        with Dom0(tree, policy=POLICY, prefix="vqb-") as dom0:
            if not hook:
                os.unlink(os.path.join(tree, HOOK_DIR_REL, "00-vif-qos.hook"))
            domids = list(range(1000, 1000 + count))
            for domid in domids:
                dom0.host.add_guest(domid=domid, attach=False)
                dom0.xs.seed_vif(domid, 0, name=f"g{domid}")
            env = {"VIF_QOS_DEBUG": "1"}
            start = time.monotonic()
            procs = [dom0.popen(["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
                                dict(dom0.script_env(domid, 0), **env)) for domid in domids]
            codes = [p.wait() for p in procs]
            wall = time.monotonic() - start
            for p in procs:
                p.communicate()
            label = "vif-bridge + vif-qos hook" if hook else "vif-bridge alone"
            line = (f"{count:4} at once, {label:26}: {wall:6.2f} s wall, "
                    f"{codes.count(0)}/{count} succeeded")
            if hook:
                found = [(int(w), int(h)) for w, h in re.findall(
                    r"host lock: waited (\d+) ms, held (\d+) ms", dom0.hotplug_log())]
                if found:
                    waited = sorted(w for w, _ in found)
                    held = sorted(h for _, h in found)
                    line += (f"; lock held median {statistics.median(held):.0f} ms, max "
                             f"{held[-1]} ms; waited median {statistics.median(waited) / 1000:.1f}"
                             f" s, max {waited[-1] / 1000:.1f} s")
            print(line, flush=True)
            reasons = collections.Counter(
                re.sub(r"vif\d+\.\d+|\d+(\.\d+)? ?(ms|s)\b", "N", m)[:110]
                for m in re.findall(r" err: online \S+: (.*)", dom0.hotplug_log()))
            for reason, n in reasons.most_common(5):
                print(f"      {n:4} failed: {reason}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--bursts", default="",
                        help="comma-separated burst sizes, e.g. 50,100,150")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_hotplug: needs root (namespaces, mounts)", file=sys.stderr)
        return 1
    # SIGTERM (timeout, kill): unwind, so the simulated dom0 deletes its namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.runs:
        one_config(False, args.runs, args.concurrent)
        one_config(True, args.runs, args.concurrent)
    for count in [int(n) for n in args.bursts.split(",") if n.strip()]:
        burst(False, count)
        burst(True, count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
