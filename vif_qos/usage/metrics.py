"""``vif-qos metrics --textfile DIR``: node_exporter's textfile-collector format,
written atomically by prometheus_client's ``write_to_textfile`` (temp file + rename)
as ``DIR/vif_qos.prom``.

Per guest port (labels ``domain``, ``devid``, ``vif``, ``bridge``), base units:

- ``vif_qos_guest_{in,out}_bytes_total``, ``vif_qos_guest_{in,out}_packets_total``: the
  vif netdev's 64-bit counters ("in" toward the guest);
- ``vif_qos_guest_{in,out}_dropped_packets_total``, ``..._overlimits_total``: the
  shaper's (TBF on the vif: in; HTB leaf on the uplink: out);
- gauges ``vif_qos_guest_in_rate_bytes_per_second`` (TBF rate),
  ``vif_qos_guest_out_rate_bytes_per_second`` and ``..._out_ceil_bytes_per_second``
  (HTB leaf).

Per uplink (label ``uplink``): ``vif_qos_uplink_{in,out}_bytes_total``; and the
``[billing] target`` as ``vif_qos_billing_target_bytes_per_second`` when set.
"""

from __future__ import annotations

import os
from typing import Optional

from vif_qos.usage.record import Snapshot

FILE_NAME = "vif_qos.prom"


class _Collector:
    def __init__(self, snap: Snapshot, target_bits_per_s: Optional[int]):
        self.snap = snap
        self.target = target_bits_per_s

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["domain", "devid", "vif", "bridge"]
        fams = {}

        def fam(kind, name, doc, lab=labels):
            if name not in fams:
                cls = CounterMetricFamily if kind == "c" else GaugeMetricFamily
                fams[name] = cls(name, doc, labels=lab)
            return fams[name]

        for g in self.snap.guests:
            r = g.reading
            lv = [r.key.domain, str(r.key.devid), g.vif, r.bridge or ""]
            for d, word in (("in", "toward the guest"), ("out", "from the guest")):
                fam("c", f"vif_qos_guest_{d}_bytes",
                    f"Bytes {word}, the vif netdev's counter").add_metric(
                    lv, getattr(r, f"{d}_bytes"))
                fam("c", f"vif_qos_guest_{d}_packets",
                    f"Packets {word}, the vif netdev's counter").add_metric(
                    lv, getattr(r, f"{d}_packets"))
                drops = getattr(r, f"{d}_drops")
                if drops is not None:
                    fam("c", f"vif_qos_guest_{d}_dropped_packets",
                        f"Packets {word} the shaper dropped").add_metric(lv, drops)
                    fam("c", f"vif_qos_guest_{d}_overlimits",
                        f"Shaper overlimit events {word}").add_metric(
                        lv, getattr(r, f"{d}_overlimits") or 0)
            for name, value, doc in (
                    ("vif_qos_guest_in_rate_bytes_per_second", g.in_rate_bits_per_s,
                     "Configured rate toward the guest (TBF on the vif)"),
                    ("vif_qos_guest_out_rate_bytes_per_second", g.out_rate_bits_per_s,
                     "Configured guaranteed rate from the guest (HTB leaf)"),
                    ("vif_qos_guest_out_ceil_bytes_per_second", g.out_ceil_bits_per_s,
                     "Configured ceil from the guest (HTB leaf)")):
                if value is not None:
                    fam("g", name, doc).add_metric(lv, value / 8)
        for u in self.snap.uplinks:
            for d in ("in", "out"):
                fam("c", f"vif_qos_uplink_{d}_bytes", f"Bytes {d} on the uplink netdev",
                    ["uplink"]).add_metric([u.netdev], getattr(u, f"{d}_bytes"))
        if self.target:
            fam("g", "vif_qos_billing_target_bytes_per_second",
                "The [billing] target for the host's 95th", []).add_metric([], self.target / 8)
        yield from fams.values()


def write_textfile(snap: Snapshot, directory: str,
                   target_bits_per_s: Optional[int] = None) -> str:
    """Write ``directory/vif_qos.prom`` atomically; return its path.

    :raises OSError: the directory does not exist or is not writable.
    """
    from prometheus_client import CollectorRegistry, write_to_textfile

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snap, target_bits_per_s))
    path = os.path.join(directory, FILE_NAME)
    write_to_textfile(path, registry)
    return path
