"""The services the hotplug commands and ``vif-qos cleanup`` call: the policy,
the resolver, the kernel and xenstore entry points, in one :class:`Services`
object -- the one seam where tests put recording stand-ins.

The real ones (:func:`default_services`) import their module only when called,
so a hotplug run pays for what it uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Tuple

from vif_qos.model import VifFacts

if TYPE_CHECKING:  # for the annotations only: a hotplug run imports these when used
    from vif_qos.core.settings import Policy
    from vif_qos.kernel.apply import Applied
    from vif_qos.model import HostSettings, VifPlan
    from vif_qos.xen.xenstore import Xenstore

#: xenstore tool timeout for hotplug runs, seconds: libxl kills a script after 40 s.
DEFAULT_XENSTORE_TIMEOUT_S = 5.0


def _load_policy(path: Optional[str] = None) -> "Policy":
    from vif_qos.config.policy import load_policy
    return load_policy(path)


def _plan_for_facts(facts: VifFacts, policy: "Policy") -> "VifPlan":
    from vif_qos.config.planning import plan_for_facts
    return plan_for_facts(facts, policy)


def _apply_vif(plan: "VifPlan", owner: Optional[Tuple[int, int]] = None) -> "Applied":
    from vif_qos.kernel.apply import apply_vif
    return apply_vif(plan, owner=owner)


def _remove_vif(vif: str, host: Optional["HostSettings"] = None,
                owner: Optional[Tuple[int, int]] = None, only_if_gone: bool = False) -> bool:
    from vif_qos.kernel.apply import remove_vif
    return remove_vif(vif, host=host, owner=owner, only_if_gone=only_if_gone)


def _cleanup_orphans(host: Optional["HostSettings"] = None) -> List[str]:
    from vif_qos.kernel.apply import cleanup_orphans
    return cleanup_orphans(host=host)


@dataclass
class Services:
    """The policy, resolver, kernel and xenstore entry points that the hotplug
    commands (:func:`vif_qos.xen.hotplug.hotplug_main`) and ``vif-qos cleanup`` call: the one place
    tests put recording stand-ins (pass ``services=`` to the entry point).

    The real ones (:func:`default_services`) import their module only when called,
    so a hotplug run pays for what it uses: ``vif_qos.config.policy.load_policy``,
    ``vif_qos.config.planning.plan_for_facts``, ``vif_qos.kernel.apply.apply_vif``,
    ``remove_vif`` and ``cleanup_orphans``, and a :class:`~vif_qos.xen.xenstore.Xenstore`.
    """

    load_policy: Callable[[Optional[str]], "Policy"]
    plan_for_facts: Callable[[VifFacts, "Policy"], "VifPlan"]
    apply_vif: Callable[["VifPlan"], Any]
    remove_vif: Callable[..., bool]  # (vif, host=None) -> removed anything
    xenstore: "Xenstore"
    cleanup_orphans: Callable[..., List[str]] = _cleanup_orphans  # (host=None) -> names
    #: ``may_hold(name) -> bool``: False when the vif certainly holds nothing of
    #: vif-qos (:func:`vif_qos.kernel.ledger.may_hold`); None: always look.
    may_hold: Optional[Callable[[str], bool]] = None


def default_services(env: Mapping[str, str]) -> Services:
    """The real services; the xenstore client's timeout from
    ``VIF_QOS_XENSTORE_TIMEOUT`` (seconds, 0 < t <= 3600, else the default)."""
    from vif_qos.xen.xenstore import Xenstore

    try:
        timeout_s = float(env.get("VIF_QOS_XENSTORE_TIMEOUT", DEFAULT_XENSTORE_TIMEOUT_S))
    except ValueError:
        timeout_s = DEFAULT_XENSTORE_TIMEOUT_S
    if not (math.isfinite(timeout_s) and 0 < timeout_s <= 3600):
        timeout_s = DEFAULT_XENSTORE_TIMEOUT_S  # inf/1e300 overflow subprocess's timeout
    from vif_qos.kernel.ledger import may_hold
    return Services(load_policy=_load_policy, plan_for_facts=_plan_for_facts,
                    apply_vif=_apply_vif, remove_vif=_remove_vif,
                    xenstore=Xenstore(timeout_s=timeout_s, env=dict(env)),
                    cleanup_orphans=_cleanup_orphans, may_hold=may_hold)
