"""TBF (``sch_tbf``) over rtnetlink: a vif's root qdisc, made, changed in place,
read back. Bits/s and bytes in, the kernel's bytes/s and psched ticks on the
wire; the layout beside its attribute numbers (``include/uapi/linux/pkt_sched.h``).

Kernel facts relied on (``net/sched/sch_tbf.c``, ``include/net/pkt_sched.h``):

- a rate above 2**32-1 bytes/s goes in ``TCA_TBF_RATE64``/``TCA_TBF_PRATE64``,
  the 32-bit ``tc_ratespec.rate`` carrying ``min(rate, 2**32-1)``;
- ``buffer``/``mtu`` are psched ticks; the bucket sizes also travel in bytes
  (``TCA_TBF_BURST``, ``TCA_TBF_PBURST``) and then the tick fields are ignored.
"""

from __future__ import annotations

from typing import Optional

from vif_qos.constants import U32_MAX
from vif_qos.errors import KernelError
from vif_qos.kernel import netlink as nl
from vif_qos.kernel.netlink import TC_H_ROOT, Layout, ratespec_layout
from vif_qos.kernel.tc import rate_bytes, size_to_ticks

#: ``TCA_TBF_*`` attribute numbers (pkt_sched.h).
TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_PRATE64 = 1, 4, 5
TCA_TBF_BURST, TCA_TBF_PBURST = 6, 7

#: ``struct tc_tbf_qopt`` (``TCA_TBF_PARMS``).
TBF_PARMS = Layout(*ratespec_layout("rate"), *ratespec_layout("peak"), ("limit", "I"),
                   ("buffer", "I"), ("mtu", "I"))


def check_params(*, rate_bits_per_s: int, limit_bytes: int,
                 peak_bits_per_s: Optional[int], minburst_bytes: Optional[int],
                 what: str) -> None:
    """Refuse, with a clear KernelError, TBF parameters the kernel would refuse
    with a bare EINVAL or would accept and then drop everything with."""
    rate = rate_bytes(rate_bits_per_s, what)
    if int(limit_bytes) <= 0:
        # net/sched/sch_tbf.c creates no child queue for limit 0: every packet
        # would be dropped.
        raise KernelError(f"{what}: a TBF needs a queue limit above 0 bytes "
                          f"(got {limit_bytes})")
    if peak_bits_per_s and not minburst_bytes:
        # sch_tbf.c refuses a peak bucket of 0 bytes (EINVAL), tc asks for mtu.
        raise KernelError(f"{what}: a peakrate needs a minburst (the peak bucket, "
                          "at least the MTU plus the link header)")
    if peak_bits_per_s and peak_bits_per_s // 8 <= rate:
        raise KernelError(f"{what}: peakrate {peak_bits_per_s} bit/s must be above "
                          f"the rate {rate_bits_per_s} bit/s (net/sched/sch_tbf.c)")


def replace(ipr, index: int, handle: int, *, rate_bits_per_s: int,
            burst_bytes: int, limit_bytes: int, peak_bits_per_s: Optional[int],
            minburst_bytes: Optional[int], what: str, mode: str = "replace") -> None:
    """Create or replace the root qdisc of ``index`` with a TBF ``handle``.

    rate/peakrate in bits/s, burst/minburst/limit in bytes (``TCA_TBF_BURST``,
    ``TCA_TBF_PBURST`` carry the byte sizes; the tick fields are filled too).
    ``mode="change"``: see :func:`change`.
    """
    rate = rate_bytes(rate_bits_per_s, what)
    check_params(rate_bits_per_s=rate_bits_per_s, limit_bytes=limit_bytes,
                 peak_bits_per_s=peak_bits_per_s, minburst_bytes=minburst_bytes,
                 what=what)
    parms = nl.ratespec("rate", rate)
    if peak_bits_per_s:
        peak = rate_bytes(peak_bits_per_s, what + " peakrate")
        parms.update(nl.ratespec("peak", peak))
        mtu_ticks = size_to_ticks(minburst_bytes or 0, peak, what + " minburst")
    else:  # no peak bucket: the peak ratespec stays all 0
        peak = 0
        mtu_ticks = 0
    attrs = [(TCA_TBF_PARMS, TBF_PARMS.pack(
        **parms, limit=int(limit_bytes), mtu=mtu_ticks,
        buffer=size_to_ticks(burst_bytes, rate, what + " burst")))]
    if rate > U32_MAX:
        attrs.append((TCA_TBF_RATE64, nl.u64(rate)))
    if peak > U32_MAX:
        attrs.append((TCA_TBF_PRATE64, nl.u64(peak)))
    attrs.append((TCA_TBF_BURST, nl.u32(burst_bytes)))
    if peak:
        attrs.append((TCA_TBF_PBURST, nl.u32(minburst_bytes or 0)))
    flags = nl.FLAGS_CHANGE if mode == "change" else nl.FLAGS_REPLACE
    nl.tc_request(ipr, nl.RTM_NEWQDISC, flags, index=index, handle=handle,
                  parent=TC_H_ROOT, kind="tbf", options=nl.encode_attrs(attrs), what=what)


def change(ipr, index: int, handle: int, *, rate_bits_per_s: int,
           burst_bytes: int, limit_bytes: int, peak_bits_per_s: Optional[int],
           minburst_bytes: Optional[int], what: str) -> None:
    """Change the existing TBF root qdisc ``handle`` of ``index`` in place.

    RTM_NEWQDISC without NLM_F_CREATE: ``tc_modify_qdisc`` finds the root qdisc by
    its handle and calls ``tbf_change`` (net/sched/sch_api.c, sch_tbf.c), which
    swaps the parameters under the qdisc's lock and keeps the queue (its bfifo is
    resized, not replaced, when only the limit changes); the qdisc is never
    deleted, so no frame passes unshaped. Never creates one: the kernel refuses
    (ENOENT/EINVAL) when the TBF is gone. Units as :func:`replace`.
    """
    replace(ipr, index, handle, rate_bits_per_s=rate_bits_per_s,
            burst_bytes=burst_bytes, limit_bytes=limit_bytes,
            peak_bits_per_s=peak_bits_per_s, minburst_bytes=minburst_bytes,
            what=what, mode="change")


def qdisc_fields(msg: nl.Message) -> dict:
    """The :class:`~vif_qos.kernel.qdisc.QdiscInfo` fields of a TBF: rates in
    bytes/s (the 64-bit attributes when present), limit in bytes, buffer and mtu
    in psched ticks; none without ``TCA_TBF_PARMS``."""
    attrs = msg.nested(nl.TCA_OPTIONS)
    if TCA_TBF_PARMS not in attrs:
        return {}
    q = TBF_PARMS.unpack(attrs[TCA_TBF_PARMS])
    rate = nl.attr_u64(attrs, TCA_TBF_RATE64) or q["rate_rate"]
    peak = nl.attr_u64(attrs, TCA_TBF_PRATE64) or q["peak_rate"]
    return {"rate_bytes_per_s": rate, "peak_bytes_per_s": peak or None,
            "limit_bytes": q["limit"], "buffer_ticks": q["buffer"], "mtu_ticks": q["mtu"]}
