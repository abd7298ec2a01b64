"""``vif-qos check-config [--config FILE]``: every problem in the policy file and in
the domain config files it would read, one ``file:line: message: 'token'`` line each.

Exit status 2 when there is any problem, else 0 with one line saying what was
checked. Domain config files are the files in ``domain_config_dirs`` that have
a ``name = "..."`` line; each must be xl syntax, its ``qos`` a list of qos specs
whose keys, values and pools are valid, its ``vif`` entries' ``rate=``,
``bridge=`` and ``vifname=`` what xl accepts. Domain config files passed over
(unreadable, larger than 1 MiB) are named in ``warning:`` lines.

The policy file given as a plain argument (``check-config FILE``, the older
spelling) is still read, with a warning on stderr.
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Tuple

from vif_qos.cli import add_config_option
from vif_qos.errors import ConfigError, InputError


def configure(parser: argparse.ArgumentParser, name: str = "check-config") -> None:
    add_config_option(parser)


def check_domain_configs(policy, skipped: Optional[List[Tuple[str, str]]] = None
                         ) -> Tuple[int, List[InputError]]:
    """(number of domain config files checked, problems) for ``policy``'s directories.

    Each file's ``qos = [...]`` entries and its ``vif = [...]`` entries (``rate=``,
    ``bridge=``, ``vifname=``, read as ``plan --domain`` and xl read them). Files
    passed over (unreadable, larger than 1 MiB) are appended to ``skipped``.
    """
    from vif_qos.config import xlcfg

    problems: List[InputError] = []
    checked = 0
    first_file_of: Dict[str, str] = {}
    for path in xlcfg.candidate_files(policy.domain_config_dirs, skipped):
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            if skipped is not None:
                skipped.append((path, f"not readable: {err.strerror}"))
            continue
        if not xlcfg._quick_names(path):
            continue
        checked += 1
        try:
            config = xlcfg.load_xl_config(path)
        except ConfigError as err:
            problems.append(err)
            continue
        problems += _domain_config_problems(config, policy, first_file_of)
    return checked, problems


def _domain_config_problems(config, policy, first_file_of: Dict[str, str]
                            ) -> List[InputError]:
    """One parsed domain config file's problems: its vif entries, a domain name an
    earlier file took (``first_file_of``: name -> file, updated), its qos entries
    and their pools."""
    from vif_qos.config import xlcfg
    from vif_qos.core import spec as specmod

    problems: List[InputError] = []
    try:
        entries = config.get_string_list("qos") or []
        name = config.get_string("name")
        vifs = config.get_string_list("vif") or []
    except ConfigError as err:
        return [err]
    for atom in vifs:
        try:
            xlcfg.vif_line_values(atom.text, config.where(atom.line))
        except InputError as err:
            problems.append(err)
    if name is not None:
        if name.text in first_file_of:
            # vif-qos reads the first file only (directory order, then name).
            problems.append(ConfigError(
                f"domain name already used by {first_file_of[name.text]}, whose qos "
                f"entries are the ones read", token=name.text,
                source=config.where(name.line)))
        else:
            first_file_of[name.text] = config.source
    for atom in entries:
        try:
            parsed = specmod.parse_spec(atom.text, config.where(atom.line))
        except InputError as err:
            problems.append(err)
            continue
        unknown = specmod.unknown_pool(parsed.get("pool"), policy.pools)
        if unknown is not None:
            problems.append(ConfigError(unknown.message, token=unknown.token,
                                        source=unknown.source))
    return problems


def guarantee_warnings(policy) -> List[str]:
    """Oversold guaranteed rates of each configured bridge's tree (default class and
    pools under the root class; a pool's member_rate alone above the pool's rate),
    with the policy file named. Warnings: exit status stays 0."""
    from vif_qos.core import guarantee
    from vif_qos.core.resolve import uplink_plan

    where = policy.path or "built-in defaults"
    lines = []
    for bridge in sorted(policy.bridges) or ["(every bridge)"]:
        uplink = uplink_plan(policy, bridge)
        lines += [f"{where}: [bridges] {bridge}: {line}"
                  for line in guarantee.tree_problems(uplink, [], where=bridge)]
    for pool in policy.pools.values():
        if pool.member_rate_bits_per_s and pool.member_rate_bits_per_s > pool.rate_bits_per_s:
            lines.append(f"{pool.source}: pool {pool.name}: member_rate is above the pool's "
                         "rate: one member's guarantee alone cannot be honoured")
    return lines


def run(args: argparse.Namespace) -> int:
    from vif_qos.config import policy as policymod

    policy, problems = policymod.check_policy(args.config)
    checked = 0
    skipped: List[Tuple[str, str]] = []
    if policy is not None:
        checked, more = check_domain_configs(policy, skipped)
        problems = list(problems) + more
    for err in problems:
        print(err.one_line())
    for path, reason in skipped:
        print(f"warning: {path}: skipped, {reason} (a guest named in it gets no "
              "qos entry from it)")
    if problems:
        return 2
    assert policy is not None
    for line in guarantee_warnings(policy):
        print(f"warning: {line}")
    print(f"OK: {policy.path or 'built-in defaults (no policy file)'}: "
          f"{len(policy.pools)} pool(s), {len(policy.domains)} domain entr"
          f"{'y' if len(policy.domains) == 1 else 'ies'}, {checked} domain config "
          f"file(s) in {', '.join(policy.domain_config_dirs) or '(no directories)'}")
    return 0
