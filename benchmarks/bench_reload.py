"""``vif-qos reload`` and ``check`` with N running guests and nothing to change, in a
simulated dom0 (figures, no assertions).

Run as root from the checkout::

    sudo .venv/bin/python benchmarks/bench_reload.py [--guests 50] [--runs 5]

Prints the median and max wall time of one whole program run (unshare + ip netns
exec + Python start + xenstore + kernel reads) of ``reload`` (no change) and
``check``, side by side with three references in the same run: ``vif-qos status``
(a plain read-back of the same kernel objects), ``vif-qos --version`` (the
program's start alone) and ``xenstore-ls -f`` of the vif backends (the one
xenstore read reload makes). Also checks that the reloads changed nothing (the
rulesets and classes are compared before and after; a difference is printed).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time

from vif_qos.sim.dom0 import EVERY_GUEST_10MBIT_POLICY, Dom0

POLICY = EVERY_GUEST_10MBIT_POLICY


def snapshot(dom0: Dom0) -> tuple:
    def out(*args):
        return subprocess.run(["ip", "netns", "exec", dom0.host.dom0, *args],
                              capture_output=True, text=True, check=True).stdout
    return (out("tc", "qdisc", "show"), out("tc", "class", "show", "dev", "peth0"),
            out("nft", "-s", "list", "ruleset"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tree:
        with Dom0(tree, policy=POLICY, prefix="vqb-") as dom0:
            domids = list(range(100, 100 + args.guests))
            for domid in domids:
                dom0.host.add_guest(domid=domid, attach=False)
                dom0.xs.seed_vif(domid, 0, name=f"g{domid}")
            for start in range(0, len(domids), 10):
                procs = [dom0.popen(["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
                                    dom0.script_env(domid, 0))
                         for domid in domids[start:start + 10]]
                if [p.wait() for p in procs] != [0] * len(procs):
                    raise SystemExit("an online failed")
                for p in procs:
                    p.communicate()
            before = snapshot(dom0)
            print(f"{args.guests} running guests, nothing to change; wall time of one "
                  f"program run, {args.runs} runs:")
            times = []
            for _ in range(args.runs):
                start = time.monotonic()
                dom0.run(["xenstore-ls", "-f", "/local/domain/0/backend/vif"],
                         dom0.base_env())
                times.append(time.monotonic() - start)
            print(f"  {'xenstore-ls -f of the backends':32} median "
                  f"{statistics.median(times):.3f} s  max {max(times):.3f} s")
            for label, argv, want in (("vif-qos --version (start only)", ["--version"], 0),
                                      ("vif-qos status (reference)", ["status"], 0),
                                      ("vif-qos reload", ["reload"], 0),
                                      ("vif-qos check", ["check"], 0)):
                times = []
                for _ in range(args.runs):
                    start = time.monotonic()
                    result = dom0.vif_qos(*argv)
                    times.append(time.monotonic() - start)
                    if result.returncode != want:
                        raise SystemExit(f"{label}: exit {result.returncode}: "
                                         f"{result.stdout[-300:]} {result.stderr[-300:]}")
                print(f"  {label:32} median {statistics.median(times):.3f} s  "
                      f"max {max(times):.3f} s")
            print("kernel unchanged by the reloads: " + ("yes" if snapshot(dom0) == before
                                                          else "NO"))


if __name__ == "__main__":
    main()
