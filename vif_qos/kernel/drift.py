"""What vif-qos applied that the kernel no longer holds (drift), read back.

Used by ``vif-qos serve`` (vif_qos/xen/serve.py) after netlink told it that
qdiscs or nftables objects changed: ``nft flush ruleset`` (as ``systemctl restart
nftables`` does) deletes our table, ``tc qdisc del dev UPLINK root`` our HTB tree;
the guests then run unclassified or unshaped until something rebuilds them.

Only live vifs count: a name in :mod:`vif_qos.kernel.ledger` whose netdev exists.
Under the host lock, so an apply in progress is never taken for drift.
"""

from __future__ import annotations

from typing import List, Optional

from vif_qos.kernel import alloc, ledger
from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel import qdisc, sched_htb
from vif_qos.kernel import tc as tcadapter
from vif_qos.kernel.netdev import netdev_exists
from vif_qos.model import HostSettings


def find_drift(host: Optional[HostSettings] = None) -> List[str]:
    """One line per thing missing, empty when the kernel holds what we applied:

    - our table ``bridge vif_qos`` is gone while live vifs are in the ledger;
    - an entry's uplink no longer has our HTB root qdisc, or its leaf class;
    - an entry with inbound shaping whose vif no longer has our TBF.

    :raises KernelError, EnvironmentProblem: the kernel could not be read.
    """
    host = host or HostSettings()
    with alloc.host_lock():
        live = [name for name in ledger.names() if netdev_exists(name)]
        if not live:
            return []
        state = nftadapter.read_table()
        if not state.exists:
            return [f"table bridge {nftadapter.TABLE} is gone "
                    f"({len(live)} live vif(s) in the ledger)"]
        handle = host.qdisc_major << 16
        found: List[str] = []
        ipr = tcadapter.open_ipr()
        try:
            tree_ok = {}  # uplink -> whether our htb root qdisc is there
            for name in live:
                entry = state.entries.get(name)
                if entry is None:
                    continue
                link = tcadapter.get_link(ipr, entry.uplink) if entry.uplink else None
                if link is not None and entry.classid is not None:
                    if entry.uplink not in tree_ok:
                        root = qdisc.get_root_qdisc(ipr, link.index)
                        tree_ok[entry.uplink] = (root is not None and root.kind == "htb"
                                                 and root.handle == entry.classid & 0xFFFF0000)
                        if not tree_ok[entry.uplink]:
                            found.append(f"uplink {entry.uplink} lost vif-qos's htb "
                                         "root qdisc")
                    if tree_ok[entry.uplink] and \
                            sched_htb.get_class(ipr, link.index, entry.classid) is None:
                        found.append(f"leaf {tcadapter.handle_str(entry.classid)} of "
                                     f"{name} on {entry.uplink} is gone")
                if entry.inbound:
                    vif_link = tcadapter.get_link(ipr, name)
                    root = qdisc.get_root_qdisc(ipr, vif_link.index) if vif_link else None
                    if vif_link is not None and (root is None or root.handle != handle
                                                 or root.kind != "tbf"):
                        found.append(f"the tbf of {name} is gone")
        finally:
            ipr.close()
        return found


def adopt_applied() -> int:
    """When the run directory has no ledger (a vif-qos that kept none applied
    under running guests), record every vif of our table, which makes the ledger
    complete; return how many were recorded. Under the host lock."""
    with alloc.host_lock():
        if ledger.exists():
            return 0
        state = nftadapter.read_table()
        for name in state.entries:
            ledger.record(name)
        ledger.start()
        return len(state.entries)
