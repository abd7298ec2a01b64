"""nftables through the Python bindings' JSON API: the classification table.

One table ``bridge vif_qos``::

    table bridge vif_qos {
        map vifs { type ifname : verdict; elements = { "vif3.0" : jump vif_vif3.0 } }
        chain prerouting {
            type filter hook prerouting priority filter; policy accept;
            iifname vmap @vifs comment "vif-qos dispatch"
        }
        chain vif_vif3.0 {
            counter meta priority set 7a51:100 meta mark set meta mark & ~MASK | VALUE
                comment "vif-qos vif=vif3.0 bridge=xenbr0 uplink=eth0 classid=7a51:100 mark=0x10000 inbound=1"
        }
    }

Why the bridge ``prerouting`` hook: a frame the guest sends enters the bridge
through its vif port, and prerouting sees it once, before the bridge decides
where it goes (forward to the uplink, flood, or up to dom0). ``forward`` would
run once per output port for flooded frames and never for frames to dom0;
``iifname`` there is the same vif. Setting the priority before the flood clones
the skb makes every copy carry it. (``ingress`` in the bridge family needs a
newer kernel and nftables than Debian 12 ships.)

The rule comment is the record of what vif-qos built for the vif: the kernel
is the source of truth, and every other piece (the HTB leaf, the TBF) is found
from it. Each change is one ``json_cmd`` call, that is, one nftables
transaction: all of it happens or none.

Works with Debian's python3-nftables 1.0.6 and PyPI's pip-nftables (the same
``nftables.Nftables().json_cmd``). libnftables 1.0.6's JSON parser ignores a
table ``comment``; we send it anyway for newer ones, and recognise the table by
its name, map and rule comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from vif_qos.errors import EnvironmentProblem, KernelError

FAMILY = "bridge"
TABLE = "vif_qos"
MAP = "vifs"
BASE_CHAIN = "prerouting"
#: Bridge-family filter priority (NF_BR_PRI_FILTER_BRIDGED, -200).
BASE_PRIORITY = -200
CHAIN_PREFIX = "vif_"
COMMENT_PREFIX = "vif-qos "
TABLE_COMMENT = "vif-qos: per-vif classification for outbound shaping"
#: Longest comment libnftables takes ("comment too long, 128 characters maximum
#: allowed"; NFTNL_UDATA_COMMENT_MAXLEN in libnftnl's udata.h).
COMMENT_MAX_CHARS = 128

_T = {"family": FAMILY, "table": TABLE}


def _nft():
    try:
        import nftables  # the bindings: python3-nftables or pip-nftables
    except ImportError as err:
        raise EnvironmentProblem(
            "the nftables Python bindings are missing: on Debian install the package "
            "python3-nftables (apt install python3-nftables); with pip, install "
            "vif-qos with its PyPI extra (pip install 'vif-qos[pypi]')") from err
    try:
        ctx = nftables.Nftables()
    except Exception as err:  # libnftables.so missing
        raise EnvironmentProblem(f"cannot load libnftables: {err}") from err
    ctx.set_json_output(True)
    try:
        ctx.set_handle_output(True)
    except AttributeError:  # pragma: no cover - very old bindings
        pass
    return ctx


def open_ctx():
    """An nftables context for several calls of one operation (optional: each
    call opens its own when given none). Bound to the current network
    namespace."""
    return _nft()


def run(cmds: List[dict], what: str, ctx=None) -> dict:
    """Run ``cmds`` as ONE nftables transaction; KernelError naming ``what``."""
    if not cmds:
        return {}
    ctx = ctx or _nft()
    rc, out, err = ctx.json_cmd({"nftables": cmds})
    if rc != 0:
        text = " ".join(str(err or "").split()) or f"status {rc}"
        raise KernelError(f"{what}: nftables refused the transaction: {text}")
    return out or {}


# --------------------------------------------------------------------------
# Entries (one per shaped vif)
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """What the rule comment of one vif's chain records, plus its counters.

    ``classid`` is the HTB leaf (``major<<16|minor``) or None; ``mark`` the value
    set within the mask, or None; ``uplink`` the netdev carrying the leaf;
    ``pool`` the name of the pool whose class is the leaf's parent, or None;
    ``owner`` the guest that made it, ``"domid.devid"``, and ``ifindex`` the
    netdev it was made for, or None (entries written before they were recorded,
    or a comment too long for them).
    """

    vif: str
    bridge: Optional[str] = None
    uplink: Optional[str] = None
    classid: Optional[int] = None
    mark: Optional[int] = None
    inbound: bool = False
    packets: int = 0
    bytes: int = 0
    pool: Optional[str] = None
    owner: Optional[str] = None
    ifindex: Optional[int] = None

    @property
    def chain(self) -> str:
        return chain_name(self.vif)

    def comment(self) -> str:
        parts = [f"vif={self.vif}"]
        if self.bridge:
            parts.append(f"bridge={self.bridge}")
        if self.uplink:
            parts.append(f"uplink={self.uplink}")
        if self.classid is not None:
            parts.append(f"classid={self.classid >> 16:x}:{self.classid & 0xFFFF:x}")
        if self.mark is not None:
            parts.append(f"mark={self.mark:#x}")
        parts.append(f"inbound={int(self.inbound)}")
        text = COMMENT_PREFIX + " ".join(parts)
        # dom= and ifindex= only when they fit (names of 15 bytes): without them
        # the entry is matched by name alone, as before they were recorded.
        if self.owner is not None and self.ifindex is not None:
            extra = f" dom={self.owner} ifindex={self.ifindex}"
            if len(text) + len(extra) <= COMMENT_MAX_CHARS:
                text += extra
        # pool= only when it fits (a long pool name): without it the pool's
        # class is found by its place in the policy, as before pool= existed.
        if self.pool and len(text) + len(self.pool) + 6 <= COMMENT_MAX_CHARS:
            text += f" pool={self.pool}"
        return text


def chain_name(vif: str) -> str:
    return CHAIN_PREFIX + vif


_WORD = re.compile(r"(\w+)=(\S+)")
_OWNER = re.compile(r"[0-9]{1,10}\.[0-9]{1,10}")
_DIGITS = re.compile(r"[0-9]{1,10}")


def parse_comment(comment: str) -> Optional[Entry]:
    """An Entry from a rule comment written by :meth:`Entry.comment`, or None."""
    if not comment or not comment.startswith(COMMENT_PREFIX):
        return None
    fields = dict(_WORD.findall(comment[len(COMMENT_PREFIX):]))
    if "vif" not in fields:
        return None
    return Entry(vif=fields["vif"], bridge=fields.get("bridge"),
                 uplink=fields.get("uplink"), classid=_classid(fields.get("classid")),
                 mark=_hex(fields.get("mark"), 0xFFFFFFFF),
                 inbound=fields.get("inbound") == "1", pool=fields.get("pool"),
                 owner=fields.get("dom") if _OWNER.fullmatch(fields.get("dom", "")) else None,
                 ifindex=int(fields["ifindex"]) if _DIGITS.fullmatch(
                     fields.get("ifindex", "")) else None)


def _hex(text: Optional[str], top: int) -> Optional[int]:
    """A hex field of a comment, or None when absent or not what we write (a comment
    edited by hand must not stop removal of the vif's element and chain)."""
    try:
        value = int(text, 16) if text else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= top else None


def _classid(text: Optional[str]) -> Optional[int]:
    if not text:
        return None
    major, _, minor = text.partition(":")
    major_i, minor_i = _hex(major, 0xFFFF), _hex(minor or "0", 0xFFFF)
    if major_i is None or minor_i is None:
        return None
    return (major_i << 16) | minor_i


@dataclass
class TableState:
    """Our table as read back: does it exist, and the entries by vif name."""

    exists: bool
    entries: Dict[str, Entry]
    elements: List[str]
    chains: List[str]


def _list(what: dict, ctx=None) -> Optional[dict]:
    ctx = ctx or _nft()
    rc, out, err = ctx.json_cmd({"nftables": [{"list": what}]})
    if rc != 0:
        if "No such file or directory" in str(err):
            return None
        raise KernelError(f"table {FAMILY} {TABLE}: cannot list: "
                          f"{' '.join(str(err).split())}")
    return out or {}


def _map_elements(item: dict, elements: List[str], entries: Dict[str, Entry]) -> None:
    for elem in item.get("elem", []) or []:
        key = elem[0] if isinstance(elem, list) else elem
        comment = ""
        if isinstance(key, dict):  # {"elem": {"val": "vif3.0", "comment": "..."}}
            comment = key.get("elem", {}).get("comment", "")
            key = key.get("elem", {}).get("val", key)
        elements.append(str(key))
        entry = parse_comment(comment)
        if entry is not None and entry.vif == str(key):
            entries[entry.vif] = entry


def read_table(full: bool = False, ctx=None) -> TableState:
    """What our table holds.

    By default only the map ``vifs`` is listed: each element's comment repeats
    its rule's comment, so the entries (vif, bridge, uplink, classid, mark) come
    from one small listing (about 10 ms with 1000 vifs, against 140 ms for the
    JSON of the whole table). ``full=True`` lists the whole table and adds the
    per-vif counters from the rules (for ``vif-qos status``).
    """
    if not full:
        out = _list({"map": {"family": FAMILY, "table": TABLE, "name": MAP}}, ctx)
        if out is None:
            exists = _list({"table": {"family": FAMILY, "name": TABLE}}, ctx) is not None
            return TableState(exists, {}, [], [])
        entries: Dict[str, Entry] = {}
        elements: List[str] = []
        for item in out.get("nftables", []):
            if "map" in item:
                _map_elements(item["map"], elements, entries)
        return TableState(True, entries, elements, [chain_name(e) for e in elements])
    out = _list({"table": {"family": FAMILY, "name": TABLE}}, ctx)
    if out is None:
        return TableState(False, {}, [], [])
    entries = {}
    elements = []
    chains: List[str] = []
    for item in out.get("nftables", []):
        if "map" in item and item["map"].get("name") == MAP:
            _map_elements(item["map"], elements, {})
        elif "chain" in item:
            chains.append(item["chain"]["name"])
        elif "rule" in item:
            rule = item["rule"]
            entry = parse_comment(rule.get("comment", ""))
            if entry is None or rule.get("chain") != chain_name(entry.vif):
                continue
            packets = nbytes = 0
            for expr in rule.get("expr", []):
                if "counter" in expr and isinstance(expr["counter"], dict):
                    packets = expr["counter"].get("packets", 0)
                    nbytes = expr["counter"].get("bytes", 0)
            entries[entry.vif] = Entry(**{**entry.__dict__, "packets": packets,
                                          "bytes": nbytes})
    return TableState(True, entries, elements, chains)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

def create_table_cmds() -> List[dict]:
    """The table, its map and the dispatch chain with its single rule."""
    return [
        {"add": {"table": {"family": FAMILY, "name": TABLE,
                           "comment": TABLE_COMMENT}}},
        {"add": {"map": dict(_T, name=MAP, type="ifname", map="verdict")}},
        {"add": {"chain": dict(_T, name=BASE_CHAIN, type="filter",
                               hook="prerouting", prio=BASE_PRIORITY,
                               policy="accept")}},
        {"add": {"rule": dict(_T, chain=BASE_CHAIN, comment="vif-qos dispatch",
                              expr=[{"vmap": {"key": {"meta": {"key": "iifname"}},
                                              "data": "@" + MAP}}])}},
    ]


def add_entry_cmds(entry: Entry, mark_mask: int) -> List[dict]:
    """The vif's chain, its one rule, and its map element."""
    expr: List[dict] = [{"counter": {"packets": 0, "bytes": 0}}]
    if entry.classid is not None:
        expr.append({"mangle": {"key": {"meta": {"key": "priority"}},
                                "value": f"{entry.classid >> 16:x}:"
                                         f"{entry.classid & 0xFFFF:x}"}})
    if entry.mark is not None:
        keep = ~mark_mask & 0xFFFFFFFF
        expr.append({"mangle": {"key": {"meta": {"key": "mark"}},
                                "value": {"|": [{"&": [{"meta": {"key": "mark"}},
                                                       keep]}, entry.mark]}}})
    return [
        {"add": {"chain": dict(_T, name=entry.chain)}},
        {"add": {"rule": dict(_T, chain=entry.chain, comment=entry.comment(),
                              expr=expr)}},
        {"add": {"element": dict(_T, name=MAP, elem=[
            [{"elem": {"val": entry.vif, "comment": entry.comment()}},
             {"jump": {"target": entry.chain}}]])}},
    ]


def replace_entry_cmds(entry: Entry, state: TableState, mark_mask: int) -> List[dict]:
    """The vif's chain, rule and map element made to record ``entry``, as commands
    for ONE transaction: the old rule is flushed and the old element deleted in
    the same transaction that adds the new ones, so a frame is classified by
    either the old rule or the new one, never by neither (nf_tables commits a
    transaction as one generation)."""
    cmds: List[dict] = []
    if entry.chain in state.chains:
        cmds.append({"flush": {"chain": dict(_T, name=entry.chain)}})
    if entry.vif in state.elements:
        cmds.append({"delete": {"element": dict(_T, name=MAP, elem=[entry.vif])}})
    return cmds + add_entry_cmds(entry, mark_mask)


def remove_entry_cmds(vif: str, state: TableState) -> List[dict]:
    """Delete the vif's map element and chain (only what exists)."""
    cmds: List[dict] = []
    if vif in state.elements:
        cmds.append({"delete": {"element": dict(_T, name=MAP, elem=[vif])}})
    chain = chain_name(vif)
    if chain in state.chains:
        cmds.append({"flush": {"chain": dict(_T, name=chain)}})
        cmds.append({"delete": {"chain": dict(_T, name=chain)}})
    return cmds


def entry_removal_cmds(vif: str) -> List[dict]:
    """Delete the vif's map element and chain, which exist (just added)."""
    chain = chain_name(vif)
    return [{"delete": {"element": dict(_T, name=MAP, elem=[vif])}},
            {"flush": {"chain": dict(_T, name=chain)}},
            {"delete": {"chain": dict(_T, name=chain)}}]


def delete_table_cmds() -> List[dict]:
    return [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}]


def check_support() -> None:
    """Raise EnvironmentProblem when the kernel has no nftables bridge family.

    Adds a scratch bridge table with a prerouting base chain and deletes it in
    the same transaction: the kernel checks the family and hook when the
    transaction is prepared, and nothing is left behind either way.
    """
    probe = "vif_qos_probe"
    ctx = _nft()
    rc, _out, err = ctx.json_cmd({"nftables": [
        {"add": {"table": {"family": FAMILY, "name": probe}}},
        {"add": {"chain": {"family": FAMILY, "table": probe, "name": "p",
                           "type": "filter", "hook": "prerouting",
                           "prio": BASE_PRIORITY, "policy": "accept"}}},
        {"delete": {"table": {"family": FAMILY, "name": probe}}},
    ]})
    if rc != 0:
        raise EnvironmentProblem(
            "the kernel lacks nftables bridge-family support (nf_tables, "
            f"nft_chain_bridge / CONFIG_NF_TABLES_BRIDGE): {' '.join(str(err).split())}")
