"""`vif-qos plan` and `vif-qos check-config` through the front door."""

import json
import subprocess
import sys
import textwrap

import pytest

from vif_qos import cli
from vif_qos.config import policy as policymod


@pytest.fixture
def conf(tmp_path, monkeypatch):
    """A policy file plus a domain config directory, named by $VIF_QOS_CONFIG."""
    xen = tmp_path / "xen"
    xen.mkdir()
    (xen / "baldr.cfg").write_text(textwrap.dedent("""\
        name = "baldr"
        vif = [ 'mac=00:16:3e:00:00:05,bridge=xenbr0,rate=10Mb/s@50ms' ]
        # the seed's tbf line as a qos spec
        qos = [ 'rate_in=1mbit,latency=50ms,peak=2mbit,burst=40MB' ]
        """))
    path = tmp_path / "vif-qos.conf"
    path.write_text(textwrap.dedent(f"""\
        [host]
        domain_config_dirs = {xen}
        [bridges]
          [[xenbr0]]
          uplink = peth0
          rate = 100mbit
        [pools]
          [[overage]]
          rate = 10mbit
        [domains]
          [[heavy-*]]
          pool = overage
        """))
    monkeypatch.setenv(policymod.ENV_VAR, str(path))
    return path, xen


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_plan_json_is_one_object_with_integer_fields(conf, capsys):
    status, out, err = run(capsys, "plan", "--qos", "rate=1mbit", "--json")
    assert status == 0 and err == ""
    data = json.loads(out)
    assert {"vif", "inbound", "outbound", "sources"} <= set(data)
    assert set(data["inbound"]) == {"rate_bits_per_s", "burst_bytes", "latency_us", "limit_bytes",
                                    "peak_bits_per_s", "minburst_bytes"}
    assert set(data["outbound"]) == {"rate_bits_per_s", "ceil_bits_per_s", "burst_bytes",
                                     "cburst_bytes", "quantum_bytes", "pool", "leaf_qdisc"}
    assert all(isinstance(v, int) for k, v in data["outbound"].items()
               if k not in ("pool", "leaf_qdisc"))
    assert data["outbound"]["leaf_qdisc"]["limit_bytes"] == 6250 + 65536
    assert data["outbound"]["rate_bits_per_s"] == 10 ** 6
    assert data["uplink"]["root"]["rate_bits_per_s"] == 10 ** 8   # the seed's 100mbit parent
    assert data["sources"]["inbound.rate_bits_per_s"] == "--qos"


def test_plan_unshaped_json(conf, capsys):
    status, out, _ = run(capsys, "plan", "--json")
    data = json.loads(out)
    assert status == 0 and data["inbound"] is None and data["outbound"] is None


def test_plan_domain_reads_its_config_like_hotplug(conf, capsys):
    path, xen = conf
    status, out, _ = run(capsys, "plan", "--domain", "baldr", "--xen-rate", "10Mb/s@50ms")
    assert status == 0
    assert "1000000 bit/s (1mbit, 125000 bytes/s)" in out
    assert f"<- {xen}/baldr.cfg:4" in out
    assert "corrected to 125000 bytes" in out            # the 40MB bucket
    assert "has no minburst" in out
    assert "minburst   1514 bytes" in out
    # outbound comes from the Xen rate: 10 Mbit/s, under the 100mbit uplink of peth0
    assert "10000000 bit/s (10mbit, 1250000 bytes/s)" in out and "<- --xen-rate" in out
    assert "uplink of xenbr0: peth0" in out


def test_plan_pool_member(conf, capsys):
    status, out, _ = run(capsys, "plan", "--domain", "heavy-7", "--json")
    data = json.loads(out)
    assert data["outbound"]["pool"] == "overage"
    assert data["outbound"]["rate_bits_per_s"] == 100_000
    assert data["outbound"]["ceil_bits_per_s"] == 10 ** 7
    assert [p["name"] for p in data["uplink"]["pools"]] == ["overage"]


@pytest.mark.parametrize("argv, token", [
    (["plan", "--qos", "rate=10zbit"], "10zbit"),
    (["plan", "--qos", "speed=1mbit"], "speed"),
    (["plan", "--qos", "rate=1mbit,pool=nosuch"], "nosuch"),
    (["plan", "--xen-rate", "10MB"], "10MB"),
    (["plan", "--qos", "rate_in=1mbit,peak=1mbit"], "1mbit"),
    (["plan", "--config", "/nonexistent/vif-qos.conf"], None),
])
def test_bad_input_exit_2_one_line_no_traceback(conf, capsys, argv, token):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if token:
        assert repr(token) in err


def test_plan_bad_domain_config_file(conf, capsys):
    _, xen = conf
    (xen / "broken.cfg").write_text("name = 'broken'\nqos = [ 'rate=1mbit'\nmemory = 5\n")
    status, _, err = run(capsys, "plan", "--domain", "broken")
    assert status == 2 and f"{xen}/broken.cfg:3:" in err


def test_check_config_ok(conf, capsys):
    path, _ = conf
    status, out, _ = run(capsys, "check-config")
    assert status == 0 and out.startswith(f"OK: {path}: 1 pool(s)") and "1 domain config" in out


def test_check_config_lists_every_problem(conf, capsys, tmp_path):
    path, xen = conf
    (xen / "web.cfg").write_text("name = 'web'\nqos = [ 'rate=1mbit',\n 'pool=nosuch', 'x=1' ]\n")
    (xen / "xm.cfg").write_text("name = 'xm'\nkernel = os.path.join('/boot')\n")
    bad = tmp_path / "bad.conf"
    bad.write_text(f"[host]\nmtu = huge\ndomain_config_dirs = {xen}\n[defaults]\nrate = 1qbit\n")
    status, out, _ = run(capsys, "check-config", "--config", str(bad))
    lines = out.strip().splitlines()
    assert status == 2
    assert lines[0].startswith(f"{bad}:2: [host] mtu:") and lines[0].endswith("'huge'")
    assert lines[1].startswith(f"{bad}:5: rate:") and lines[1].endswith("'1qbit'")
    assert len(lines) == 2   # the policy did not load: its domain dirs are not trusted

    status, out, _ = run(capsys, "check-config")
    lines = out.strip().splitlines()
    assert status == 2
    assert f"{xen}/web.cfg:3: pool: unknown pool (defined: overage): 'nosuch'" in lines
    assert any(line.startswith(f"{xen}/web.cfg:3: unknown qos key") for line in lines)
    assert any(line.startswith(f"{xen}/xm.cfg:2: lexical error") for line in lines)


def test_plan_as_a_real_process(conf):
    path, _ = conf
    proc = subprocess.run([sys.executable, "-m", "vif_qos", "plan", "--qos", "rate=2mbps",
                           "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["inbound"]["rate_bits_per_s"] == 16_000_000   # C02


def test_plan_reads_the_facts_from_xenstore_like_the_hotplug_run(conf, tmp_path, monkeypatch,
                                                                   capsys):
    """--xenbus-path: the real xenstore-read against the double; dom0-owned keys only."""
    from vif_qos.sim.xsdouble import XenstoreDouble

    with XenstoreDouble(str(tmp_path / "xs.sock")).start() as xs:
        xs.seed_vif(7, 0, name="baldr", rate="62500,50000", vifname="baldr0")  # 10Mb/s
        xs.guest_write(7, "device/vif/0/rate", "1,50000")  # C09: the guest's own node
        for key, value in xs.env().items():
            monkeypatch.setenv(key, value)
        assert cli.main(["plan", "--json", "--xenbus-path", "backend/vif/7/0"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["vif"] == "baldr0"
        assert plan["sources"]["outbound.rate_bits_per_s"] == "xenstore:backend/vif/7/0/rate"
        assert plan["outbound"]["rate_bits_per_s"] == 10_000_000
        # The domain config file's qos= (found by the domain name read from xenstore)
        # sets inbound: the seed's 1mbit.
        assert plan["inbound"]["rate_bits_per_s"] == 1_000_000
        assert cli.main(["plan", "--json", "--tap", "--xenbus-path", "backend/vif/7/0"]) == 0
        tap = json.loads(capsys.readouterr().out)
        assert tap["vif"] == "baldr0-emu"
        # Named like the PV vif's, although vif-common.sh makes the tap's path absolute.
        assert tap["sources"]["outbound.rate_bits_per_s"] == "xenstore:backend/vif/7/0/rate"


def test_plan_xenbus_path_must_be_a_vif_backend_path(conf, capsys):
    assert cli.main(["plan", "--xenbus-path", "backend/vbd/7/51712"]) == 2
    err = capsys.readouterr().err
    assert "'backend/vbd/7/51712'" in err and "\n" not in err.strip()


def test_plan_domain_reads_the_vif_line_like_xl_would_write_it(conf, capsys):
    """rate=, bridge=, mac= and vifname= of the devid's vif entry, with file:line."""
    path, xen = conf
    (xen / "web1.cfg").write_text(
        'name = "web1"\n'
        "vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0,rate=10Mb/s',\n"
        "        'bridge=xenbr1,vifname=web1b' ]\n")
    assert cli.main(["plan", "--json", "--domain", "web1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["outbound"]["rate_bits_per_s"] == 10_000_000
    assert plan["sources"]["inbound.rate_bits_per_s"] == f"{xen / 'web1.cfg'}:2 (vif rate=)"
    assert cli.main(["plan", "--json", "--domain", "web1", "--devid", "1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["vif"], plan["bridge"], plan["inbound"]) == ("web1b", "xenbr1", None)
    # Options on the command line win over the file.
    assert cli.main(["plan", "--json", "--domain", "web1", "--xen-rate", "2MB/s",
                     "--bridge", "xenbr2"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["bridge"] == "xenbr2" and plan["inbound"]["rate_bits_per_s"] == 16_000_000


def test_plan_domain_without_a_file_says_so(conf, capsys):
    assert cli.main(["plan", "--json", "--domain", "nosuch"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("no domain config file with name = 'nosuch'" in n for n in notes)


def test_plan_domain_bad_rate_on_the_vif_line_names_file_and_line(conf, capsys):
    path, xen = conf
    (xen / "bad.cfg").write_text('name = "bad"\nvif = [ \'rate=10MB\' ]\n')
    assert cli.main(["plan", "--domain", "bad"]) == 2
    err = capsys.readouterr().err
    assert f"{xen / 'bad.cfg'}:2 (vif rate=)" in err and "'10MB'" in err


def test_check_config_reports_two_files_claiming_one_domain(conf, capsys):
    path, xen = conf
    (xen / "zz-baldr-copy.cfg").write_text('name = "baldr"\nqos = [ \'rate=1mbit\' ]\n')
    assert cli.main(["check-config", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert f"{xen / 'zz-baldr-copy.cfg'}:1: domain name already used by" in err
    assert "'baldr'" in err


def test_plan_names_the_fixed_classes_and_leaves_a_pools_minor_to_apply(conf, capsys):
    # apply keeps a pool under the class its members already sit in (or the lowest
    # free minor), which a plan cannot know: it must not print 0x10 + index.
    status, out, err = run(capsys, "plan", "--domain", "heavy-1", "--qos", "rate=1mbit")
    assert status == 0 and err == ""
    rows = [line.strip() for line in out.splitlines() if " class 7a51:" in line]
    assert [row.split("  rate")[0].split() for row in rows] == [
        ["root", "class", "7a51:1"], ["default", "class", "7a51:2"],
        ["pool", "overage", "class", "7a51:(minor", "chosen", "at", "apply)"]]


def test_plan_shows_the_leaf_qdiscs_with_limit_and_source(conf, capsys):
    status, out, err = run(capsys, "plan", "--qos", "rate=10mbit,latency=20ms")
    assert status == 0 and err == ""
    lines = out.splitlines()
    queue = [ln for ln in lines if ln.strip().startswith("queue")]
    assert queue and "auto (fq_codel where the kernel has it, else bfifo)" in queue[0]
    # 10 Mbit/s x 20 ms + 64 KiB, the latency from --qos (as the TBF's).
    limit = [ln for ln in lines if ln.strip().startswith("limit") and "(bfifo)" in ln]
    assert limit and "90536 bytes" in limit[0] and "rate * latency + 64 KiB" in limit[0]
    assert any(ln.strip().startswith("latency") and ln.endswith("<- --qos") for ln in lines)
    assert any("leaf qdisc auto" in ln and "limit" in ln for ln in lines)   # default class
