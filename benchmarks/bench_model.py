"""Cost of the pure model on a hotplug run: import, policy load, one plan.

Figures, not assertions. Each figure is taken in a fresh interpreter (as a
hotplug run is), repeated, and the median printed::

    .venv/bin/python benchmarks/bench_model.py [--runs N] [--config FILE]

Default policy: the shipped example (vif_qos/config/vif-qos.conf.example); the domain
config lookup scans the example's domain_config_dirs (/etc/xen/auto, /etc/xen).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from vif_qos.config import policy
from vif_qos.core import resolve
from vif_qos.config import planning
from vif_qos.model import VifFacts
t1 = time.perf_counter()
p = policy.load_policy(sys.argv[1])
t2 = time.perf_counter()
plan = planning.plan_for_facts(VifFacts("vif3.0", 0, domain_name="baldr",
                                       xen_rate="62500,50000"), p)
t3 = time.perf_counter()
for i in range(200):
    resolve.plan_vif(VifFacts(f"vif{i}.0", 0, domain_name="heavy-1",
                              xen_rate="62500,50000"), p,
                     ("rate_in=1mbit,latency=50ms,peak=2mbit,burst=40MB", "bench"))
t4 = time.perf_counter()
print(json.dumps({"import_ms": 1e3 * (t1 - t0), "load_policy_ms": 1e3 * (t2 - t1),
                  "plan_for_facts_ms": 1e3 * (t3 - t2),
                  "plan_vif_ms": 1e3 * (t4 - t3) / 200}))
"""


def main() -> int:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--config", default=os.path.join(here, "vif_qos", "config", "vif-qos.conf.example"))
    args = parser.parse_args()
    samples = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, args.config], check=True,
                             capture_output=True, text=True, cwd=here).stdout
        samples.append(json.loads(out))
    print(f"vif-qos model cost, median of {args.runs} fresh interpreters ({sys.executable})")
    for key in ("import_ms", "load_policy_ms", "plan_for_facts_ms", "plan_vif_ms"):
        values = [s[key] for s in samples]
        print(f"  {key:<18} {statistics.median(values):8.2f} ms   "
              f"(min {min(values):.2f}, max {max(values):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
