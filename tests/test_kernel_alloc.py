"""The host lock, the allocators, the leaf allocation fallback, and the narrow
pyroute2 import."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from helpers import UPLINK, vif_plan
from vif_qos.sim.net import in_netns, run
from helpers import htb_classes

from vif_qos.kernel import alloc
from vif_qos.kernel import apply as A
from vif_qos.errors import KernelError

pytestmark = pytest.mark.usefixtures("run_dir")

def test_lock_excludes_threads_and_removes_its_file(run_dir):
    inside_lock = []
    overlaps = []

    def worker():
        with alloc.host_lock():
            inside_lock.append(1)
            if len(inside_lock) > 1:
                overlaps.append(len(inside_lock))
            time.sleep(0.01)
            inside_lock.pop()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert not (run_dir / "lock").exists()   # released as locking.sh does: rm


def test_lock_is_reentrant_in_one_thread():
    with alloc.host_lock():
        with alloc.host_lock():
            pass
        assert (alloc.run_dir() and os.path.exists(os.path.join(alloc.run_dir(), "lock")))


def test_lock_excludes_another_process(run_dir):
    child = ("import os, time; os.environ['VIF_QOS_RUN_DIR'] = %r\n"
             "from vif_qos.kernel import alloc\n"
             "t = time.monotonic()\n"
             "with alloc.host_lock(): print(time.monotonic() - t)\n") % str(run_dir)
    with alloc.host_lock():
        proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                                text=True)
        time.sleep(0.5)
    waited = float(proc.communicate(timeout=30)[0])
    assert waited >= 0.3


@pytest.mark.parametrize("mask,shift", [(0x0FFF0000, 16), (0x3F00, 8), (0x1, 0),
                                        (0x80000000, 31)])
def test_mark_shift(mask, shift):
    assert alloc.mark_shift(mask) == shift


@pytest.mark.parametrize("mask", [0, 0x0F0F, 0x1_0000_0000, -1])
def test_mark_mask_must_be_one_run(mask):
    with pytest.raises(KernelError, match="mark mask"):
        alloc.mark_shift(mask)


def test_allocators_take_the_lowest_free_value_and_refuse_when_full():
    assert alloc.allocate_mark([], 0x3F00) == 0x100
    assert alloc.allocate_mark([0x100, 0x300], 0x3F00) == 0x200
    assert alloc.allocate_minor([0x100, 0x101], 0x100, 0x102) == 0x102
    with pytest.raises(KernelError, match="no free leaf classid left in 0x100..0x101"):
        alloc.allocate_minor([0x100, 0x101], 0x100, 0x101)
    with pytest.raises(KernelError, match="no free mark value left in mask 0x3 "):
        alloc.allocate_mark([1, 2, 3], 0x3)


@pytest.mark.kernel
def test_a_leftover_leaf_in_the_way_is_removed_by_the_next_online(host, caplog):
    d = host
    a, b = d.add_guest(1).vif, d.add_guest(2).vif
    with in_netns(d.dom0):
        assert A.apply_vif(vif_plan(a)).classid == 0x7A510100
    # A class with the next minor and no nftables entry (an apply killed midway).
    run("tc", "class", "add", "dev", UPLINK, "parent", "7a51:1", "classid", "7a51:101",
        "htb", "rate", "3mbit", ns=d.dom0)
    # Nothing classifies into an unrecorded leaf (entries are written before
    # their leaf): the next online removes the one in its way.
    with in_netns(d.dom0):
        assert A.apply_vif(vif_plan(b)).classid == 0x7A510101
    assert htb_classes(d.dom0, UPLINK)["7a51:101"]["rate"] == "1Mbit"  # b's own
    assert "existed without an entry" in caplog.text


def test_narrow_pyroute2_import_keeps_the_full_package_usable():
    code = ("from vif_qos.kernel import tc as tcadapter\n"
            "tcadapter.open_ipr().close()\n"
            "import sys\n"
            "assert 'pyroute2.ndb.main' not in sys.modules\n"
            "from pyroute2 import IPRoute, NDB\n"
            "import pyroute2\n"
            "assert pyroute2.IPRoute is IPRoute\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
