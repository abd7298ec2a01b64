"""Hotplug commands: argv/env parsing as vif-common.sh does it, facts from dom0-owned
nodes only, failure reporting through hotplug-error/hotplug-status, logging.

xenstore is the xenstored double driven by the real xenstore tools; the policy,
resolver and kernel side are small recording stand-ins here (the end-to-end tests
in test_hotplug_e2e.py use the real ones).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import List

import pytest

from vif_qos.errors import ConfigError, InputError, KernelError, XenstoreError
from vif_qos.xen.hotlog import HotplugLog
from vif_qos.xen.hotplug import (Invocation, final_dev_name, hotplug_main, parse_invocation,
                                 read_facts, tap_ids, xenbus_ids)
from vif_qos.xen.services import Services
from vif_qos.model import HostSettings, VifPlan
from vif_qos.xen.xenstore import Xenstore


# Every test: hotplug logs go to a file of its own (conftest.quiet_logs).
pytestmark = pytest.mark.usefixtures("quiet_logs")


# -- parsing -----------------------------------------------------------------------

PV_ENV = {"vif": "vif3.0", "XENBUS_PATH": "backend/vif/3/0", "script": "/etc/xen/scripts/vif-bridge",
          "XENBUS_TYPE": "vif", "XENBUS_BASE_PATH": "backend", "netdev": ""}


def test_pv_online_parsed():
    inv = parse_invocation("online", ["type_if=vif"], PV_ENV)
    assert (inv.command, inv.type_if, inv.dev, inv.domid, inv.devid) == (
        "online", "vif", "vif3.0", 3, 0)
    assert inv.xenbus_path == "backend/vif/3/0" and inv.hook_dev is None


def test_type_if_defaults_to_vif_and_argv_overrides_env():
    inv = parse_invocation("offline", ["vif=vif9.2", "XENBUS_PATH=backend/vif/9/2"], PV_ENV)
    assert (inv.dev, inv.domid, inv.devid) == ("vif9.2", 9, 2)


@pytest.mark.parametrize("command, type_if", [
    ("online", "tap"), ("offline", "tap"), ("add", "vif"), ("remove", "vif"),
    ("online", "vif2"), ("add", "bogus")])
def test_other_combinations_do_nothing(command, type_if):
    env = dict(PV_ENV, INTERFACE="vif3.0-emu")
    assert parse_invocation(command, [f"type_if={type_if}"], env) is None
    assert hotplug_main(command, [f"type_if={type_if}"], env=env) == 0


def test_hvm_tap_parsed_from_interface():
    env = dict(PV_ENV, INTERFACE="vif12.1-emu")
    inv = parse_invocation("add", ["type_if=tap"], env)
    assert (inv.dev, inv.domid, inv.devid) == ("vif12.1-emu", 12, 1)
    # vif-common.sh: XENBUS_PATH="/local/domain/0/backend/vif/$domid/$devid"
    assert inv.xenbus_path == "/local/domain/0/backend/vif/12/1"


def test_pre_42_tap_name():
    assert tap_ids("tap4.0") == (4, 0)
    with pytest.raises(InputError):
        tap_ids("eth0")


@pytest.mark.parametrize("path, ids", [
    ("backend/vif/3/0", (3, 0)), ("/local/domain/0/backend/vif/17/4", (17, 4)),
    ("/local/domain/5/backend/vif/3/1", (3, 1))])
def test_xenbus_ids(path, ids):
    assert xenbus_ids(path) == ids


@pytest.mark.parametrize("path", ["backend/vbd/3/0", "backend/vif/x/0", "", "/vif/3/0"])
def test_bad_xenbus_path_refused(path):
    with pytest.raises(InputError):
        xenbus_ids(path)


def test_missing_variables_fail_online_but_not_offline():
    env = {"XENBUS_PATH": "backend/vif/3/0"}
    with pytest.raises(InputError):
        parse_invocation("online", ["type_if=vif"], env)
    assert hotplug_main("online", ["type_if=vif"], env=env) == 2
    assert hotplug_main("offline", ["type_if=vif"], env=env) == 0


def test_final_name_after_vifname_rename():
    pv = Invocation("online", "vif", "vif3.0", "backend/vif/3/0", 3, 0)
    tap = Invocation("add", "tap", "vif3.0-emu", "/local/domain/0/backend/vif/3/0", 3, 0)
    assert final_dev_name(pv, None) == "vif3.0"
    assert final_dev_name(pv, "web1") == "web1"
    assert final_dev_name(tap, "web1") == "web1-emu"
    hooked = Invocation("online", "vif", "vif3.0", "backend/vif/3/0", 3, 0, hook_dev="web1")
    assert final_dev_name(hooked, "other") == "web1"


# -- facts from xenstore --------------------------------------------------------------


def adapter(xs):
    return Xenstore(env=dict(os.environ, **xs.env()))


def test_facts_from_dom0_owned_nodes(xs):
    xs.seed_vif(3, 0, name="web1", uuid="3fa85f64-5717-4562-b3fc-2c963f66afa6",
                rate="250000,50000", vifname="web1e0", bridge="xenbr1",
                mac="00:16:3e:01:02:03")
    facts = read_facts(adapter(xs), parse_invocation("online", ["type_if=vif"], PV_ENV))
    assert facts.vif == "web1e0" and facts.devid == 0 and facts.domid == 3
    assert facts.domain_name == "web1"
    assert facts.domain_uuid == "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    assert facts.bridge == "xenbr1" and facts.mac == "00:16:3e:01:02:03"
    assert facts.xen_rate == "250000,50000"
    assert facts.xen_rate_source == "xenstore:backend/vif/3/0/rate"


def test_no_rate_and_name_from_vm_path(xs):
    xs.seed_vif(4, 1, name="db")
    xs.rm("/local/domain/4/name")  # only /vm/<uuid>/name left
    env = dict(PV_ENV, vif="vif4.1", XENBUS_PATH="backend/vif/4/1")
    facts = read_facts(adapter(xs), parse_invocation("online", [], env))
    assert facts.xen_rate is None and facts.domain_name == "db" and facts.vif == "vif4.1"


def test_c09_guest_written_nodes_change_nothing(xs):
    xs.seed_vif(3, 0, name="web1", rate="250000,50000")
    inv = parse_invocation("online", ["type_if=vif"], PV_ENV)
    before = read_facts(adapter(xs), inv)
    front = "/local/domain/3/device/vif/0"
    for key, value in (("rate", "4294967295,0"), ("qos", "rate=100gbit"),
                       ("vifname", "evil0"), ("bridge", "xenbr9"), ("mac", "ff:ff:ff:ff:ff:ff")):
        xs.guest_write(3, f"{front}/{key}", value)
    xs.guest_write(3, "/local/domain/3/data/qos", "rate=100gbit")
    assert read_facts(adapter(xs), inv) == before


def test_bridge_precedence(xs):
    xs.seed_vif(3, 0, name="web1", bridge="xenbr1")
    env = dict(PV_ENV, bridge="envbr")
    assert read_facts(adapter(xs), parse_invocation("online", [], env)).bridge == "xenbr1"
    inv = parse_invocation("online", ["bridge=eth1"], env)  # the hook's final value
    assert read_facts(adapter(xs), inv).bridge == "eth1"


def test_frontend_id_mismatch_refused(xs):
    xs.seed_vif(3, 0, name="web1")
    xs.write("backend/vif/3/0/frontend-id", "4")
    with pytest.raises(InputError, match="frontend-id"):
        read_facts(adapter(xs), parse_invocation("online", [], PV_ENV))


def test_missing_backend_dir(xs):
    with pytest.raises(XenstoreError, match="backend directory does not exist"):
        read_facts(adapter(xs), parse_invocation("online", [], PV_ENV))


# -- the whole command with stand-in services -----------------------------------------


@dataclass
class FakePolicy:
    host: HostSettings = field(default_factory=HostSettings)


@dataclass
class Recorder:
    policy: object = field(default_factory=FakePolicy)
    policy_error: Exception = None
    plan_error: Exception = None
    apply_error: Exception = None
    remove_error: Exception = None
    applied: List[VifPlan] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    facts: list = field(default_factory=list)

    def services(self, xs):
        def load_policy(path=None):
            if self.policy_error:
                raise self.policy_error
            return self.policy

        def plan_for_facts(facts, policy):
            self.facts.append(facts)
            if self.plan_error:
                raise self.plan_error
            return VifPlan(vif=facts.vif, bridge=facts.bridge, inbound=None, outbound=None,
                           uplink=None, notes=("burst raised to 1514 bytes",))

        def apply_vif(plan, owner=None):
            if self.apply_error:
                raise self.apply_error
            self.applied.append(plan)

        def remove_vif(vif, host=None, owner=None):
            self.removed.append(vif)
            if self.remove_error:
                raise self.remove_error
            return True

        return Services(load_policy, plan_for_facts, apply_vif, remove_vif, adapter(xs))


def run(xs, rec, command="online", argv=("type_if=vif",), env=PV_ENV):
    return hotplug_main(command, list(argv), env=dict(env, **xs.env()),
                        services=rec.services(xs))


def test_online_applies_and_leaves_hotplug_status_to_vif_bridge(xs, quiet_logs):
    xs.seed_vif(3, 0, name="web1", rate="250000,50000", vifname="web1e0")
    rec = Recorder()
    assert run(xs, rec, argv=["type_if=vif", "dev=web1e0"]) == 0
    assert [p.vif for p in rec.applied] == ["web1e0"]
    assert xs.read("backend/vif/3/0/hotplug-status") == ""  # vif-bridge's success writes it
    assert xs.read("backend/vif/3/0/hotplug-error") is None
    text = quiet_logs.read_text()
    assert "online web1e0: not shaped: no limit is set for this vif" in text
    assert "burst raised to 1514 bytes" in text


@pytest.mark.parametrize("error, status", [
    (InputError("malformed rate", token="abc", source="xenstore:backend/vif/3/0/rate"), 2),
    (ConfigError("unknown pool", token="gold", source="/etc/xen/vif-qos.conf:4"), 2),
])
def test_online_refused_writes_hotplug_error(xs, quiet_logs, error, status):
    xs.seed_vif(3, 0, name="web1")
    rec = Recorder(plan_error=error)
    assert run(xs, rec) == status
    assert xs.read("backend/vif/3/0/hotplug-status") == "error"
    assert xs.read("backend/vif/3/0/hotplug-error") == f"vif-qos: {error.one_line()}"
    assert rec.applied == [] and rec.removed == []
    assert error.one_line() in quiet_logs.read_text()


def test_broken_policy_refuses(xs):
    xs.seed_vif(3, 0, name="web1")
    rec = Recorder(policy_error=ConfigError("not a section", token="[hostt]",
                                            source="/etc/xen/vif-qos.conf:1"))
    assert run(xs, rec) == 2
    assert xs.read("backend/vif/3/0/hotplug-error") == (
        "vif-qos: /etc/xen/vif-qos.conf:1: not a section: '[hostt]'")


def test_kernel_failure_undoes_partial_shaping(xs):
    xs.seed_vif(3, 0, name="web1")
    rec = Recorder(apply_error=KernelError("RTM_NEWQDISC refused: Invalid argument"))
    assert run(xs, rec) == 1
    assert rec.removed == ["vif3.0"]
    assert xs.read("backend/vif/3/0/hotplug-status") == "error"


def test_unexpected_exception_is_one_line_and_fails(xs):
    xs.seed_vif(3, 0, name="web1")
    rec = Recorder(apply_error=ZeroDivisionError("division by zero"))
    assert run(xs, rec) == 1
    assert xs.read("backend/vif/3/0/hotplug-error") == (
        "vif-qos: internal error: ZeroDivisionError: division by zero")


def test_on_failure_warn_leaves_vif_unshaped_but_up(xs, quiet_logs):
    xs.seed_vif(3, 0, name="web1")
    rec = Recorder(policy=FakePolicy(HostSettings(on_failure="warn")),
                   apply_error=KernelError("no HTB"))
    assert run(xs, rec) == 0
    assert rec.removed == ["vif3.0"]
    assert xs.read("backend/vif/3/0/hotplug-status") == ""
    assert "on_failure = warn" in quiet_logs.read_text()


def test_hvm_add_reads_the_pv_twin(xs):
    xs.seed_vif(12, 1, name="win", rate="125000,50000", vifname="win1")
    rec = Recorder()
    env = dict(PV_ENV, INTERFACE="vif12.1-emu", vif="vif12.1")
    assert run(xs, rec, command="add", argv=["type_if=tap"], env=env) == 0
    facts = rec.facts[0]
    assert (facts.vif, facts.domid, facts.devid, facts.xen_rate) == (
        "win1-emu", 12, 1, "125000,50000")


def test_offline_best_effort_always_zero(xs):
    xs.seed_vif(3, 0, name="web1", vifname="web1e0")
    rec = Recorder(remove_error=KernelError("boom"), policy_error=ConfigError("broken"))
    assert run(xs, rec, command="offline") == 0
    assert rec.removed == ["web1e0"]
    assert xs.read("backend/vif/3/0/hotplug-status") == ""


def test_offline_without_xenstore_uses_the_vif_name(xs):
    rec = Recorder()
    services = rec.services(xs)
    services.xenstore = Xenstore(env={"XENSTORED_PATH": "/nonexistent/socket"})
    assert hotplug_main("offline", ["type_if=vif"], env=PV_ENV, services=services) == 0
    assert rec.removed == ["vif3.0"]


def test_remove_of_tap(xs):
    xs.seed_vif(12, 1, name="win")
    rec = Recorder()
    env = dict(PV_ENV, INTERFACE="vif12.1-emu")
    assert run(xs, rec, command="remove", argv=["type_if=tap"], env=env) == 0
    assert rec.removed == ["vif12.1-emu"]


def test_xenstore_down_at_online_fails(xs):
    rec = Recorder()
    services = rec.services(xs)
    services.xenstore = Xenstore(env={"XENSTORED_PATH": "/nonexistent/socket"})
    assert hotplug_main("online", ["type_if=vif"], env=PV_ENV, services=services) == 1
    assert rec.applied == []


# -- logging ------------------------------------------------------------------------


def test_log_debug_switch_and_file(tmp_path):
    path = tmp_path / "log"
    log = HotplugLog("online vif3.0", log_path=str(path), use_syslog=False)
    log.debug("hidden")
    log.info("shown")
    log.set_debug(True)
    log.debug("now shown")
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("info: online vif3.0: shown")
    assert lines[1].endswith("debug: online vif3.0: now shown")


def test_log_without_var_log_xen_goes_to_stderr(tmp_path):
    err = io.StringIO()
    log = HotplugLog("x", log_path=str(tmp_path / "missing-dir" / "xen-hotplug.log"),
                     use_syslog=False, stderr=err)
    log.error("multi\nline")
    assert err.getvalue().endswith("err: x: multi line\n")
    assert not (tmp_path / "missing-dir").exists()


def test_log_not_written_twice_when_stderr_is_the_log(tmp_path):
    path = tmp_path / "xen-hotplug.log"
    with open(path, "a") as stream:
        log = HotplugLog("x", log_path=str(path), use_syslog=False, stderr=stream)
        log.info("once")
    assert path.read_text().count("once") == 1


def test_help_prints_usage_and_does_nothing(capsys):
    assert hotplug_main("online", ["--help"], env={}) == 0
    assert "usage: vif-qos online" in capsys.readouterr().out


def test_debug_logs_facts_and_sources(xs, quiet_logs, monkeypatch):
    monkeypatch.setenv("VIF_QOS_DEBUG", "1")
    xs.seed_vif(3, 0, name="web1", rate="250000,50000")
    rec = Recorder()
    original = rec.services

    def services(double):
        sv = original(double)
        plan_for = sv.plan_for_facts

        def with_sources(facts, policy):
            plan = plan_for(facts, policy)
            return VifPlan(vif=plan.vif, bridge=plan.bridge, inbound=None, outbound=None,
                           uplink=None, sources={"inbound.rate_bits_per_s":
                                                 "xenstore:backend/vif/3/0/rate"})
        sv.plan_for_facts = with_sources
        return sv

    rec.services = services
    assert run(xs, rec) == 0
    text = quiet_logs.read_text()
    assert "rate='250000,50000'" in text
    assert "inbound.rate_bits_per_s from xenstore:backend/vif/3/0/rate" in text


def test_syslog_daemon_facility_tagged(monkeypatch, tmp_path):
    import syslog
    calls = []
    monkeypatch.setattr(syslog, "openlog", lambda *a: calls.append(("open",) + a))
    monkeypatch.setattr(syslog, "syslog", lambda *a: calls.append(("log",) + a))
    log = HotplugLog("online vif3.0", log_path=str(tmp_path / "log"), use_syslog=True)
    log.error("refused")
    log.debug("dropped")  # debug off: neither syslog nor file
    assert calls == [("open", "vif-qos", syslog.LOG_PID, syslog.LOG_DAEMON),
                     ("log", syslog.LOG_DAEMON | syslog.LOG_ERR, "online vif3.0: refused")]


def test_online_past_its_time_budget_fails_with_the_reason(xs):
    import time as _time
    xs.seed_vif(3, 0, name="web1")
    rec = Recorder()
    services = rec.services(xs)
    services.apply_vif = lambda plan, owner=None: _time.sleep(20)  # a lock held by a stuck process
    env = dict(PV_ENV, VIF_QOS_HOTPLUG_TIMEOUT="0.5", **xs.env())
    started = _time.monotonic()
    assert hotplug_main("online", ["type_if=vif"], env=env, services=services) == 1
    assert _time.monotonic() - started < 10
    assert rec.removed == ["vif3.0"]  # undone
    assert xs.read("backend/vif/3/0/hotplug-status") == "error"
    assert "did not finish within 0.5 s" in xs.read("backend/vif/3/0/hotplug-error")


def test_offline_past_its_time_budget_still_exits_zero(xs):
    import time as _time
    rec = Recorder()
    services = rec.services(xs)
    services.remove_vif = lambda vif, host=None, owner=None: _time.sleep(20)
    env = dict(PV_ENV, VIF_QOS_HOTPLUG_TIMEOUT="0.5", **xs.env())
    assert hotplug_main("offline", ["type_if=vif"], env=env, services=services) == 0
