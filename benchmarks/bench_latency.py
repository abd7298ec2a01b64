#!/usr/bin/env python3
"""Outbound latency under load, without and with vif-qos's leaf qdisc, in one run.

Not a test: it prints figures, it asserts nothing. Run as root from the checkout::

    sudo .venv/bin/python benchmarks/bench_latency.py [--rate 10mbit] [--flows 32]

One simulated dom0 (``vif_qos.sim.net``, GSO on at every sender), three guests:

* ``before``: the resolver's plan at ``--rate`` with the leaf qdisc taken out, so
  its HTB leaf queues in the kernel's default pfifo (the uplink's txqueuelen,
  1000 packets, each up to a 64 KiB GSO packet): vif-qos before issue 10;
* ``after``: the same plan with its bfifo leaf qdisc (rate x latency + 64 KiB);
* ``unshaped``: no shaping at all, one TCP flow each way, to show what the
  simulated dom0 itself carries with GSO on.

Per shaped guest: ping RTT (median ms) idle and while ``--flows`` TCP uploads run,
and the uploads' load on the shaped netdev as a share of the rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vif_qos.config.policy import check_policy_text  # noqa: E402
from vif_qos.core import units  # noqa: E402
from vif_qos.core.resolve import plan_vif  # noqa: E402
from vif_qos.model import VifFacts  # noqa: E402
from vif_qos.sim.dom0 import BFIFO_10GBIT_UPLINK_POLICY  # noqa: E402
from vif_qos.sim.net import INBOUND, OUTBOUND, SimHost  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", default="10mbit", help="the guests' rate (default 10mbit)")
    parser.add_argument("--flows", type=int, default=32, help="parallel TCP uploads (32)")
    parser.add_argument("--seconds", type=float, default=4.0, help="ping time under load")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_latency: needs root (network namespaces)", file=sys.stderr)
        return 1
    os.environ.setdefault("VIF_QOS_RUN_DIR", tempfile.mkdtemp(prefix="vif-qos-bench-"))
    from vif_qos.kernel.apply import apply_vif

    policy, problems = check_policy_text(BFIFO_10GBIT_UPLINK_POLICY, "bench_latency policy")
    assert policy is not None and not problems, problems
    rows, rate = [], 0
    with SimHost(prefix="vqb-lat-") as host:
        guests = {}
        for domid, name in ((71, "before"), (72, "after")):
            guest = host.add_guest(domid=domid, name=name)
            plan = plan_vif(VifFacts(vif=guest.vif, devid=0), policy,
                            (f"rate={args.rate}", "--rate"))
            rate = plan.outbound.rate_bits_per_s
            if name == "before":
                plan = dataclasses.replace(plan, outbound=dataclasses.replace(
                    plan.outbound, leaf_qdisc=None))
            with host.in_dom0():
                apply_vif(plan)
            guests[name] = (guest, plan)
        for name, (guest, plan) in guests.items():
            idle = host.rtt_under_load(guest, None, ping_s=1.0)
            loaded = host.rtt_under_load(guest, OUTBOUND, flows=args.flows,
                                         ping_s=args.seconds)
            leaf = plan.outbound.leaf_qdisc
            rows.append((name, "bfifo limit %d B" % leaf.limit_bytes if leaf else
                         "kernel default pfifo (1000 packets)", idle.median_ms,
                         loaded.median_ms, max(loaded.rtts_ms or [float("nan")]),
                         len(loaded.rtts_ms), loaded.sent,
                         loaded.load_bits_per_s / rate))
        unshaped = host.add_guest(domid=73, name="unshaped")
        capacity = {d: host.measure(unshaped, d) for d in (INBOUND, OUTBOUND)}
    print(f"\nvif-qos latency benchmark: {platform.node()}, kernel {platform.release()}")
    print(f"reproduce: sudo .venv/bin/python benchmarks/bench_latency.py --rate {args.rate} "
          f"--flows {args.flows}")
    print(f"\noutbound at {units.format_rate(rate)}, {args.flows} TCP uploads, GSO on; "
          "ping RTT internet host -> guest, ms")
    head = (f"{'guest':<8} {'leaf qdisc':<38} {'idle':>7} {'loaded':>9} {'max':>9} "
            f"{'replies':>8} {'load/rate':>12}")
    print(head)
    print("-" * len(head))
    for name, leaf, idle_ms, med, worst, got, sent, share in rows:
        print(f"{name:<8} {leaf:<38} {idle_ms:>7.3f} {med:>9.1f} {worst:>9.1f} "
              f"{got:>3}/{sent:<4} {share:>12.3f}")
    print("\nthe simulated dom0 unshaped, one TCP flow, GSO on (Gbit/s on the wire / goodput):")
    for d, m in capacity.items():
        print(f"  {d:<8} {m.wire_bits_per_s / 1e9:6.2f} / {m.goodput_bits_per_s / 1e9:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
