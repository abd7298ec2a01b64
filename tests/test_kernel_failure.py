"""Every step of an apply failing in turn leaves nothing of that apply, and other
vifs untouched: the kernel state read back (tc + nft, counters stripped) is
exactly what it was before the failed apply."""

from __future__ import annotations

import re

import pytest

from helpers import UPLINK, cls, uplink_plan, vif_plan
from vif_qos.sim.net import in_netns, run

from vif_qos.kernel import apply as A
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import sched_htb, sched_tbf
from vif_qos.errors import KernelError

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("run_dir")]


def snapshot(ns: str) -> str:
    """qdiscs of every netdev, classes of the uplink, the whole nft ruleset."""
    text = "\n".join([
        run("tc", "qdisc", "show", ns=ns).stdout,
        run("tc", "class", "show", "dev", UPLINK, ns=ns).stdout,
        run("nft", "list", "ruleset", ns=ns).stdout,
    ])
    text = re.sub(r"direct_packets_stat \d+ ", "", text)
    return re.sub(r"counter packets \d+ bytes \d+", "counter", text)


class Injected(Exception):
    pass


def fail_on_call(monkeypatch, module, name: str, nth: int) -> list:
    """Make ``module.name`` raise KernelError on its ``nth`` call (1-based)."""
    real = getattr(module, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(name)
        if len(calls) == nth:
            raise KernelError(f"injected failure in {name} call {nth}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


POOLS = (cls("overage", 10 ** 8),)

#: (function, which call fails) for an apply on an uplink without our tree:
#: qdisc; classes root, default, pool, leaf; the TBF; the nft transaction.
FIRST_USE_STEPS = [
    (sched_htb, "add_qdisc", 1),
    (sched_htb, "set_class", 1),
    (sched_htb, "set_class", 2),
    (sched_htb, "set_class", 3),
    (sched_htb, "set_class", 4),
    (sched_tbf, "replace", 1),
    (nftadapter, "run", 1),
]


@pytest.mark.parametrize("module,name,nth", FIRST_USE_STEPS,
                         ids=[f"{n}#{k}" for _m, n, k in FIRST_USE_STEPS])
def test_failure_on_first_use_leaves_nothing(host, monkeypatch, module, name, nth):
    d = host
    vif = d.add_guest(1).vif
    before = snapshot(d.dom0)
    calls = fail_on_call(monkeypatch, module, name, nth)
    with in_netns(d.dom0):
        with pytest.raises(KernelError, match="injected"):
            A.apply_vif(vif_plan(vif, pool="overage", uplink=uplink_plan(pools=POOLS)))
    assert len(calls) == nth
    assert snapshot(d.dom0) == before
    monkeypatch.undo()
    with in_netns(d.dom0):  # and a retry then works
        assert A.apply_vif(vif_plan(vif, pool="overage",
                                    uplink=uplink_plan(pools=POOLS))).classid == 0x7A510100


#: With another vif already shaped: the pool change, the leaf, the TBF, nft.
SHARED_STEPS = [
    (sched_htb, "set_class", 1),   # the pool class change
    (sched_htb, "set_class", 2),   # the leaf
    (sched_tbf, "replace", 1),
    (nftadapter, "run", 1),
]


@pytest.mark.parametrize("module,name,nth", SHARED_STEPS,
                         ids=[f"{n}#{k}" for _m, n, k in SHARED_STEPS])
def test_failure_next_to_another_vif_leaves_it_and_the_tree_untouched(
        host, monkeypatch, module, name, nth):
    d = host
    other, vif = d.add_guest(1).vif, d.add_guest(2).vif
    with in_netns(d.dom0):
        A.apply_vif(vif_plan(other, pool="overage", uplink=uplink_plan(pools=POOLS)))
    before = snapshot(d.dom0)
    calls = fail_on_call(monkeypatch, module, name, nth)
    changed_pool = uplink_plan(pools=(cls("overage", 2 * 10 ** 8),))
    with in_netns(d.dom0):
        with pytest.raises(KernelError, match="injected"):
            A.apply_vif(vif_plan(vif, pool="overage", uplink=changed_pool))
    assert len(calls) >= nth  # (undoing the pool change calls it once more)
    assert snapshot(d.dom0) == before


@pytest.mark.parametrize("kw,message", [
    (dict(in_rate=10 ** 7, peak=10 ** 7, minburst=1600), "peakrate 10000000 bit/s must be above"),
    (dict(in_rate=10 ** 7, peak=2 * 10 ** 7, minburst=None), "a peakrate needs a minburst"),
    (dict(in_rate=10 ** 7, limit=-1), "a TBF needs a queue limit above 0"),
])
def test_tbf_parameters_the_kernel_would_refuse_undo_the_leaf_and_the_tree(host, kw, message):
    d = host
    vif = d.add_guest(1).vif
    before = snapshot(d.dom0)
    with in_netns(d.dom0):
        with pytest.raises(KernelError, match=f"tbf root qdisc 7a51:0 on vif1.0: {message}"):
            A.apply_vif(vif_plan(vif, **kw))
    assert snapshot(d.dom0) == before


def test_kernel_refusing_the_tbf_undoes_the_leaf_and_the_tree(host, monkeypatch):
    """With vif-qos's own check switched off, the kernel itself refuses a
    peakrate not above the rate (net/sched/sch_tbf.c, EINVAL): the error names
    the object and the kernel's message, and the leaf and tree are undone."""
    d = host
    vif = d.add_guest(1).vif
    before = snapshot(d.dom0)
    monkeypatch.setattr(sched_tbf, "check_params", lambda **kw: None)
    with in_netns(d.dom0):
        with pytest.raises(KernelError, match=r"tbf root qdisc 7a51:0 on vif1.0: the "
                                              r"kernel refused: Invalid argument"):
            A.apply_vif(vif_plan(vif, in_rate=10 ** 7, peak=10 ** 7, minburst=1600))
    assert snapshot(d.dom0) == before


def test_nftables_refusing_the_transaction_undoes_tc(host):
    d = host
    vif = d.add_guest(1).vif
    # Someone else's table of the same name whose map has another key type.
    run("nft", "-f", "-", ns=d.dom0, input="""
table bridge vif_qos {
  map vifs {
    type ipv4_addr : verdict
  }
}
""")
    before = snapshot(d.dom0)
    with in_netns(d.dom0):
        with pytest.raises(KernelError, match="nftables entry of vif1.0.*refused"):
            A.apply_vif(vif_plan(vif))
    assert snapshot(d.dom0) == before


def test_a_burst_too_large_for_the_tick_field_is_refused_before_the_kernel(host):
    d = host
    vif = d.add_guest(1).vif
    before = snapshot(d.dom0)
    with in_netns(d.dom0):
        with pytest.raises(KernelError, match="more than 274 s of traffic"):
            A.apply_vif(vif_plan(vif, out_rate=8, in_rate=None, burst=1600))
    assert snapshot(d.dom0) == before


def test_a_missing_vif_netdev_is_refused(host):
    d = host
    before = snapshot(d.dom0)
    with in_netns(d.dom0):
        with pytest.raises(KernelError, match="vif vif9.0: no such netdev"):
            A.apply_vif(vif_plan("vif9.0"))
    assert snapshot(d.dom0) == before
