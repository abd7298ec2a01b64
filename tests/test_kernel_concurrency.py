"""C07: many guests at once. 50 applies from 50 threads (and applies from separate
processes) at the same moment get 50 distinct leaf classes with their own rates
under one root, distinct marks, and no error."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from helpers import BRIDGE, UPLINK, vif_plan
from vif_qos.sim.net import in_netns, run
from helpers import htb_classes

from vif_qos.kernel import apply as A

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("run_dir")]

N = 50
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def add_vifs(ns: str, domids) -> list:
    """Many vif veths on the bridge at once (``ip -batch``)."""
    lines = []
    for i in domids:
        lines += [f"link add vif{i}.0 type veth peer name g{i}",
                  f"link set vif{i}.0 master {BRIDGE}",
                  f"link set vif{i}.0 up", f"link set g{i} up"]
    run("ip", "-batch", "-", ns=ns, input="\n".join(lines) + "\n")
    return [f"vif{i}.0" for i in domids]


def rate_of(domid: int) -> int:
    return (domid + 1) * 10 ** 6


def check_all_distinct(ns: str, applied: list, domids) -> None:
    assert len({a.classid for a in applied}) == len(applied)
    assert len({a.mark for a in applied}) == len(applied)
    classes = htb_classes(ns, UPLINK)
    for domid in domids:
        mine = [a for a in applied if a.vif == f"vif{domid}.0"]
        assert len(mine) == 1
        c = classes[f"{mine[0].classid >> 16:x}:{mine[0].classid & 0xFFFF:x}"]
        assert c["rate"] == f"{rate_of(domid) // 10 ** 6}Mbit", (domid, c)
        assert c["parent"] == "7a51:1"
    roots = [line for line in run("tc", "qdisc", "show", "dev", UPLINK, ns=ns)
             .stdout.splitlines() if " root " in line]
    assert len(roots) == 1 and roots[0].startswith("qdisc htb 7a51:")


def test_c07_50_threads_apply_at_once(host):
    d = host
    domids = range(1, N + 1)
    vifs = add_vifs(d.dom0, domids)
    barrier = threading.Barrier(N)
    errors, results = [], []

    def worker(domid, vif):
        try:
            with in_netns(d.dom0):
                barrier.wait()
                results.append(A.apply_vif(vif_plan(vif, out_rate=rate_of(domid),
                                                    in_rate=rate_of(domid))))
        except Exception as err:  # collected and asserted below
            errors.append(f"{vif}: {err!r}")

    threads = [threading.Thread(target=worker, args=(i, v)) for i, v in zip(domids, vifs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(results) == N
    with in_netns(d.dom0):
        listed = A.list_applied()
    assert sorted(a.vif for a in listed) == sorted(vifs)
    check_all_distinct(d.dom0, listed, domids)

    # Half of them leave while new ones arrive, all at once.
    leaving = vifs[: N // 2]
    new_ids = range(N + 1, N + 1 + N // 2)
    new_vifs = add_vifs(d.dom0, new_ids)
    barrier = threading.Barrier(len(leaving) + len(new_vifs))
    errors.clear()

    def remover(vif):
        try:
            with in_netns(d.dom0):
                barrier.wait()
                assert A.remove_vif(vif) is True
        except Exception as err:
            errors.append(f"remove {vif}: {err!r}")

    threads = [threading.Thread(target=remover, args=(v,)) for v in leaving]
    threads += [threading.Thread(target=worker, args=(i, v)) for i, v in zip(new_ids, new_vifs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with in_netns(d.dom0):
        listed = A.list_applied()
    stay_ids = list(range(N // 2 + 1, N + 1)) + list(new_ids)
    assert sorted(a.vif for a in listed) == sorted(f"vif{i}.0" for i in stay_ids)
    check_all_distinct(d.dom0, listed, stay_ids)
    leaves = [c for c in htb_classes(d.dom0, UPLINK) if int(c.split(":")[1], 16) >= 0x100]
    assert len(leaves) == len(stay_ids)


CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from helpers import vif_plan
from vif_qos.kernel.apply import apply_vif
vif, rate = sys.argv[2], int(sys.argv[3])
a = apply_vif(vif_plan(vif, out_rate=rate, in_rate=rate))
print(a.classid, a.mark)
"""


def test_c07_separate_processes_apply_at_once(host):
    d = host
    domids = range(1, 13)
    vifs = add_vifs(d.dom0, domids)
    procs = [subprocess.Popen(["ip", "netns", "exec", d.dom0, sys.executable, "-c", CHILD,
                               TESTS_DIR, vif, str(rate_of(i))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, vif in zip(domids, vifs)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), outs
    with in_netns(d.dom0):
        listed = A.list_applied()
    check_all_distinct(d.dom0, listed, domids)
