"""A vif's plan from its facts and the admin's files: the domain's ``qos = [...]``
entry read from its xl config file, the operator's overrides
(:mod:`vif_qos.config.overrides`), then the pure :func:`vif_qos.core.resolve.plan_vif`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import List, Optional

from vif_qos.config import overrides as overridesmod
from vif_qos.config import xlcfg
from vif_qos.core.resolve import plan_vif
from vif_qos.core.settings import Policy
from vif_qos.model import VifFacts, VifPlan


def plan_for_facts(facts: VifFacts, policy: Policy,
                   overrides: Optional[overridesmod.Overrides] = None,
                   now: Optional[datetime] = None) -> VifPlan:
    """:func:`plan_vif` after reading the domain's ``qos = [...]`` entry and with the
    unexpired operator overrides matching the vif (``overrides``, default: the
    overrides file :func:`vif_qos.config.overrides.load` reads), unexpired at ``now``
    (default: now).

    The domain config file is the one in ``policy.domain_config_dirs`` whose
    ``name = "..."`` is ``facts.domain_name`` (:func:`vif_qos.config.xlcfg.find_domain_config`).

    :raises ConfigError: that file is not xl syntax or its ``qos`` is malformed;
        the overrides file is malformed.
    :raises InputError: see :func:`plan_vif`.
    """
    domain_qos = None
    extra: List[str] = []
    if facts.domain_name:
        config, others = xlcfg.find_domain_config(facts.domain_name, policy.domain_config_dirs)
        if config is not None:
            domain_qos = xlcfg.qos_entry(config, facts.devid)
            if others:
                extra.append(f"domain {facts.domain_name!r} is also named in "
                             f"{', '.join(others)}: using {config.source}")
    if overrides is None:
        overrides = overridesmod.load()
    plan = plan_vif(facts, policy, domain_qos, overrides.matching(facts, now))
    if extra:
        plan = replace(plan, notes=tuple(extra) + plan.notes)
    return plan
