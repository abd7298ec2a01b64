"""vif_qos.kernel.netlink: the errno triage, the layouts and the reply decoder.

The triage is checked with pyroute2's own NetlinkError (what its IPRoute raises);
the decoder against the kernel's own replies inside a namespace made here.
"""

from __future__ import annotations

import errno

import pytest

from vif_qos.errors import KernelError
from vif_qos.kernel import netlink as nl
from vif_qos.kernel import qdisc, sched_bfifo, sched_fq_codel, sched_htb, sched_tbf
from vif_qos.kernel import tc as tcadapter
from vif_qos.sim.net import in_netns, run


def netlink_error(code: int, text: str = "kernel says no"):
    from pyroute2.netlink.exceptions import NetlinkError
    return NetlinkError(code, text)


def failing(err):
    def fn():
        raise err
    return fn


def test_call_returns_the_value_given_for_a_tolerated_errno():
    assert nl.call("class 7a51:100", failing(netlink_error(errno.ENOENT)),
                   {errno.ENOENT: "gone"}) == "gone"


def test_call_turns_any_other_errno_into_a_kernel_error_naming_the_object():
    with pytest.raises(KernelError) as info:
        nl.call("class 7a51:100 of ifindex 4", failing(netlink_error(errno.EPERM)),
                {errno.ENOENT: None})
    assert str(info.value).startswith("class 7a51:100 of ifindex 4: the kernel refused: ")
    assert "errno 1" in str(info.value) and "kernel says no" in str(info.value)
    assert info.value.errno == errno.EPERM


def test_a_kernel_error_of_our_own_checks_carries_no_errno():
    with pytest.raises(KernelError, match="below 8 bit/s") as info:
        tcadapter.rate_bytes(7, "class 7a51:100")
    assert info.value.errno is None
    assert KernelError("refused", errno=errno.EEXIST).errno == errno.EEXIST


def test_call_lets_an_error_without_errno_through_unchanged():
    with pytest.raises(ZeroDivisionError):
        nl.call("anything", lambda: 1 // 0, {errno.ENOENT: None})


class RefusingIPRoute:
    """An IPRoute whose link lookups fail as the kernel would with ``code``."""

    def __init__(self, code: int):
        self.code = code

    def link(self, *args, **kwargs):
        raise netlink_error(self.code)


def test_get_link_by_index_names_the_ifindex_instead_of_a_raw_netlink_error():
    with pytest.raises(KernelError, match=r"^link of ifindex 42: the kernel refused: "):
        tcadapter.get_link_by_index(RefusingIPRoute(errno.EPERM), 42)
    assert tcadapter.get_link_by_index(RefusingIPRoute(errno.ENODEV), 42) is None


def test_layouts_pack_and_unpack_the_same_fields():
    values = dict(nl.ratespec("rate", 5 * 10 ** 9), buffer=7, cbuffer=8, quantum=1514)
    assert values["rate_rate"] == 2 ** 32 - 1  # the full rate goes in TCA_HTB_RATE64
    back = sched_htb.HTB_PARMS.unpack(sched_htb.HTB_PARMS.pack(**values))
    assert {k: back[k] for k in values} == values
    # sizeof in the kernel
    assert sched_htb.HTB_PARMS.size == 44 and sched_tbf.TBF_PARMS.size == 36
    with pytest.raises(TypeError):
        sched_htb.HTB_PARMS.pack(rate=1)


def test_a_message_decodes_to_what_was_encoded():
    data = nl.encode_message(nl.RTM_NEWQDISC, nl.FLAGS_ADD, 9,
                             nl.TCMSG.pack(index=3, handle=0x7A510000, parent=nl.TC_H_ROOT),
                             [(nl.TCA_KIND, nl.asciiz("tbf")),
                              (nl.TCA_OPTIONS, nl.encode_attrs([(sched_tbf.TCA_TBF_BURST,
                                                                 nl.u32(3000))]))])
    msg = nl.decode(data)
    assert (msg.type, msg.flags, msg.error) == (nl.RTM_NEWQDISC, nl.FLAGS_ADD, None)
    assert (msg.get("index"), msg.get("handle"), msg.get("parent")) == (
        3, 0x7A510000, nl.TC_H_ROOT)
    assert msg.attr_str(nl.TCA_KIND) == "tbf"
    assert msg.nested(nl.TCA_OPTIONS) == {sched_tbf.TCA_TBF_BURST: nl.u32(3000)}



def qdisc_message(kind: str, options: bytes) -> nl.Message:
    """A qdisc as the kernel dumps it: ``kind`` with ``options`` as TCA_OPTIONS."""
    return nl.decode(nl.encode_message(
        nl.RTM_NEWQDISC, 0, 0, nl.TCMSG.pack(index=3, handle=0x7A510000,
                                             parent=nl.TC_H_ROOT),
        [(nl.TCA_KIND, nl.asciiz(kind)), (nl.TCA_OPTIONS, options)]))


@pytest.mark.parametrize("kind, options, fields", [
    ("tbf", nl.encode_attrs([
        (sched_tbf.TCA_TBF_PARMS, sched_tbf.TBF_PARMS.pack(
            **nl.ratespec("rate", 5 * 10 ** 9), limit=3000, buffer=7, mtu=0)),
        (sched_tbf.TCA_TBF_RATE64, nl.u64(5 * 10 ** 9))]),
     dict(rate_bytes_per_s=5 * 10 ** 9, peak_bytes_per_s=None, limit_bytes=3000,
          buffer_ticks=7)),
    ("htb", nl.encode_attrs([(sched_htb.TCA_HTB_INIT, sched_htb.HTB_GLOB.pack(
        version=3, rate2quantum=10, defcls=2, direct_pkts=9))]),
     dict(default_minor=2, direct_packets=9, rate_bytes_per_s=None)),
    ("bfifo", sched_bfifo.options(128_036), dict(limit_bytes=128_036)),
    ("fq_codel", sched_fq_codel.options(5000, 100_000, 1514),
     dict(target_us=5000, interval_us=100_000, limit_bytes=None)),
    ("pfifo_fast", bytes(20), dict(limit_bytes=None, default_minor=None, target_us=None)),
])
def test_each_kind_reads_back_its_own_options_through_the_table(kind, options, fields):
    """qdisc.KINDS sends each kind's options to its module (a 64-bit TBF rate
    from TCA_TBF_RATE64, the u32 field holding 2**32-1); a kind not in it is read
    with its kind and handles only."""
    info = qdisc._qdisc_info(qdisc_message(kind, options))
    assert (info.kind, info.index, info.handle) == (kind, 3, 0x7A510000)
    assert {name: getattr(info, name) for name in fields} == fields
    assert (kind in qdisc.KINDS) == (kind != "pfifo_fast")


def test_a_batch_of_notifications_decodes_by_protocol():
    """``vif-qos serve``'s wake-ups: rtnetlink's tcmsg, nfnetlink's nfgenmsg, one recv
    holding several messages; a length that does not fit is not understood."""
    deltable = nl.NFNL_SUBSYS_NFTABLES << 8 | nl.NFT_MSG_DELTABLE
    nft = nl.encode_message(deltable, 0, 1, nl.NFGENMSG.pack(family=nl.NFPROTO_BRIDGE),
                            [(nl.NFTA_TABLE_NAME, nl.asciiz("vif_qos"))])
    short = nl.encode_message(deltable, 0, 2, b"\x07")  # body shorter than nfgenmsg
    msgs = nl.decode_all(nft + short, nl.NETLINK_NETFILTER)
    assert [(m.type, m.fixed.get("family")) for m in msgs] == [
        (deltable, nl.NFPROTO_BRIDGE), (deltable, None)]
    assert msgs[0].attr_str(nl.NFTA_TABLE_NAME) == "vif_qos" and msgs[1].attrs == {}
    qdisc = nl.encode_message(nl.RTM_DELQDISC, 0, 3, nl.TCMSG.pack(index=5, handle=1 << 16))
    assert [m.get("index") for m in nl.decode_all(qdisc * 2)] == [5, 5]
    assert nl.decode_all(b"") == []
    with pytest.raises(ValueError):
        nl.decode_all(qdisc[:-4])
    with pytest.raises(ValueError):
        nl.decode_all(b"\x04\0\0\0" + qdisc[4:])  # shorter than its own header


@pytest.mark.kernel
def test_the_kernel_refusal_names_the_object_and_a_gone_object_is_tolerated(namespaces):
    ns = namespaces.make("nl")
    run("ip", "link", "add", "nl-dummy", "type", "veth", "peer", "name", "nl-peer", ns=ns)
    with in_netns(ns):
        ipr = tcadapter.open_ipr()
        try:
            link = tcadapter.get_link(ipr, "nl-dummy")
            assert tcadapter.get_link_by_index(ipr, link.index) == link
            assert tcadapter.get_link_by_index(ipr, 999_999) is None
            assert tcadapter.del_class(ipr, link.index, 0x7A510100, "class 7a51:100") is False
            with pytest.raises(KernelError, match=r"^class 7a51:100 of nl-dummy: "):
                # no HTB qdisc to hang it under: the kernel refuses (ENOENT/EINVAL)
                sched_htb.set_class(ipr, link.index, 0x7A510100, 0x7A510001,
                                        rate_bits_per_s=10 ** 6, ceil_bits_per_s=10 ** 6,
                                        burst_bytes=1600, cburst_bytes=1600,
                                        quantum_bytes=1514, mode="add",
                                        what="class 7a51:100 of nl-dummy")
        finally:
            ipr.close()
