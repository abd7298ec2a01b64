"""``vif-qos plan``: the resolved shaping plan of one vif and where each value came from.

Nothing is applied; only the policy file and the domain config files are read.
With ``--domain`` the domain's xl config file is looked up as the hotplug
script would (its ``qos = [...]`` entry for ``--devid``); ``--qos`` gives that
entry directly instead. ``--xen-rate`` takes the xl string (``10Mb/s@50ms``)
and is read exactly as xl and netback would.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

from vif_qos.cli import add_config_option
from vif_qos.constants import DEFAULT_BRIDGE, DEFAULT_MINOR, ROOT_MINOR
from vif_qos.core import units
from vif_qos.core import xenrate
from vif_qos.errors import InputError
from vif_qos.core.ifname import check_ifname
from vif_qos.model import VifFacts, VifPlan


def devid(text: str) -> int:
    """``--devid``: plain ASCII digits (int() alone takes '1_0', ' 1', Unicode digits)."""
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(text)
    return int(text)


def configure(parser: argparse.ArgumentParser, name: str = "plan") -> None:
    add_config_option(parser)
    parser.add_argument("--domain", metavar="NAME",
                        help="domain name: matches [domains] entries and finds its xl config "
                             "file's qos = [...] entry")
    parser.add_argument("--devid", metavar="N", type=devid, default=0,
                        help="the vif's devid (index into vif = [...] and qos = [...]); default 0")
    parser.add_argument("--vif", metavar="NAME",
                        help="the vif's netdev name (default vifX.DEVID); matches [[vif:...]]")
    parser.add_argument("--bridge", metavar="NAME",
                        help="the bridge the vif joins (default: the domain config file's "
                             f"vif line, else {DEFAULT_BRIDGE})")
    parser.add_argument("--mac", metavar="MAC", help="the vif's MAC; matches [[mac:...]]")
    parser.add_argument("--uuid", metavar="UUID", help="the domain's uuid; matches [[uuid:...]]")
    parser.add_argument("--xen-rate", metavar="RATE",
                        help="the vif's Xen rate= as written on the xl vif line (10Mb/s@50ms)")
    parser.add_argument("--qos", metavar="SPEC",
                        help="a qos spec used instead of the domain config file's entry "
                             "(rate=1mbit,burst=15k,...)")
    parser.add_argument("--xenbus-path", metavar="PATH",
                        help="read the vif's facts from xenstore exactly as the hotplug run "
                             "does (backend/vif/<domid>/<devid>: bridge, rate, mac, vifname, "
                             "domain name and uuid); the other vif options are then ignored")
    parser.add_argument("--tap", action="store_true",
                        help="with --xenbus-path: plan the HVM guest's -emu tap instead")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (vif, inbound, outbound, uplink, sources, notes)")


def facts_from_args(args: argparse.Namespace) -> VifFacts:
    """The :class:`VifFacts` the options describe (``--xen-rate`` converted as xl does).

    :raises InputError: ``--xen-rate`` is not what xl accepts; ``--devid`` is
        negative; ``--vif`` or ``--bridge`` is not a valid netdev name.
    """
    if args.devid < 0:
        raise InputError("devid must be 0 or more", token=str(args.devid), source="--devid")
    if args.vif is not None:
        check_ifname(args.vif, "--vif", "vif")
    if args.bridge is not None:
        check_ifname(args.bridge, "--bridge", "bridge")
    xen_rate = None
    if args.xen_rate is not None:
        xenrate.xl_rate_bits_per_s(args.xen_rate, "--xen-rate")  # errors quote it as given
        xen_rate = xenrate.parse_xl_rate(args.xen_rate, "--xen-rate")
    return VifFacts(vif=args.vif or f"vifX.{args.devid}", devid=args.devid,
                    bridge=args.bridge or DEFAULT_BRIDGE,
                    domain_name=args.domain, domain_uuid=args.uuid, mac=args.mac,
                    xen_rate=xen_rate, xen_rate_source="--xen-rate")


def facts_with_vif_line(args: argparse.Namespace, facts: VifFacts, policy) -> Tuple[VifFacts, List[str]]:
    """``facts`` completed from the domain config file's ``vif = [...]`` entry for the
    devid, for a guest that is not running yet: what xl would write to the backend
    directory (``rate=`` converted as xl does, ``bridge=``, ``mac=``, ``vifname=``).
    Options given on the command line win. Returns notes for the plan.

    :raises ConfigError: the file is not xl syntax or its vif line is malformed.
    """
    from vif_qos.config import xlcfg

    config, _others = xlcfg.find_domain_config(args.domain, policy.domain_config_dirs)
    if config is None:
        return facts, [f"no domain config file with name = {args.domain!r} in "
                       f"{', '.join(policy.domain_config_dirs)}: its vif line and qos "
                       f"entry were not read"]
    entries = config.get_string_list("vif") or []
    if args.devid >= len(entries):
        return facts, [f"{config.source}: vif = [...] has no entry for devid {args.devid}"]
    atom = entries[args.devid]
    values = xlcfg.vif_line_values(atom.text, config.where(atom.line))
    changes: Dict[str, object] = {}
    if "xen_rate" in values and args.xen_rate is None:
        changes["xen_rate"] = values["xen_rate"]
        changes["xen_rate_source"] = values["xen_rate_source"]
    if "bridge" in values and args.bridge is None:
        changes["bridge"] = values["bridge"]
    if "mac" in values and args.mac is None:
        changes["mac"] = values["mac"]
    if "vif" in values and args.vif is None:
        changes["vif"] = values["vif"]
    return replace(facts, **changes), []


def facts_from_xenstore(args: argparse.Namespace) -> VifFacts:
    """The :class:`VifFacts` a hotplug run for ``--xenbus-path`` would read.

    Uses the hotplug side's own reader (dom0-owned nodes only, through the
    ``xenstore-read`` tool; ``XENSTORED_PATH`` is honoured).

    :raises InputError: the path is not a vif backend path.
    :raises XenstoreError: xenstored cannot be reached or a key cannot be read.
    """
    from vif_qos.xen.hotplug import parse_invocation, read_facts, xenbus_ids
    from vif_qos.xen.xenstore import Xenstore

    domid, devid = xenbus_ids(args.xenbus_path)
    env = {"XENBUS_PATH": args.xenbus_path, "vif": f"vif{domid}.{devid}",
           "INTERFACE": f"vif{domid}.{devid}-emu"}
    command, type_if = ("add", "tap") if args.tap else ("online", "vif")
    invocation = parse_invocation(command, [f"type_if={type_if}"], env)
    return read_facts(Xenstore(), invocation)


def run(args: argparse.Namespace) -> int:
    from vif_qos.config import policy as policymod
    from vif_qos.core import resolve
    from vif_qos.config import planning

    policy = policymod.load_policy(args.config)
    facts = facts_from_xenstore(args) if args.xenbus_path else facts_from_args(args)
    notes: List[str] = []
    if args.domain and not args.xenbus_path:
        facts, notes = facts_with_vif_line(args, facts, policy)
    if args.qos is not None:
        from vif_qos.config import overrides
        plan = resolve.plan_vif(facts, policy, (args.qos, "--qos"),
                                overrides.load().matching(facts))
    else:
        plan = planning.plan_for_facts(facts, policy)
    if plan.outbound is not None and plan.uplink is not None:
        from vif_qos.core import guarantee
        notes += guarantee.tree_problems(plan.uplink, [(plan.vif, plan.outbound)])
    if notes:
        plan = replace(plan, notes=tuple(notes) + plan.notes)
    if args.json:
        print(json.dumps(plan.to_json(), sort_keys=False))
    else:
        print(format_plan(plan, policy.path or "built-in defaults (no policy file)"))
    return 0


def _row(lines: List[str], label: str, value: str, source: Optional[str]) -> None:
    lines.append(f"  {label:<10} {value:<48} <- {source or '?'}")


def _leaf_kind(kind: str) -> str:
    return "auto (fq_codel where the kernel has it, else bfifo)" if kind == "auto" else kind


def _leaf_rows(lines: List[str], q, s, prefix: str) -> None:
    """The leaf qdisc under the guest's HTB leaf: kind, the time bound and its sizes."""
    _row(lines, "queue", _leaf_kind(q.kind), s.get(f"{prefix}.leaf_qdisc.kind"))
    _row(lines, "latency", units.human_time(q.latency_us),
         s.get(f"{prefix}.leaf_qdisc.latency_us"))
    _row(lines, "limit", units.human_size(q.limit_bytes) + " (bfifo)",
         s.get(f"{prefix}.leaf_qdisc.limit_bytes"))
    _row(lines, "codel", f"target {units.format_time(q.target_us)} interval "
         f"{units.format_time(q.interval_us)} (fq_codel)",
         "derived: latency/10 (at least one frame's time), 2 x latency")


def format_plan(plan: VifPlan, policy_name: str) -> str:
    """The human form: every value with its unit and its source, then the notes."""
    s = plan.sources
    lines = [f"vif {plan.vif} on bridge {plan.bridge}   (policy: {policy_name})"]
    i = plan.inbound
    if i is None:
        lines.append("inbound (toward the guest): not shaped")
    else:
        lines.append(f"inbound (toward the guest): TBF root qdisc on {plan.vif}")
        _row(lines, "rate", units.human_rate(i.rate_bits_per_s), s.get("inbound.rate_bits_per_s"))
        _row(lines, "burst", units.human_size(i.burst_bytes), s.get("inbound.burst_bytes"))
        _row(lines, "latency", units.human_time(i.latency_us), s.get("inbound.latency_us"))
        _row(lines, "limit", units.human_size(i.limit_bytes), s.get("inbound.limit_bytes"))
        if i.peak_bits_per_s is not None:
            _row(lines, "peakrate", units.human_rate(i.peak_bits_per_s),
                 s.get("inbound.peak_bits_per_s"))
            _row(lines, "minburst", units.human_size(i.minburst_bytes or 0),
                 s.get("inbound.minburst_bytes"))
    o = plan.outbound
    if o is None:
        lines.append("outbound (from the guest): not shaped (its traffic shares the uplink's "
                     "default class)")
    else:
        parent = f"pool {o.pool}" if o.pool else "the root class"
        lines.append(f"outbound (from the guest): HTB leaf class under {parent} on the uplink "
                     f"of {plan.bridge}")
        _row(lines, "rate", units.human_rate(o.rate_bits_per_s), s.get("outbound.rate_bits_per_s"))
        _row(lines, "ceil", units.human_rate(o.ceil_bits_per_s), s.get("outbound.ceil_bits_per_s"))
        _row(lines, "burst", units.human_size(o.burst_bytes), s.get("outbound.burst_bytes"))
        _row(lines, "cburst", units.human_size(o.cburst_bytes), s.get("outbound.cburst_bytes"))
        _row(lines, "quantum", units.human_size(o.quantum_bytes), s.get("outbound.quantum_bytes"))
        _row(lines, "pool", o.pool or "none", s.get("outbound.pool"))
        if o.leaf_qdisc is not None:
            _leaf_rows(lines, o.leaf_qdisc, s, "outbound")
    u = plan.uplink
    if u is not None:
        device = u.device or "auto (the bridge's port that is not a vif/tap)"
        lines.append(f"uplink of {u.bridge}: {device}, HTB root qdisc {u.qdisc_major:x}:   "
                     f"<- {s.get('uplink.device', '?')}")
        # The pools' minors are chosen by apply (kernel/tree.py: pool_minors_of):
        # POOL_MINOR_BASE + i when free, else the class its members already sit
        # under or the lowest free one; a plan cannot know which.
        for label, minor, cls in [("root", f"{ROOT_MINOR:x}", u.root),
                                  ("default", f"{DEFAULT_MINOR:x}", u.default)] + \
                [(f"pool {p.name}", "(minor chosen at apply)", p) for p in u.pools]:
            lines.append(f"  {label:<14} class {u.qdisc_major:x}:{minor}  rate "
                         f"{units.format_rate(cls.rate_bits_per_s)} ceil "
                         f"{units.format_rate(cls.ceil_bits_per_s)} burst {cls.burst_bytes} "
                         f"cburst {cls.cburst_bytes} quantum {cls.quantum_bytes} bytes")
            if cls.leaf_qdisc is not None:
                q = cls.leaf_qdisc
                lines.append(f"  {'':<14} leaf qdisc {_leaf_kind(q.kind)}, limit "
                             f"{q.limit_bytes} bytes (latency {units.format_time(q.latency_us)}"
                             f" <- {s.get('uplink.default.leaf_qdisc.latency_us', '?')})")
        lines.append(f"  uplink rate <- {s.get('uplink.rate_bits_per_s', '?')}")
    if plan.notes:
        lines.append("notes:")
        lines.extend(f"  - {note}" for note in plan.notes)
    return "\n".join(lines)
