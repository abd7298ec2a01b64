#!/usr/bin/python3
"""A guest shaped by the installed Debian package stays shaped across an upgrade.

Run by .ci/deb-check inside the clean Debian root, with Debian's python3 and the
INSTALLED package (nothing from the checkout): ``deb-upgrade-guest.py DIR``.

Phase 1 (the older package installed): a simulated dom0 (vif_qos.sim.dom0.Dom0,
whose private /etc/xen is a copy of the root's: the package's hook and the admin's
edited /etc/xen/vif-qos.conf), guest ``upgrade-web`` (domid 5) brought online by
Debian's vif-bridge through the package's hook; checks hotplug-status
``connected`` and that the kernel holds what the edited policy asks (a TBF of
RATE_IN on the vif, an HTB leaf of RATE_OUT on the uplink, the vif in the nftables
table); writes ``DIR/ready``.

Phase 2, once ``DIR/go`` exists (the CI upgrades the package meanwhile): the
kernel objects are the same ones (the vif's qdisc and the uplink's classes as tc
shows them, unchanged); the NEW program's ``vif-qos check`` exits 0 (``status`` when
the installed version has no ``check`` command; said in the output); inbound
traffic is still shaped (iperf3, within 5 %, GSO as vif_qos.sim.net sets it up);
``offline`` by the new program removes the shaping. Exit 0 when all hold.
"""

import json
import os
import subprocess
import sys
import time

from vif_qos.sim.dom0 import Dom0

GUEST = "upgrade-web"
DOMID = 5
VIF = f"vif{DOMID}.0"
RATE_IN = 7_000_000
RATE_OUT = 3_000_000
TOLERANCE = 0.05


def say(text):
    print(f"deb-upgrade-guest: {text}", flush=True)


def in_dom0(dom0, *argv):
    return subprocess.run(["ip", "netns", "exec", dom0.host.dom0, *argv],
                          capture_output=True, text=True, timeout=60)


def kernel_state(dom0):
    qdisc = json.loads(in_dom0(dom0, "tc", "-j", "qdisc", "show", "dev", VIF).stdout)
    # tc's HTB class output has no JSON form in iproute2 6.1: the text, one class a line.
    classes = in_dom0(dom0, "tc", "class", "show", "dev", "peth0").stdout.splitlines()
    table = in_dom0(dom0, "nft", "list", "table", "bridge", "vif_qos").stdout
    return qdisc, classes, table


def check_shaped(state):
    qdisc, classes, table = state
    tbf = [q for q in qdisc if q.get("root") and q.get("kind") == "tbf"]
    assert tbf and tbf[0]["options"]["rate"] * 8 == RATE_IN, qdisc
    assert any(f" rate {RATE_OUT // 1_000_000}Mbit " in c for c in classes), classes
    assert VIF in table, table


def main(workdir):
    ok = False
    with Dom0(os.path.join(workdir, "tree")) as dom0:
        guest = dom0.host.add_guest(DOMID, 0, name=GUEST, attach=False)
        dom0.xs.seed_vif(DOMID, 0, name=GUEST, mac=guest.mac)
        res = dom0.hotplug("online", DOMID)
        status = dom0.xs.read(f"backend/vif/{DOMID}/0/hotplug-status")
        assert res.returncode == 0 and status == "connected", (res, dom0.hotplug_log())
        before = kernel_state(dom0)
        check_shaped(before)
        say(f"{VIF} shaped by the installed package: inbound {RATE_IN} bit/s, "
            f"outbound {RATE_OUT} bit/s (from the edited /etc/xen/vif-qos.conf)")
        open(os.path.join(workdir, "ready"), "w").close()

        deadline = time.monotonic() + 600
        while not os.path.exists(os.path.join(workdir, "go")):
            if time.monotonic() > deadline:
                raise SystemExit("deb-upgrade-guest: no go after 600 s")
            time.sleep(0.2)

        after = kernel_state(dom0)
        assert after[0] == before[0] and after[1] == before[1], (before, after)
        check_shaped(after)
        say("after the upgrade: the same TBF, HTB classes and nftables entries")
        commands = dom0.vif_qos("--help").stdout
        verb = "check" if "\n  check " in commands else "status"
        res = dom0.vif_qos(verb)
        say(f"vif-qos {verb} (the upgraded program) exited {res.returncode}"
            + ("" if verb == "check" else " (this version has no 'check' command)"))
        sys.stdout.write(res.stdout)
        assert res.returncode == 0, res
        if verb == "status":
            assert VIF in res.stdout, res.stdout
        m = dom0.host.measure(guest, "inbound", window_s=2.0)
        ratio = m.wire_ratio(RATE_IN)
        say(f"inbound after the upgrade: {m.wire_bits_per_s / 1e6:.2f} Mbit/s on the wire "
            f"= {ratio:.3f} x configured")
        assert abs(ratio - 1) <= TOLERANCE, ratio
        res = dom0.hotplug("offline", DOMID)
        assert res.returncode == 0, res
        qdisc, classes, table = kernel_state(dom0)
        assert not any(q.get("kind") == "tbf" for q in qdisc) and VIF not in table
        assert not any(f" rate {RATE_OUT // 1_000_000}Mbit " in c for c in classes), classes
        say("offline by the upgraded program removed the shaping")
        ok = True
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
