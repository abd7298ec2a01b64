#!/usr/bin/python3
"""The real-Xen scenarios, run inside the test host's dom0 (Xen 4.17 under QEMU TCG).

Started by ``run-in-dom0`` after vif-qos was installed. Every assertion is made here,
against the real toolstack (xl/libxl, oxenstored, netback, Debian's vif-bridge with
vif-qos's hook); the host only prints what this writes to ``--results``:
``summary.json`` (one entry per scenario: ok, checks, figures) and the log.

Standard library only (dom0's python3); the kernel is read with ``tc``, ``nft``,
``ip`` and /sys counters as independent oracles, vif-qos's own view with ``vif-qos
status --json`` and ``vif-qos plan --json``.

Also a helper for the "internet" namespace: ``scenarios.py send HOST PORT SECONDS``
(send zeros) and ``scenarios.py sink PORT SECONDS`` (accept one connection, read,
close), each printing ``connected`` once the TCP connection is up.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import traceback

INET_NS = "xt-inet"
BRIDGE = "xenbr0"
UPLINK = "peth0"
PEER_IP = "10.99.0.1"
AUTO_DIR = "/etc/xen/auto"
CONSOLE_DIR = "/var/log/xen/console"
RAMDISK = "/var/lib/xentest/domu-initrd.gz"
HOOK = "/etc/xen/scripts/vif-post.d/00-vif-qos.hook"
DUMP_HOOK = "/etc/xen/scripts/vif-post.d/99-xentest-dump.hook"
DUMP_FILE = "/run/xentest-hookdump"
TIMED_SCRIPT = "/etc/xen/scripts/vif-xentest-timed"
TIMING_FILE = "/run/xentest-timing"
#: Shaped rates must measure within this fraction of what the plan says.
TOLERANCE = 0.10
WARMUP_S = 4.0
WINDOW_S = 6.0

POLICY = """\
# /etc/xen/vif-qos.conf of the real-Xen test host
[bridges]
    [[xenbr0]]
    uplink = peth0
    rate = 100mbit

[pools]
    [[overage]]
    rate = 1500kbit
    ceil = 1500kbit

[domains]
    [[xt-heavy*]]
    pool = overage
    rate_in = 2mbit
    rate_out = 1mbit
    latency = 200ms
"""

# The scenario guests: name -> (ip, port its sender connects to, mac prefix, vif line
# options beyond mac/bridge, qos entries by devid). Rates of 1-2 Mbit/s, all distinct
# per guest and direction: an emulated host carries about 4 Mbit/s into a guest when
# the machine is idle (measured: 3 Mbit/s in came to 2.93, 2.5 % short; 0.5-2.7
# Mbit/s at load averages of 4-40 on 2 cores). TBF queues of 200 ms, not 50: the
# emulated path's round trip is long, and a queue shorter than it starves TCP.
GUESTS = {
    "xt-web": ("10.99.0.11/24", 5011, "00:16:3e:78:74:1", ",rate=2Mb/s",
               ["rate_in=1500kbit,latency=200ms", "rate=3mbit"]),
    "xt-heavy": ("10.99.0.12/24", 5012, "00:16:3e:78:74:2", "", []),
    "xt-bad": ("10.99.0.13/24", 5013, "00:16:3e:78:74:3", "", ["rate_in=fast"]),
}


def log(msg: str) -> None:
    line = f"[{time.monotonic() - T0:7.1f}s] {msg}"
    print(line, flush=True)


T0 = time.monotonic()


def sh(*argv: str, check: bool = True, timeout: float = 300, quiet: bool = False,
       ns: str = "", silent: bool = False) -> subprocess.CompletedProcess:
    """Run a command (in namespace ``ns``), log it with its duration.

    ``quiet``: log it only when it fails; ``silent``: never (a probe)."""
    full = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    start = time.monotonic()
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    took = time.monotonic() - start
    if not silent and (not quiet or p.returncode != 0):
        log(f"$ {' '.join(argv)}  -> {p.returncode} ({took:.1f} s)")
        out = (p.stdout + p.stderr).strip()
        if out and (p.returncode != 0 or not quiet):
            for line in out.splitlines()[:40]:
                log(f"    {line}")
    if check and p.returncode != 0:
        raise Failure(f"{' '.join(argv)} exited {p.returncode}")
    p.seconds = took
    return p


class Failure(Exception):
    """A scenario step that could not go on."""


class Scenario:
    """Checks and figures of one scenario."""

    def __init__(self, number: int, title: str):
        self.number, self.title = number, title
        self.checks = []      # (ok, text)
        self.figures = {}
        self.note = ""

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((bool(ok), text))
        log(f"  {'ok  ' if ok else 'FAIL'} {text}")
        return bool(ok)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks)


# -- dom0 set-up ----------------------------------------------------------------

def setup_network() -> None:
    """xenbr0 with one uplink port, peth0, a veth to the namespace playing the internet."""
    sh("ip", "netns", "add", INET_NS)
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", INET_NS)
    sh("ip", "link", "set", UPLINK, "master", BRIDGE)
    sh("ip", "link", "set", UPLINK, "up")
    sh("ip", "link", "set", BRIDGE, "up")
    sh("ip", "addr", "add", f"{PEER_IP}/24", "dev", "eth0", ns=INET_NS)
    sh("ip", "link", "set", "eth0", "up", ns=INET_NS)
    sh("ip", "link", "set", "lo", "up", ns=INET_NS)


def write_file(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def setup_files() -> None:
    write_file("/etc/xen/vif-qos.conf", POLICY)
    # A second hook after vif-qos's: what libxl and vif-bridge really give a hook.
    write_file(DUMP_HOOK, r"""# sourced by vif-bridge's call_hooks (xentest): record what a hook sees
{
echo "=== $command vif=$vif dev=$dev XENBUS_PATH=$XENBUS_PATH argv=$* t=$(cut -d' ' -f1 /proc/uptime)"
echo "env: $(env | grep -E '^(XENBUS_|netdev|vif|INTERFACE|script|type_if|vifname)' | sort | tr '\n' ' ')"
echo "netdev: $(ip -o link show "$dev" 2>&1 | head -1)"
echo "backend: $(xenstore-ls "/local/domain/0/$XENBUS_PATH" 2>&1 | tr '\n' ' ')"
fe=$(xenstore-read "$XENBUS_PATH/frontend" 2>/dev/null)
echo "frontend $fe: $(xenstore-read "$fe/state" 2>&1)"
} >> """ + DUMP_FILE + " 2>&1\n", 0o755)
    write_file(TIMED_SCRIPT, """#!/bin/sh
# xentest: vif-bridge, timed (script= of the vifs scenario 6 attaches)
start=$(cut -d' ' -f1 /proc/uptime)
/etc/xen/scripts/vif-bridge "$@"
rc=$?
echo "$1 $start $(cut -d' ' -f1 /proc/uptime) $rc" >> """ + TIMING_FILE + """
exit $rc
""", 0o755)
    for name in GUESTS:
        if name != "xt-bad":    # scenario 4 writes it, and removes it after
            write_domain_config(name)


def write_domain_config(name: str) -> str:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        raise Failure("no /boot/vmlinuz-* in dom0")
    ip, port, mac, vifopts, qos = GUESTS[name]
    lines = [f'name = "{name}"', f'kernel = "{kernels[-1]}"', f'ramdisk = "{RAMDISK}"',
             f'extra = "console=hvc0 quiet vq_ip={ip} vq_peer={PEER_IP} vq_port={port}"',
             "memory = 96", "vcpus = 1",
             f"vif = [ 'mac={mac}0,bridge={BRIDGE}{vifopts}' ]"]
    if qos:
        lines.append("qos = [ " + ", ".join(f"'{q}'" for q in qos) + " ]")
    path = f"{AUTO_DIR}/{name}.cfg"
    write_file(path, "\n".join(lines) + "\n")
    return path


# -- reading dom0 -----------------------------------------------------------------

def domid_of(name: str):
    p = sh("xl", "domid", name, check=False, silent=True)
    return int(p.stdout.strip()) if p.returncode == 0 else None


def xs_read(path: str):
    p = sh("xenstore-read", path, check=False, silent=True)
    return p.stdout.strip() if p.returncode == 0 else None


def status_json() -> dict:
    return json.loads(sh("vif-qos", "status", "--json", quiet=True).stdout)


def status_of(vif: str):
    for v in status_json()["vifs"]:
        if v["vif"] == vif:
            return v
    return None


def plan(*args: str) -> dict:
    return json.loads(sh("vif-qos", "plan", "--json", *args, quiet=True).stdout)


_RATE_UNITS = {"bit": 1, "kbit": 10 ** 3, "mbit": 10 ** 6, "gbit": 10 ** 9}


def tc_rate_bits(word: str) -> int:
    """tc's printed rate (``2Mbit``, ``300Kbit``, ``100bit``) in bits/s."""
    m = re.fullmatch(r"([0-9.]+)([KMG]?bit)", word)
    if not m:
        raise Failure(f"unreadable tc rate {word!r}")
    return round(float(m.group(1)) * _RATE_UNITS[m.group(2).lower()])


def tbf_rate_bits(vif: str):
    """The rate of the TBF root qdisc on ``vif`` (tc's text), or None."""
    p = sh("tc", "qdisc", "show", "dev", vif, "root", check=False, silent=True)
    m = re.search(r"qdisc tbf \S+ root .*?rate (\S+)", p.stdout)
    return tc_rate_bits(m.group(1)) if m else None


def htb_class(classid: str):
    """(rate, ceil, parent) of an HTB class on the uplink (tc's text), or None."""
    p = sh("tc", "class", "show", "dev", UPLINK, "classid", classid, check=False, silent=True)
    m = re.search(r"class htb (\S+) parent (\S+) .*?rate (\S+) ceil (\S+)", p.stdout)
    if not m:
        return None
    return tc_rate_bits(m.group(3)), tc_rate_bits(m.group(4)), m.group(2)


def uplink_classes() -> list:
    """The guests' leaf classes on the uplink (minor 0x100 and up: the policy's
    classid_min; the root, default and pool classes below it stay while vif-qos runs)."""
    p = sh("tc", "class", "show", "dev", UPLINK, check=False, silent=True)
    return sorted(c for c in re.findall(r"class htb (\S+)", p.stdout)
                  if int(c.split(":")[1] or "0", 16) >= 0x100)


def nft_table() -> str:
    return sh("nft", "list", "table", "bridge", "vif_qos", check=False, silent=True).stdout


def nft_rules_text() -> str:
    """Our nft table without its counters' values."""
    return re.sub(r"counter packets \d+ bytes \d+", "counter", nft_table())


def traces_of(vif: str) -> list:
    """Everything of ours that still names ``vif``: status entry, nft, netdev."""
    found = []
    if status_of(vif) is not None:
        found.append("vif-qos status entry")
    if re.search(rf'"{re.escape(vif)}"', nft_table()):
        found.append("nft table element/rule")
    if os.path.exists(f"/sys/class/net/{vif}"):
        found.append("netdev")
    return found


def wait_until(pred, timeout_s: float, step_s: float = 1.0):
    end = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value or time.monotonic() > end:
            return value
        time.sleep(step_s)


def console_ready_count(name: str) -> int:
    try:
        with open(f"{CONSOLE_DIR}/guest-{name}.log", errors="replace") as fh:
            return fh.read().count("xentest-guest ready")
    except FileNotFoundError:
        return 0


def too_slow(p: subprocess.CompletedProcess) -> str:
    """A note when libxl killed a hotplug script at its fixed 40 s limit."""
    if "because of timeout" in p.stdout + p.stderr:
        return (" (libxl killed a hotplug script at its 40 s limit: this emulated host "
                "was too slow, see the host's load average)")
    return ""


def create(name: str, sc: Scenario) -> int:
    before = console_ready_count(name)
    p = sh("xl", "create", f"{AUTO_DIR}/{name}.cfg", check=False, timeout=600)
    sc.figures.setdefault("xl create s", []).append(round(p.seconds, 1))
    if p.returncode != 0:
        raise Failure(f"xl create {name} failed" + too_slow(p))
    domid = domid_of(name)
    if not wait_until(lambda: console_ready_count(name) > before, 180):
        raise Failure(f"{name} (domid {domid}) never said 'xentest-guest ready' on its console")
    return domid


def gone(name: str, timeout_s: float = 120) -> bool:
    """Wait until the domain ``name`` no longer exists (xl domid fails)."""
    return wait_until(lambda: domid_of(name) is None, timeout_s)


# -- shaping checks ------------------------------------------------------------------

def check_shaped(sc: Scenario, name: str, domid: int, devid: int, expect: dict) -> dict:
    """hotplug-status connected; TBF, HTB leaf and nft element as ``expect`` (a plan)."""
    vif = f"vif{domid}.{devid}"
    back = f"/local/domain/0/backend/vif/{domid}/{devid}"
    sc.check(xs_read(f"{back}/hotplug-status") == "connected",
             f"{vif}: {back}/hotplug-status is connected")
    inb, outb = expect["inbound"], expect["outbound"]
    got_in = tbf_rate_bits(vif)
    sc.check(got_in == (inb["rate_bits_per_s"] if inb else None),
             f"{vif}: TBF root qdisc rate {got_in} bit/s, plan "
             f"{inb['rate_bits_per_s'] if inb else None}")
    st = status_of(vif)
    sc.check(st is not None, f"{vif}: in vif-qos status")
    classid = st and st["classid"]
    cls = htb_class(classid) if classid else None
    want = (outb["rate_bits_per_s"], outb["ceil_bits_per_s"]) if outb else None
    sc.check((cls[:2] if cls else None) == want,
             f"{vif}: HTB leaf {classid} on {UPLINK} rate/ceil {cls[:2] if cls else None}, "
             f"plan {want}")
    if outb and outb.get("pool"):
        sc.check(cls is not None and cls[2] != f"{classid.split(':')[0]}:1",
                 f"{vif}: leaf hangs under pool {outb['pool']}'s class "
                 f"({cls[2] if cls else None}), not the root")
    sc.check(f'"{vif}"' in nft_table(), f"{vif}: named in nft table bridge vif_qos")
    return {"classid": classid, "class": cls, "tbf": got_in, "mark": st and st["mark"]}


def expected_out_bits(p: dict) -> int:
    """What an otherwise idle uplink lets the guest send: its ceil, or its pool's."""
    out = p["outbound"]
    ceil = out["ceil_bits_per_s"]
    for pool in p["uplink"]["pools"]:
        if pool["name"] == out.get("pool"):
            ceil = min(ceil, pool["ceil_bits_per_s"])
    return ceil


def counter(dev: str, which: str) -> int:
    with open(f"/sys/class/net/{dev}/statistics/{which}") as fh:
        return int(fh.read())


def cpu_idle_share(seconds: float = 1.0) -> float:
    """dom0's idle share of its CPUs over ``seconds`` (/proc/stat: idle + iowait)."""
    def read():
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        return sum(values), values[3] + values[4]
    total0, idle0 = read()
    time.sleep(seconds)
    total1, idle1 = read()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(min_idle: float = 0.6, timeout_s: float = 30) -> None:
    """Wait until dom0 is mostly idle: the emulated host's traffic toward a guest
    needs its CPUs (netback's copies), and a command just run can leave work behind
    (the resident ``vif-qos serve`` answering the kernel's notifications, a
    ``vif-qos record`` from its timer)."""
    end = time.monotonic() + timeout_s
    idle = cpu_idle_share()
    while idle < min_idle and time.monotonic() < end:
        idle = cpu_idle_share()
    if idle < min_idle:
        log(f"dom0 still busy ({idle:.0%} idle) after {timeout_s:g} s; measuring anyway")


def measure(direction: str, guest: str, domid: int, devid: int = 0) -> float:
    """Bits/s on the wire: inbound the vif's tx counter, outbound the uplink's,
    once dom0 is quiet (:func:`wait_quiet`)."""
    wait_quiet()
    ip, port = GUESTS[guest][0].split("/")[0], GUESTS[guest][1]
    me = os.path.abspath(__file__)
    seconds = WARMUP_S + WINDOW_S + 30
    if direction == "inbound":
        argv, dev = ["send", ip, "5001", str(seconds)], f"vif{domid}.{devid}"
    else:
        argv, dev = ["sink", str(port), str(seconds)], UPLINK
    helper = subprocess.Popen(["ip", "netns", "exec", INET_NS, sys.executable, me, *argv],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = helper.stdout.readline().strip()
        if line != "connected":
            raise Failure(f"{direction} transfer to/from {guest} did not start: {line!r}")
        time.sleep(WARMUP_S)
        b0, t0 = counter(dev, "tx_bytes"), time.monotonic()
        time.sleep(WINDOW_S)
        b1, t1 = counter(dev, "tx_bytes"), time.monotonic()
    finally:
        helper.kill()
        helper.wait()
    return (b1 - b0) * 8 / (t1 - t0)


def check_rates(sc: Scenario, guest: str, domid: int, p: dict) -> None:
    for direction, want in (("inbound", p["inbound"]["rate_bits_per_s"]),
                            ("outbound", expected_out_bits(p))):
        got = measure(direction, guest, domid)
        sc.figures[f"{guest} {direction} Mbit/s (plan)"] = \
            f"{got / 1e6:.3f} ({want / 1e6:.3f})"
        slow = (" - far below the plan: an emulated host this slow cannot carry the rate, "
                "see the host's load average" if got < want / 2 else "")
        sc.check(abs(got / want - 1) <= TOLERANCE,
                 f"{guest} {direction}: {got / 1e6:.3f} Mbit/s measured on "
                 f"{'the vif' if direction == 'inbound' else UPLINK}, plan "
                 f"{want / 1e6:.3f} (within {TOLERANCE:.0%}){slow}")


def check_nothing_of(sc: Scenario, vif: str, wait_s: float = 60) -> None:
    left = wait_until(lambda: not traces_of(vif), wait_s) or traces_of(vif)
    left = [] if left is True else left
    sc.check(not left, f"nothing of ours names {vif}" + (f": {left}" if left else ""))


def check_classes_back(sc: Scenario, baseline: list, what: str) -> None:
    now = uplink_classes()
    sc.check(now == baseline, f"{what}: leaf classes on {UPLINK} {now}, as before {baseline}")


# -- scenarios ------------------------------------------------------------------------

def scenario1(sc: Scenario, state: dict) -> None:
    state["classes0"] = uplink_classes()
    domid = create("xt-web", sc)
    state["web"] = domid
    want = plan("--domain", "xt-web", "--devid", "0")
    log("plan --domain xt-web: in %s out %s" % (want["inbound"], want["outbound"]))
    check_shaped(sc, "xt-web", domid, 0, want)
    # The running guest's facts, read from xenstore as the hotplug run reads them.
    live = plan("--xenbus-path", f"backend/vif/{domid}/0")
    sc.check((live["inbound"], live["outbound"]) == (want["inbound"], want["outbound"]),
             "plan --xenbus-path of the running vif equals plan --domain")
    check_rates(sc, "xt-web", domid, want)


def scenario2(sc: Scenario, state: dict) -> None:
    domid = state.get("web")
    if domid is None:
        raise Failure("xt-web is not running (scenario 1 failed)")
    vif0 = f"vif{domid}.0"
    before0 = (tbf_rate_bits(vif0), status_of(vif0))
    # Through vif-bridge timed (scenario 6 prints the figures: the hook as installed).
    if os.path.exists(TIMING_FILE):
        os.unlink(TIMING_FILE)
    p = sh("xl", "network-attach", "xt-web", f"bridge={BRIDGE}",
           f"mac={GUESTS['xt-web'][2]}1", "script=vif-xentest-timed", check=False,
           timeout=300)
    sc.figures["xl network-attach s"] = round(p.seconds, 1)
    sc.check(p.returncode == 0, "xl network-attach xt-web exits 0")
    listed = sh("xenstore-list", f"/local/domain/0/backend/vif/{domid}", check=False,
                quiet=True).stdout.split()
    devid = max((int(d) for d in listed if d.isdigit()), default=1)
    want = plan("--domain", "xt-web", "--devid", str(devid))
    check_shaped(sc, "xt-web", domid, devid, want)
    p = sh("xl", "network-detach", "xt-web", str(devid), check=False, timeout=300)
    sc.figures["xl network-detach s"] = round(p.seconds, 1)
    sc.check(p.returncode == 0, f"xl network-detach xt-web {devid} exits 0")
    check_nothing_of(sc, f"vif{domid}.{devid}")
    # offline may still be running (udev's cleanup can have removed the shaping).
    wait_until(lambda: any(r[0] == "offline" for r in timing_rows()), 60)
    state["timing with hook"] = timing_rows()
    after0 = (tbf_rate_bits(vif0), status_of(vif0))
    strip = lambda s: s and {k: v for k, v in s.items() if k not in ("classified",)} | {
        "inbound": s["inbound"] and {k: v for k, v in s["inbound"].items()
                                     if not k.startswith("sent") and k != "drops"},
        "outbound": s["outbound"] and {k: v for k, v in s["outbound"].items()
                                       if not k.startswith("sent") and k != "drops"}}
    sc.check((before0[0], strip(before0[1])) == (after0[0], strip(after0[1])),
             f"{vif0} untouched by the attach and detach of vif{domid}.{devid}")


def scenario3(sc: Scenario, state: dict) -> None:
    classes0 = state["classes0"] if "classes0" in state else uplink_classes()
    domid = state.get("web")
    if domid is not None:
        p = sh("xl", "shutdown", "-w", "xt-web", check=False, timeout=300)
        sc.figures["xl shutdown -w s"] = round(p.seconds, 1)
        sc.check(p.returncode == 0, "xl shutdown -w xt-web exits 0")
        # offline runs from xl's monitor a few seconds after shutdown -w returns.
        sc.check(gone("xt-web"), "xt-web is gone")
        check_nothing_of(sc, f"vif{domid}.0")
        check_classes_back(sc, classes0, "after xl shutdown")
    else:
        sc.check(False, "xt-web was not running for xl shutdown (scenario 1 failed)")

    want = plan("--domain", "xt-heavy")
    old = create("xt-heavy", sc)
    ready = console_ready_count("xt-heavy")
    # The guest reboots itself: xl reboot asks its kernel, which runs /sbin/reboot
    # (busybox reboot -f); xl's monitor makes a new domain of the same name.
    sh("xl", "reboot", "xt-heavy", check=False)
    new = wait_until(lambda: (domid_of("xt-heavy") or old) != old and domid_of("xt-heavy"), 180)
    sc.check(bool(new), f"xt-heavy rebooted with a new domid ({old} -> {new})")
    if not new:
        return
    sc.check(bool(wait_until(lambda: console_ready_count("xt-heavy") > ready, 180)),
             "the rebooted xt-heavy is up again")
    check_nothing_of(sc, f"vif{old}.0")
    check_shaped(sc, "xt-heavy", new, 0, want)
    # Its traffic is measured in scenario 5 (in after set, out after assign and restart).
    state["heavy"] = new


def scenario4(sc: Scenario, state: dict) -> None:
    classes = uplink_classes()
    vifs = [v["vif"] for v in status_json()["vifs"]]
    nft_before = nft_rules_text()
    cfg = write_domain_config("xt-bad")
    try:
        p = sh("xl", "create", cfg, check=False, timeout=600)
    finally:
        os.unlink(cfg)
    out = p.stdout + p.stderr
    sc.check(p.returncode != 0, f"xl create xt-bad fails (exit {p.returncode})")
    sc.check(not too_slow(p), "no hotplug script hit libxl's time limit" + too_slow(p))
    lines = [l for l in out.splitlines() if "vif-qos:" in l]
    sc.check(len(lines) == 1 and "'fast'" in lines[0] and "xt-bad.cfg" in lines[0],
             f"xl prints vif-qos's one-line hotplug-error: {lines}")
    sc.check(gone("xt-bad", 60), "no domain xt-bad is left")
    sc.check(wait_until(lambda: [v["vif"] for v in status_json()["vifs"]] == vifs, 30),
             "vif-qos status lists the same vifs as before")
    check_classes_back(sc, classes, "after the failed create")
    sc.check(nft_rules_text() == nft_before, "the nft table bridge vif_qos is as before")


def vif_qos_check(sc: Scenario, when: str, want_rc: int, vif: str = "") -> str:
    """``vif-qos check``: its exit status (0 in sync, 1 differs) and, when it differs,
    that it names ``vif``."""
    p = sh("vif-qos", "check", check=False)
    out = p.stdout + p.stderr
    sc.check(p.returncode == want_rc and (want_rc == 0 or vif in out),
             f"{when}: vif-qos check exits {p.returncode} (want {want_rc})"
             + (f", naming {vif}" if want_rc else "") + f": {out.strip().splitlines()[:1]}")
    return out


def record_sample(sc: Scenario, vif: str) -> tuple:
    """One ``vif-qos record`` run: the vif's rx counter (what the guest sent: its
    *out*) and the wall clock just before and just after it."""
    before, t_before = counter(vif, "rx_bytes"), time.time()
    p = sh("vif-qos", "record", "--quiet", check=False)
    after, t_after = counter(vif, "rx_bytes"), time.time()
    sc.check(p.returncode == 0, f"vif-qos record exits {p.returncode}")
    return before, after, t_before, t_after


def scenario5(sc: Scenario, state: dict) -> None:
    """Day-2 commands on a running real guest, under dom0's systemd."""
    domid = state.get("heavy")
    if domid is None:
        raise Failure("xt-heavy is not running (scenario 3 failed)")
    vif = f"vif{domid}.0"
    base = plan("--domain", "xt-heavy")

    # set: the TBF changed in place, measured at its new rate.
    p = sh("vif-qos", "set", "xt-heavy", "rate_in=1500kbit", "--reason", "xentest",
           check=False)
    sc.check(p.returncode == 0, f"vif-qos set xt-heavy rate_in=1500kbit exits {p.returncode}")
    sc.check(tbf_rate_bits(vif) == 1500000, f"vif-qos set: {vif}'s TBF now 1.5 Mbit/s")
    got = measure("inbound", "xt-heavy", domid)
    sc.figures["after set: xt-heavy inbound Mbit/s (1.500)"] = f"{got / 1e6:.3f}"
    sc.check(abs(got / 1.5e6 - 1) <= TOLERANCE,
             f"after set: inbound {got / 1e6:.3f} Mbit/s measured on {vif}, 1.500 "
             f"(within {TOLERANCE:.0%})")

    # assign: out of the pool (its own leaf under the root, at its own rate_out,
    # measured) and back into it (unset: the policy's keys again).
    p = sh("vif-qos", "assign", "xt-heavy", "none", check=False)
    alone = plan("--domain", "xt-heavy")
    st = status_of(vif)
    cls = htb_class(st["classid"]) if st and st["classid"] else None
    want = alone["outbound"] and (alone["outbound"]["rate_bits_per_s"],
                                  alone["outbound"]["ceil_bits_per_s"])
    sc.check(p.returncode == 0 and alone["outbound"] and not alone["outbound"].get("pool")
             and cls is not None and cls[2].endswith(":1") and cls[:2] == want,
             f"vif-qos assign xt-heavy none exits {p.returncode}: leaf {cls} under the "
             f"root, plan (with the override) {want}")
    if want:
        got = measure("outbound", "xt-heavy", domid)
        sc.figures["after assign none: xt-heavy outbound Mbit/s (plan)"] = \
            f"{got / 1e6:.3f} ({want[1] / 1e6:.3f})"
        sc.check(abs(got / want[1] - 1) <= TOLERANCE,
                 f"after assign none: outbound {got / 1e6:.3f} Mbit/s on {UPLINK}, plan "
                 f"{want[1] / 1e6:.3f} (within {TOLERANCE:.0%})")
    p = sh("vif-qos", "unset", "xt-heavy", check=False)
    st = status_of(vif)
    cls = htb_class(st["classid"]) if st and st["classid"] else None
    sc.check(p.returncode == 0 and tbf_rate_bits(vif) == base["inbound"]["rate_bits_per_s"]
             and cls is not None and not cls[2].endswith(":1"),
             f"vif-qos unset xt-heavy exits {p.returncode}: TBF {tbf_rate_bits(vif)} bit/s "
             f"again, leaf {cls} back under pool {base['outbound'].get('pool')}")
    vif_qos_check(sc, "after unset", 0)

    # systemctl restart nftables flushes the ruleset (Debian's /etc/nftables.conf);
    # vif-qos-reload.service (PartOf= and WantedBy= nftables.service) puts it back.
    sh("systemctl", "restart", "nftables", check=False)
    back = wait_until(lambda: f'"{vif}"' in nft_table(), 90)
    sc.check(back, f"after systemctl restart nftables, vif-qos-reload.service classified "
             f"{vif} again by itself")
    if not back:
        sh("systemctl", "status", "vif-qos-reload.service", check=False)
    vif_qos_check(sc, "after systemctl restart nftables", 0)
    # record: the bytes from the guest between two samples, as report gives them,
    # between what the vif's counter moved inside and outside the two runs; the
    # traffic between them is the measured upload. The record timer is held still
    # meanwhile: only these two samples fall in the window.
    sh("systemctl", "stop", "vif-qos-record.timer", check=False, quiet=True)
    try:
        b1, a1, tb1, ta1 = record_sample(sc, vif)
        got = measure("outbound", "xt-heavy", domid)
        b2, a2, tb2, ta2 = record_sample(sc, vif)
    finally:
        sh("systemctl", "try-restart", "vif-qos-record.timer", check=False, quiet=True)
    want = expected_out_bits(base)
    sc.figures["after nftables restart: xt-heavy outbound Mbit/s (plan)"] = \
        f"{got / 1e6:.3f} ({want / 1e6:.3f})"
    sc.check(abs(got / want - 1) <= TOLERANCE,
             f"after systemctl restart nftables: outbound {got / 1e6:.3f} Mbit/s on "
             f"{UPLINK}, plan {want / 1e6:.3f} (within {TOLERANCE:.0%})")
    # report keeps an interval when its midpoint is in --from..--to: around the
    # midpoint of the interval between the two samples, and no other's.
    p = sh("vif-qos", "report", "--json", "--domain", "xt-heavy",
           "--from", f"{(tb1 + tb2) / 2 - 0.5:.3f}", "--to", f"{(ta1 + ta2) / 2 + 0.5:.3f}",
           check=False, quiet=True)
    rows = [g for g in json.loads(p.stdout or "{}").get("guests", [])
            if g["domain"] == "xt-heavy"] if p.returncode == 0 else []
    recorded = sum(g["out"]["bytes"] for g in rows)
    sc.figures["record: xt-heavy out bytes (vif counter between the runs)"] = \
        f"{recorded} ({b2 - a1}..{a2 - b1})"
    sc.check(p.returncode == 0 and b2 - a1 > 0 and b2 - a1 <= recorded <= a2 - b1,
             f"vif-qos record + report: {recorded} bytes from xt-heavy, the vif's rx "
             f"counter moved {b2 - a1}..{a2 - b1} between the two records")

    # Drift made by hand: the TBF deleted. check names it (unless the running vif-qos
    # serve already repaired it from the netlink notification), reload restores it.
    serving = sh("systemctl", "is-active", "vif-qos.service", check=False,
                 silent=True).stdout.strip() == "active"
    sh("tc", "qdisc", "del", "dev", vif, "root")
    if serving:
        sc.check(wait_until(lambda: tbf_rate_bits(vif) is not None, 30),
                 f"vif-qos serve (running) put {vif}'s deleted TBF back by itself")
    else:
        vif_qos_check(sc, "after tc qdisc del", 1, vif)
    p = sh("vif-qos", "reload", check=False)
    sc.check(p.returncode == 0 and tbf_rate_bits(vif) == base["inbound"]["rate_bits_per_s"],
             f"vif-qos reload exits {p.returncode}: {vif}'s TBF {tbf_rate_bits(vif)} bit/s")
    vif_qos_check(sc, "after reload", 0)


def timing_rows() -> list:
    """``(command, start, end, exit status)`` of each timed vif-bridge run so far."""
    try:
        with open(TIMING_FILE) as fh:
            return [l.split() for l in fh if l.strip()]
    except FileNotFoundError:
        return []


def timing_figures(sc: Scenario, label: str, rows: list) -> None:
    for command in ("online", "offline"):
        took = [float(r[2]) - float(r[1]) for r in rows if r[0] == command]
        sc.figures[f"vif-bridge {command}, {label}: s"] = \
            " ".join(f"{t:.2f}" for t in took) or None
        sc.check(len(took) == 1 and all(r[3] == "0" for r in rows if r[0] == command),
                 f"vif-bridge {command}, {label}: {len(took)} run(s), all exit 0")


def scenario6(sc: Scenario, state: dict) -> None:
    """vif-bridge online/offline under libxl, timed: with the hook (scenario 2's
    attach and detach: through ``vif-qos serve`` when its socket is active, as the
    Debian package leaves it, else in-process) and without the hook."""
    domid = state.get("heavy")
    if domid is None:
        raise Failure("xt-heavy is not running (scenario 3 failed)")
    serving = sh("systemctl", "is-active", "vif-qos.socket", check=False,
                 silent=True).stdout.strip() == "active"
    timing_figures(sc, "hook " + ("via vif-qos serve" if serving else "in-process"),
                   state.get("timing with hook", []))
    aside = "/run/xentest-00-vif-qos.hook"
    if os.path.exists(TIMING_FILE):
        os.unlink(TIMING_FILE)
    shutil.move(HOOK, aside)
    try:
        mac = f"{GUESTS['xt-heavy'][2]}5"
        sh("xl", "network-attach", "xt-heavy", f"bridge={BRIDGE}", f"mac={mac}",
           "script=vif-xentest-timed", timeout=300)
        sh("xl", "network-detach", "xt-heavy", mac, timeout=300)
        wait_until(lambda: glob.glob(f"/sys/class/net/vif{domid}.*") ==
                   [f"/sys/class/net/vif{domid}.0"], 60)
        time.sleep(2)
    finally:
        shutil.move(aside, HOOK)
    timing_figures(sc, "no hook", timing_rows())


def scenario7(sc: Scenario, state: dict) -> None:
    """``xl destroy`` of the rebooted guest, last: it served scenarios 5 and 6 first."""
    classes0 = state["classes0"] if "classes0" in state else uplink_classes()
    domid = state.get("heavy")
    if domid is None:
        raise Failure("xt-heavy is not running (scenario 3 failed)")
    p = sh("xl", "destroy", "xt-heavy", check=False, timeout=300)
    sc.figures["xl destroy s"] = round(p.seconds, 1)
    sc.check(p.returncode == 0, "xl destroy xt-heavy exits 0")
    left = traces_of(f"vif{domid}.0")
    sc.check(not left, f"right after xl destroy returned, nothing names vif{domid}.0"
             + (f": {left}" if left else ""))
    check_classes_back(sc, classes0, "after xl destroy")
    sc.check(gone("xt-heavy"), "xt-heavy is gone")


SCENARIOS = [
    (1, "xl create: rate= and qos=[...], shaped as planned, measured both ways", scenario1),
    (2, "xl network-attach shaped at once; network-detach removes only its shaping", scenario2),
    (3, "xl shutdown -w, guest reboot (xl destroy: 7): nothing names the old vif", scenario3),
    (4, "a bad qos entry: xl create fails with vif-qos's one-line error, nothing left", scenario4),
    (5, "day-2: set, assign, unset, nftables restart, drift, reload, record", scenario5),
    (6, "timing of vif-bridge online/offline, with the hook and without", scenario6),
    (7, "xl destroy (scenario 3's third way, run last): nothing names the vif", scenario7),
]


def run_all(results: str, only: list) -> int:
    setup_network()
    setup_files()
    sh("vif-qos", "check-config", check=False)
    sh("xl", "info", quiet=True)
    state, summary = {}, []
    for number, title, fn in SCENARIOS:
        if only and number not in only:
            continue
        sc = Scenario(number, title)
        log(f"== scenario {number}: {title}")
        start = time.monotonic()
        try:
            fn(sc, state)
        except Failure as exc:
            sc.check(False, f"stopped: {exc}")
        except Exception as exc:  # a scenario's own bug: the others still run
            for line in traceback.format_exc().splitlines():
                log(f"    {line}")
            sc.check(False, f"stopped: {type(exc).__name__}: {exc}")
        sc.figures["scenario s"] = round(time.monotonic() - start, 1)
        summary.append({"scenario": number, "title": title, "ok": sc.ok, "note": sc.note,
                        "checks": sc.checks, "figures": sc.figures})
        write_file(os.path.join(results, "summary.json"), json.dumps(summary, indent=1))
        os.sync()   # what is written stays, should QEMU be stopped
    for name in GUESTS:
        if domid_of(name) is not None:
            sh("xl", "destroy", name, check=False)
    for path in (DUMP_FILE, TIMING_FILE):
        if os.path.exists(path):
            shutil.copy(path, results)
    for path in glob.glob(f"{CONSOLE_DIR}/*.log") + ["/var/log/xen/xen-hotplug.log"]:
        if os.path.exists(path):
            shutil.copy(path, results)
    return 0 if summary and all(s["ok"] for s in summary) else 1


# -- the internet namespace's helpers ---------------------------------------------------

def helper_send(host: str, port: int, seconds: float) -> int:
    end = time.monotonic() + seconds
    while True:
        try:
            s = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > end:
                print("no connection", flush=True)
                return 1
            time.sleep(0.5)
    print("connected", flush=True)
    chunk = b"\0" * 65536
    s.settimeout(10)
    while time.monotonic() < end:
        s.sendall(chunk)
    s.close()
    return 0


def helper_sink(port: int, seconds: float) -> int:
    end = time.monotonic() + seconds
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(30)
    conn, _ = srv.accept()
    print("connected", flush=True)
    conn.settimeout(10)
    while time.monotonic() < end:
        if not conn.recv(65536):
            break
    conn.close()
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "send":
        return helper_send(argv[1], int(argv[2]), float(argv[3]))
    if argv and argv[0] == "sink":
        return helper_sink(int(argv[1]), float(argv[2]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--only", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    return run_all(args.results, args.only)


if __name__ == "__main__":
    sys.exit(main())
