"""Admission of guaranteed rates: does a leaf's HTB ``rate`` fit under its parent?

The policy's ``[host] admission`` (``warn``, ``refuse``, ``off``) decides what an
``online`` or ``vif-qos set``/``assign`` does when the rates of the parent's
children in the kernel, plus the new leaf's, add up to more than the parent's
own rate (:mod:`vif_qos.core.guarantee` says why HTB cannot honour them then;
libvirt's ``floor`` refuses such a start in the same way). Read under the host
lock by the caller, so concurrent onlines are counted.
"""

from __future__ import annotations

import logging
from typing import Optional

from vif_qos.core import guarantee
from vif_qos.errors import AdmissionRefused
from vif_qos.kernel import sched_htb
from vif_qos.kernel import tc as tcadapter
from vif_qos.model import ADMISSION_OFF, ADMISSION_REFUSE, HostSettings

log = logging.getLogger("vif_qos")


def check_leaf(ipr, link: tcadapter.LinkInfo, parent: int, vif: str,
               rate_bits_per_s: int, host: HostSettings,
               replacing: Optional[int] = None) -> Optional[str]:
    """Check a leaf of ``rate_bits_per_s`` for ``vif`` under class ``parent`` of
    ``link`` against the classes the kernel holds (``replacing``: the vif's
    current leaf, not counted).

    :returns: the warning logged, or None when it fits (or admission is off, or
        the parent class does not exist yet: it is made from the same plan).
    :raises AdmissionRefused: it does not fit and ``host.admission`` is refuse.
    """
    if host.admission == ADMISSION_OFF:
        return None
    classes = sched_htb.dump_classes(ipr, link.index)
    parent_class = next((c for c in classes if c.classid == parent), None)
    if parent_class is None:
        return None
    children = [(tcadapter.handle_str(c.classid), c.rate_bytes_per_s * 8) for c in classes
                if c.parent == parent and c.classid not in (replacing,)]
    children.append((vif, rate_bits_per_s))
    line = guarantee.oversold(f"class {tcadapter.handle_str(parent)} on {link.name}",
                              parent_class.rate_bytes_per_s * 8, children)
    if line is None:
        return None
    if host.admission == ADMISSION_REFUSE:
        raise AdmissionRefused(f"{vif}: {line} (admission = refuse)")
    log.warning("vif-qos: %s: %s", vif, line)
    return line
