"""Numbers and names every layer shares, each defined once (the vocabulary, with
:mod:`vif_qos.errors` and :mod:`vif_qos.model`)."""

#: Largest value of the kernel's 32-bit fields (tc's rates in bytes/s, sizes in
#: bytes, times in ticks or microseconds; Xen's rate bytes and interval us).
U32_MAX = 2 ** 32 - 1

#: The Ethernet header (``ETH_HLEN``, include/uapi/linux/if_ether.h): a full
#: frame is the MTU plus these bytes (no FCS, as tc and the netdev count).
ETH_HLEN_BYTES = 14

#: The bridge of a vif whose vif line names none (libxl's default,
#: ``libxl__device_nic_setdefault`` in tools/libs/light/libxl_nic.c).
DEFAULT_BRIDGE = "xenbr0"

#: Minors of the shared HTB tree on an uplink: the root class ``:1``, the
#: default class ``:2`` (the qdisc's ``default 2``), and the first pool class
#: ``:0x10`` (pools take ``0x10 + i`` when free; leaves start at the policy's
#: ``classid_min``).
ROOT_MINOR = 1
DEFAULT_MINOR = 2
POOL_MINOR_BASE = 0x10
