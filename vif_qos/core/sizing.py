"""What the kernel and tc count when vif-qos sizes queues and buckets: one GSO packet
as tc counts it, and the slowest rate a token bucket can hold one frame at. Pure;
used by the plans (:mod:`vif_qos.core.resolve`) and the policy file's checks
(:mod:`vif_qos.config.policy`).
"""

from __future__ import annotations

from typing import Optional

from vif_qos.core.settings import KERNEL_MAX_BUCKET_US

#: The largest GSO packet a netdev takes by default, bytes (GSO_LEGACY_MAX_SIZE,
#: include/linux/netdevice.h; netback's vif and a veth keep it).
GSO_MAX_BYTES = 65536
#: Ethernet + IPv6 + TCP-with-timestamps headers, bytes: what tc adds per further
#: segment of a GSO packet (net/core/dev.c ``qdisc_pkt_len_init``), worst case.
GSO_SEGMENT_HEADER_BYTES = 14 + 40 + 32


def gso_packet_wire_bytes(mtu_bytes: int) -> int:
    """One 64 KiB GSO packet as tc counts it (``qdisc_pkt_len``), at ``mtu_bytes``.

    Segments: ceil((64 KiB - headers) / MSS) with MSS = mtu - 72 (IPv6 40 + TCP
    with timestamps 32); each segment after the first adds 86 header bytes
    (Ethernet 14 + 72). 69406 bytes at mtu 1500. Pure; ``mtu_bytes`` > 72.
    """
    mss = mtu_bytes - (GSO_SEGMENT_HEADER_BYTES - 14)
    segments = -(-(GSO_MAX_BYTES - GSO_SEGMENT_HEADER_BYTES) // mss)
    return GSO_MAX_BYTES + (segments - 1) * GSO_SEGMENT_HEADER_BYTES


def seconds_text(size_bytes: int, rate_bits_per_s: int) -> str:
    """How long ``size_bytes`` take at ``rate_bits_per_s``, as ``"0.0121 s"``."""
    return f"{size_bytes * 8 / rate_bits_per_s:.4g} s"


def rate_floor_problem(rate_bits_per_s: int, frame_bytes: int) -> Optional[str]:
    """Why ``rate_bits_per_s`` is too slow for a token bucket, or None when it is not.

    One full frame (``frame_bytes``: MTU plus the Ethernet header) must pass within
    the longest time the kernel keeps in a bucket, 4.29 s (bucket times are u32
    nanoseconds: net/sched/sch_tbf.c, ``PSCHED_TICKS2NS``); below about 2.9 kbit/s
    at MTU 1500 it does not. Used for every rate: vifs' and the shared classes'.
    """
    if frame_bytes * 8 * 1_000_000 > rate_bits_per_s * KERNEL_MAX_BUCKET_US:
        return (f"one full frame ({frame_bytes} bytes) takes "
                f"{seconds_text(frame_bytes, rate_bits_per_s)} at this rate, beyond the "
                f"4.29 s the kernel can keep in a bucket (sch_tbf.c)")
    return None
