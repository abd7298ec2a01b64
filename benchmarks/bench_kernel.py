#!/usr/bin/env python3
"""Kernel-side benchmark: vif-qos against the seed's recipe, in one run.

Not a test: it prints figures, it asserts nothing. Run as root from the checkout::

    sudo .venv/bin/python benchmarks/bench_kernel.py            # full run, ~3-5 min
    sudo .venv/bin/python benchmarks/bench_kernel.py --quick    # 1/10/100 vifs, ~1 min

What it measures (see benchmarks/README.rst):

1. apply and remove time per vif with N vifs already shaped on the host
   (N = 1, 100, 1000 by default): ``--probe`` extra vifs are applied one by one,
   then removed one by one, and the wall time of each call is recorded.
2. bridge forwarding throughput of one guest (iperf3 TCP, both directions, IPv4)
   unshaped, with 1 and with N_max vifs shaped (the measured guest re-applied last,
   so in a linear rule list its rule is the last one, as for the newest guest), the measured guest shaped with ceilings far
   above what the path carries (10 Gbit/s), so what changes is the per-packet cost
   of classification, not the shaping.

Each for two recipes, each in its own simulated dom0 (vif_qos.sim.net):

* ``vif-qos``: ``vif_qos.kernel.apply.apply_vif`` / ``remove_vif`` in this process
  (pyroute2 + nftables JSON; one verdict-map lookup on iifname per frame).
* ``seed``: the seed's recipe at the nearest this kernel allows, as the admin's
  shell script would run it: ``tc qdisc replace ... tbf`` on the vif, ``tc class add``
  of an HTB class on the uplink, and per guest one *linear* rule in an nftables
  bridge-family forward chain, ``iifname VIF meta mark set M meta priority set
  7a51:M``. The seed used one iptables ``physdev --physdev-in`` MARK rule per guest
  plus one tc ``fw`` filter per guest; this kernel has no ``fw`` classifier
  (CONFIG_NET_CLS_FW unset) and no iptables, so the rule sets the class through
  ``meta priority`` itself. The per-guest linear rule list (cost per frame growing
  with the number of guests) is the same. Removal looks the rule's handle up with
  ``nft -j -a list chain`` and deletes it, as a script would.

The 1000 "vifs" without traffic are veth pairs (this kernel has no dummy driver)
whose dom0 ends are named ``vif<domid>.0``, ports of xenbr0, left down (a down
port gets no flooded frames, so the bridge's flooding cost does not grow with N).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from vif_qos.model import (ClassPlan, HostSettings, InboundPlan,  # noqa: E402
                           OutboundPlan, UplinkPlan, VifPlan)
from vif_qos.sim.net import INBOUND, OUTBOUND, SimHost, ip_batch, run  # noqa: E402

MBIT = 10 ** 6
GBIT = 10 ** 9
HOST = HostSettings()
MAJOR = HOST.qdisc_major
FRAME_BYTES = 1514


def _class(name: str, rate: int) -> ClassPlan:
    burst = max(rate // 8 // 1000, 2 * FRAME_BYTES)
    return ClassPlan(name=name, rate_bits_per_s=rate, ceil_bits_per_s=rate, burst_bytes=burst,
                     cburst_bytes=burst, quantum_bytes=min(max(rate // 80, FRAME_BYTES), 200000))


UPLINK = UplinkPlan(bridge="xenbr0", device="peth0", qdisc_major=MAJOR,
                    root=_class("root", 100 * GBIT), default=_class("default", 100 * GBIT))


def plan_for(vif: str, rate: int) -> VifPlan:
    """Shape ``vif`` at ``rate`` both ways (TBF 5 ms burst, 50 ms latency)."""
    burst = max(rate // 8 // 200, 2 * FRAME_BYTES)
    quantum = min(max(rate // 80, FRAME_BYTES), 200000)
    htb_burst = max(rate // 8 // 1000, 2 * FRAME_BYTES)
    return VifPlan(
        vif=vif, bridge="xenbr0",
        inbound=InboundPlan(rate_bits_per_s=rate, burst_bytes=burst, latency_us=50_000,
                            limit_bytes=rate // 8 // 20 + burst),
        outbound=OutboundPlan(rate_bits_per_s=rate, ceil_bits_per_s=rate,
                              burst_bytes=htb_burst, cburst_bytes=htb_burst,
                              quantum_bytes=quantum),
        uplink=UPLINK, host=HOST)


# --------------------------------------------------------------------------
# the two recipes

class VifQosRecipe:
    name = "vif-qos"
    what = "apply_vif/remove_vif in-process (pyroute2 + nft JSON, vmap on iifname)"

    def __init__(self, host: SimHost):
        from vif_qos.kernel import apply
        self.host = host
        self._apply = apply

    def apply(self, vif: str, rate: int) -> None:
        with self.host.in_dom0():
            self._apply.apply_vif(plan_for(vif, rate))

    def remove(self, vif: str) -> None:
        with self.host.in_dom0():
            self._apply.remove_vif(vif, HOST)


class SeedRecipe:
    name = "seed"
    what = ("tc + nft commands per vif: TBF, HTB class, one linear bridge rule "
            "(iifname -> meta mark + meta priority; stands in for physdev MARK + fw)")

    def __init__(self, host: SimHost):
        self.host = host
        self.ns = host.dom0
        self.minor: Dict[str, int] = {}
        self.next_minor = HOST.classid_min
        m = f"{MAJOR:x}"
        self._tc("qdisc", "add", "dev", "peth0", "root", "handle", f"{m}:", "htb", "default", "2")
        self._tc("class", "add", "dev", "peth0", "parent", f"{m}:", "classid", f"{m}:1",
                 "htb", "rate", f"{100 * GBIT}bit")
        self._tc("class", "add", "dev", "peth0", "parent", f"{m}:1", "classid", f"{m}:2",
                 "htb", "rate", f"{100 * GBIT}bit")
        run("nft", "add table bridge seed; add chain bridge seed forward "
            "{ type filter hook forward priority 0; }", ns=self.ns)

    def _tc(self, *args: str) -> None:
        run("tc", "-n", self.ns, *args)

    def apply(self, vif: str, rate: int) -> None:
        minor = self.minor.get(vif)
        if minor is None:
            minor = self.minor[vif] = self.next_minor
            self.next_minor += 1
        m = f"{MAJOR:x}"
        burst = max(rate // 8 // 200, 2 * FRAME_BYTES)
        self._tc("qdisc", "replace", "dev", vif, "root", "tbf", "rate", f"{rate}bit",
                 "burst", str(burst), "latency", "50ms")
        run("nft", f'add rule bridge seed forward iifname "{vif}" meta mark set {minor} '
            f'meta priority set {m}:{minor:x}', ns=self.ns)
        self._tc("class", "add", "dev", "peth0", "parent", f"{m}:1", "classid",
                 f"{m}:{minor:x}", "htb", "rate", f"{rate}bit", "ceil", f"{rate}bit")

    def remove(self, vif: str) -> None:
        minor = self.minor.pop(vif)
        listing = json.loads(run("nft", "-j", "-a", "list", "chain", "bridge", "seed",
                                 "forward", ns=self.ns).stdout)["nftables"]
        for item in listing:
            rule = item.get("rule")
            if rule and any(e.get("match", {}).get("right") == vif for e in rule["expr"]):
                run("nft", "delete", "rule", "bridge", "seed", "forward", "handle",
                    str(rule["handle"]), ns=self.ns)
        self._tc("class", "del", "dev", "peth0", "classid", f"{MAJOR:x}:{minor:x}")
        self._tc("qdisc", "del", "dev", vif, "root")


RECIPES = {"vif-qos": VifQosRecipe, "seed": SeedRecipe}


# --------------------------------------------------------------------------
# running

def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def make_idle_vifs(host: SimHost, domids: List[int], role: str) -> List[str]:
    """veth pairs named like vifs, dom0 ends bridged and down, peers in a sink ns."""
    sink = host.make_namespace(role)
    names = [f"vif{d}.0" for d in domids]
    ip_batch(host.dom0, [f"link add {n} type veth peer name p{d} netns {sink}"
                         for n, d in zip(names, domids)])
    ip_batch(host.dom0, [f"link set {n} master {host.bridge}" for n in names])
    return names


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def bench_recipe(name: str, counts: List[int], probe: int, stack: ExitStack) -> dict:
    """Build two simulated dom0s for recipe ``name``: ``small`` (only the measured
    guest shaped) and ``big`` (the measured guest plus ``max(counts) - 1`` idle
    vifs shaped, timing probe applies/removes at each count on the way)."""
    res: dict = {"recipe": name, "apply_ms": {}, "remove_ms": {}, "fill_ms": {},
                 "throughput": {}}
    small = stack.enter_context(SimHost(prefix="vqb-"))
    res["small"] = (small, small.add_guest(domid=1))
    RECIPES[name](small).apply(res["small"][1].vif, 10 * GBIT)

    host = stack.enter_context(SimHost(prefix="vqb-"))
    guest = host.add_guest(domid=1)
    res["big"] = (host, guest)
    idle = make_idle_vifs(host, list(range(1001, 1001 + max(counts) - 1)), "idle")
    probes = make_idle_vifs(host, list(range(9001, 9001 + probe)), "probe")
    recipe = RECIPES[name](host)
    res["what"] = recipe.what
    recipe.apply(guest.vif, 10 * GBIT)      # ceilings far above the path's rate
    shaped = 1
    for count in counts:
        fill = idle[shaped - 1:count - 1]
        if fill:
            progress(f"{name}: shaping {len(fill)} idle vifs (to {count})")
            times = [timed(lambda v=v: recipe.apply(v, 10 * MBIT)) for v in fill]
            res["fill_ms"][count] = statistics.mean(times)
        shaped = count
        progress(f"{name}: {probe} applies + removes with {count} shaped")
        res["apply_ms"][count] = [timed(lambda v=v: recipe.apply(v, 10 * MBIT))
                                  for v in probes]
        res["remove_ms"][count] = [timed(lambda v=v: recipe.remove(v)) for v in probes]
    # The measured guest becomes the newest one: last in a linear rule list.
    recipe.remove(guest.vif)
    recipe.apply(guest.vif, 10 * GBIT)
    return res


def measure_throughput(configs: List[tuple], repeat: int, window_s: float) -> None:
    """Round-robin over ``configs`` [(label, host, guest, store)], ``repeat`` times,
    both directions: load from other jobs then weighs on every configuration alike.
    Appends wire Mbit/s to ``store[direction]``."""
    for rep in range(repeat):
        for direction in (OUTBOUND, INBOUND):
            for label, host, guest, store in configs:
                progress(f"throughput {rep + 1}/{repeat} {direction} {label}")
                m = host.measure(guest, direction, 4, window_s=window_s, warmup_s=0.75)
                store.setdefault(direction, []).append(m.wire_bits_per_s / MBIT)


def fmt_ms(values: List[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f"{statistics.median(values):7.1f} / {p90:6.1f}"


def import_cost_ms() -> Optional[float]:
    """Wall time of a fresh interpreter importing vif_qos.kernel.apply (a hotplug run pays it)."""
    code = "import vif_qos.kernel.apply"
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(HERE),
                            capture_output=True).returncode
        ms = (time.perf_counter() - t0) * 1000
        if rc != 0:
            return None
        best = ms if best is None else min(best, ms)
    return best


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="1,100,1000",
                        help="numbers of shaped vifs to probe at (default 1,100,1000)")
    parser.add_argument("--probe", type=int, default=10,
                        help="vifs applied/removed per probe (default 10)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="throughput measurements per configuration (default 3)")
    parser.add_argument("--window", type=float, default=2.0,
                        help="throughput window in seconds after 0.75 s warm-up (default 2)")
    parser.add_argument("--recipes", default="vif-qos,seed")
    parser.add_argument("--quick", action="store_true", help="--counts 1,10,100 --repeat 1")
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.counts, args.repeat = "1,10,100", 1
    if os.geteuid() != 0:
        print("bench_kernel: needs root (network namespaces)", file=sys.stderr)
        return 1
    counts = sorted({int(c) for c in args.counts.split(",")})
    if counts[0] < 1:
        parser.error("--counts must be >= 1")
    recipes = args.recipes.split(",")
    # vif-qos's lock/cache directory: a private one, not the host's /run/vif-qos.
    run_dir = tempfile.mkdtemp(prefix="vif-qos-bench-")
    os.environ["VIF_QOS_RUN_DIR"] = run_dir
    started = time.monotonic()
    baseline: Dict[str, List[float]] = {}
    try:
        with ExitStack() as stack:
            results = [bench_recipe(r, counts, args.probe, stack) for r in recipes]
            base = stack.enter_context(SimHost(prefix="vqb-"))
            configs = [("unshaped", base, base.add_guest(domid=1), baseline)]
            for r in results:
                for key, count in (("small", 1), ("big", counts[-1])):
                    host, guest = r.pop(key)
                    configs.append((f"{r['recipe']} {count} shaped", host, guest,
                                    r["throughput"].setdefault(count, {})))
            measure_throughput(configs, args.repeat, args.window)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    elapsed = time.monotonic() - started

    cmd = "sudo .venv/bin/python benchmarks/bench_kernel.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    print(f"\nvif-qos kernel benchmark: {platform.node()}, kernel {platform.release()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, run took "
          f"{elapsed:.0f} s")
    print(f"reproduce: {cmd.strip()}")
    for r in results:
        print(f"  {r['recipe']:8} = {r['what']}")
    cost = import_cost_ms() if "vif-qos" in recipes else None
    if cost is not None:
        print(f"  (a hotplug process also pays the import of vif_qos.kernel.apply: {cost:.0f} ms "
              "here, once per run)")
    width = 24
    print("\nper-vif time, ms (median / p90 of %d vifs)" % args.probe)
    print(f"{'':28}" + "".join(f"{r['recipe']:>{width}}" for r in results))
    for op in ("apply_ms", "remove_ms"):
        for count in counts:
            label = f"{op[:-3]} with {count} shaped"
            print(f"{label:28}" + "".join(f"{fmt_ms(r[op][count]):>{width}}" for r in results))
    for count in counts[1:]:
        label = f"mean apply filling to {count}"
        print(f"{label:28}" + "".join(
            f"{r['fill_ms'].get(count, float('nan')):>{width}.1f}" for r in results))
    print("\nbridge forwarding, one guest, iperf3 TCP IPv4, wire Mbit/s (best of %d; all,"
          " interleaved)" % args.repeat)
    print(f"{'':28}" + "".join(f"{r['recipe']:>{width}}" for r in results))
    def cell(vals: List[float]) -> str:
        return (f"{max(vals):.0f} (" + ",".join(f"{v:.0f}" for v in vals) + ")"
                if vals else "-")
    for direction in (OUTBOUND, INBOUND):
        label = f"{direction} unshaped"
        print(f"{label:28}{cell(baseline.get(direction, [])):>{width}}  (reference: a dom0 with no shaping)")
        for count in (1, counts[-1]):
            label = f"{direction} {count} shaped"
            print(f"{label:28}" + "".join(
                f"{cell(r['throughput'].get(count, {}).get(direction, [])):>{width}}"
                for r in results))
    if args.json:
        print(json.dumps({"unshaped": baseline, "recipes": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
