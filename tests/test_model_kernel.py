"""The plans the model makes are what the kernel accepts, without warnings (C08, C03).

The oracle is iproute2's tc inside a namespace this test makes (a veth pair with
MTU 1500): every TBF and HTB plan vif-qos derives must be accepted, produce no
kernel warning (extack on stderr, sch_tbf's ratelimited printk in the kernel
log), and read back with the exact rate. The uncorrected inputs are shown to be
refused or mangled by the same kernel, which is why the model corrects them.
"""

import json
import subprocess
import uuid

import pytest

from vif_qos.sim.net import run
from vif_qos.config import policy as policymod
from vif_qos.core import resolve
from vif_qos.model import VifFacts

pytestmark = pytest.mark.kernel


@pytest.fixture
def dev(namespaces):
    ns = namespaces.make("model")
    name = "vq" + uuid.uuid4().hex[:8]
    run("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p", ns=ns)
    run("ip", "link", "set", name, "up", ns=ns)
    return ns, name


def kernel_log_lines(name):
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f" {name} " in line or f"{name}:" in line]


def tc(ns, *args, check=True):
    return run("tc", *[str(a) for a in args], ns=ns, check=check)


def plan_for(spec, policy_text="[bridges]\nrate = 1tbit\n"):
    policy, problems = policymod.check_policy_text(policy_text, "test policy")
    assert not problems
    return resolve.plan_vif(VifFacts(vif="vifT.0", devid=0), policy, (spec, "--qos"))


def tbf_args(plan):
    i = plan.inbound
    args = ["rate", f"{i.rate_bits_per_s}bit", "burst", i.burst_bytes, "limit", i.limit_bytes]
    if i.peak_bits_per_s is not None:
        args += ["peakrate", f"{i.peak_bits_per_s}bit", "minburst", i.minburst_bytes]
    return args


TBF_SPECS = [
    "rate_in=1mbit,latency=50ms,peak=2mbit,burst=40MB",   # the seed's line, corrected
    "rate_in=1mbit,peak=2mbit",
    "rate_in=1mbit,burst=1000",
    "rate_in=1mbit,peak=1000008bit",     # one byte/s above the rate
    "rate_in=3kbit",
    "rate_in=100mbit",
    "rate_in=35gbit",
    "rate_in=100gbit",
    "rate_in=1tbit,latency=1s",
    "rate_in=10Mb/s@50ms,limit=100",
]


@pytest.mark.parametrize("spec", TBF_SPECS)
def test_tbf_plans_are_accepted_without_warnings(dev, spec):
    ns, name = dev
    plan = plan_for(spec)
    before = len(kernel_log_lines(name))
    result = tc(ns, "qdisc", "add", "dev", name, "root", "tbf", *tbf_args(plan))
    assert "Warning" not in result.stderr, result.stderr
    assert kernel_log_lines(name)[before:] == []
    (qdisc,) = json.loads(tc(ns, "-j", "qdisc", "show", "dev", name).stdout)
    assert qdisc["kind"] == "tbf"
    assert qdisc["options"]["rate"] * 8 == plan.inbound.rate_bits_per_s   # exact, even 1tbit
    # tc passes the burst as a time in whole microseconds: equal within 1 us of traffic
    assert abs(qdisc["options"]["burst"] - plan.inbound.burst_bytes) <= \
        plan.inbound.rate_bits_per_s // 8 // 10 ** 6 + 1


HTB_SPECS = [
    "rate_out=1mbit",
    "rate_out=1mbit,ceil=10mbit,quantum=100",
    "rate_out=10kbit",
    "rate_out=5gbit,quantum=1m",
    "rate_out=100gbit,burst=1000",
]


@pytest.mark.parametrize("spec", HTB_SPECS)
def test_htb_plans_are_accepted_without_warnings(dev, spec):
    ns, name = dev
    plan = plan_for(spec)
    u, o = plan.uplink, plan.outbound
    major = f"{u.qdisc_major:x}"
    tc(ns, "qdisc", "add", "dev", name, "root", "handle", f"{major}:", "htb", "default", "2")
    classes = [(f"{major}:", f"{major}:1", u.root), (f"{major}:1", f"{major}:2", u.default),
               (f"{major}:1", f"{major}:100", o)]
    for parent, classid, c in classes:
        result = tc(ns, "class", "add", "dev", name, "parent", parent, "classid", classid, "htb",
                    "rate", f"{c.rate_bits_per_s}bit", "ceil", f"{c.ceil_bits_per_s}bit",
                    "burst", c.burst_bytes, "cburst", c.cburst_bytes, "quantum", c.quantum_bytes)
        assert "Warning" not in result.stderr, (classid, result.stderr)


def test_what_the_kernel_does_with_the_uncorrected_inputs(dev):
    ns, name = dev
    # the seed's exact line: tc refuses a peakrate without mtu/minburst
    bad = tc(ns, "qdisc", "add", "dev", name, "root", "tbf", "rate", "1mbit", "latency", "50ms",
             "peakrate", "2mbit", "maxburst", "40MB", check=False)
    assert bad.returncode != 0 and "mtu" in bad.stderr
    # a peakrate equal to the rate: the kernel refuses (EINVAL)
    bad = tc(ns, "qdisc", "add", "dev", name, "root", "tbf", "rate", "1mbit", "burst", "15k",
             "limit", "30k", "peakrate", "1mbit", "minburst", "1514", check=False)
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
    # a 40MB bucket at 1mbit (335 s of traffic) is silently mangled on the way in
    tc(ns, "qdisc", "add", "dev", name, "root", "tbf", "rate", "1mbit", "burst", "40MB",
       "limit", "30k")
    (qdisc,) = json.loads(tc(ns, "-j", "qdisc", "show", "dev", name).stdout)
    assert qdisc["options"]["burst"] != 40 * 1048576
