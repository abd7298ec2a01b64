"""``vif-qos record``: one sample of every running vif and every uplink into the usage
database (:mod:`vif_qos.usage.store`), then retention and auto-overage.

What one run reads (a reader of the kernel: no host lock, nothing changed there):

- the vifs whose netdev exists and their guests from xenstore
  (:func:`vif_qos.xen.inventory.running_vifs`: an HVM guest's ``<vif>-emu`` twin
  too; whether or not their ``online`` finished), named as their ``online`` named
  them; a backend whose facts are bad is not recorded (:attr:`Snapshot.skipped`);
- each vif netdev's 64-bit counters (``IFLA_STATS64``): ``tx`` is the guest's *in*,
  ``rx`` its *out*; the TBF on the vif (drops/overlimits *in*) and the vif's HTB leaf on
  its uplink (drops/overlimits *out*), found through our nftables table;
- each uplink our table names: ``rx`` *in* (from the wire), ``tx`` *out*.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from vif_qos.kernel import counters as countersmod
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import tc as tcadapter
from vif_qos.usage.store import Reading, SeriesKey, UsageStore
from vif_qos.xen import inventory
from vif_qos.xen.xenstore import Xenstore

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def boot_clock() -> Tuple[str, float]:
    """(boot id, ``CLOCK_BOOTTIME`` seconds): a clock that never steps within a boot."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as fh:
            boot_id = fh.read().strip()
    except OSError:
        boot_id = ""
    return boot_id, time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class GuestVif:
    """One sampled guest port, with what ``metrics`` shows beside its counters."""

    reading: Reading
    vif: str
    domid: int
    in_rate_bits_per_s: Optional[int] = None
    out_rate_bits_per_s: Optional[int] = None
    out_ceil_bits_per_s: Optional[int] = None


@dataclass
class Snapshot:
    """One ``record`` run's readings: ``wall_s`` (unix s), the boot clock, the guests'
    ports and the uplinks; ``skipped``: one line per vif backend not recorded."""

    wall_s: float
    boot_id: str
    uptime_s: float
    guests: List[GuestVif] = field(default_factory=list)
    uplinks: List[Reading] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)

    @property
    def readings(self) -> List[Reading]:
        return [g.reading for g in self.guests] + list(self.uplinks)


def take_snapshot(xs=None, clock: Callable[[], float] = time.time) -> Snapshot:
    """Read every running vif and uplink once (see the module doc).

    :raises XenstoreError, KernelError: xenstore or netlink failed.
    """
    entries = nftadapter.read_table().entries
    ipr = tcadapter.open_ipr()
    try:
        wall_s = clock()
        boot_id, uptime_s = boot_clock()
        netdevs = countersmod.read_netdevs(ipr)
        qdiscs = countersmod.read_root_qdiscs(ipr)
        classes: Dict[str, Dict[int, countersmod.ShaperCounters]] = {}
        for entry in entries.values():
            if entry.uplink and entry.uplink in netdevs and entry.uplink not in classes:
                classes[entry.uplink] = countersmod.read_classes(ipr, netdevs[entry.uplink].index)
    finally:
        ipr.close()
    vifs, skipped = inventory.running_vifs(xs or Xenstore(), {name: 0 for name in netdevs})
    snap = Snapshot(wall_s, boot_id, uptime_s,
                    skipped=[f"{s.backend}: {s.reason}" for s in skipped])
    for rv in vifs:
        facts, name = rv.facts, rv.facts.vif
        dev = netdevs[name]
        entry = entries.get(name)
        tbf = qdiscs.get(dev.index)
        leaf = None
        if entry is not None and entry.uplink and entry.classid is not None:
            leaf = classes.get(entry.uplink, {}).get(entry.classid)
        key = SeriesKey("vif", facts.domain_name or f"domid{facts.domid}",
                        facts.domain_uuid or "", facts.devid, "emu" if rv.tap else "vif")
        reading = Reading(
            key=key, instance=f"{facts.domid}/{dev.index}", netdev=name,
            in_bytes=dev.tx_bytes, out_bytes=dev.rx_bytes,
            in_packets=dev.tx_packets, out_packets=dev.rx_packets,
            in_drops=tbf.drops if tbf else None, out_drops=leaf.drops if leaf else None,
            in_overlimits=tbf.overlimits if tbf else None,
            out_overlimits=leaf.overlimits if leaf else None,
            bridge=(entry.bridge if entry else None) or facts.bridge,
            uplink=entry.uplink if entry else None)
        snap.guests.append(GuestVif(
            reading, name, facts.domid,
            in_rate_bits_per_s=tbf.rate_bits_per_s if tbf and entry and entry.inbound
            else None,
            out_rate_bits_per_s=leaf.rate_bits_per_s if leaf else None,
            out_ceil_bits_per_s=leaf.ceil_bits_per_s if leaf else None))
    for name in sorted({e.uplink for e in entries.values() if e.uplink}):
        dev = netdevs.get(name)
        if dev is None:
            continue
        snap.uplinks.append(Reading(
            key=SeriesKey("uplink", "", "", -1, name), instance=f"0/{dev.index}", netdev=name,
            in_bytes=dev.rx_bytes, out_bytes=dev.tx_bytes,
            in_packets=dev.rx_packets, out_packets=dev.tx_packets))
    return snap


def store_snapshot(store: UsageStore, snap: Snapshot, retention_s: int) -> int:
    """Write ``snap`` and delete what is older than ``retention_s``; return how
    many samples retention deleted."""
    store.add_samples(snap.wall_s, snap.boot_id, snap.uptime_s, snap.readings)
    return store.purge(snap.wall_s - retention_s)
