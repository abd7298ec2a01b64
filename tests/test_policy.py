"""The host policy file: configobj + validate, every problem with file:line and token."""

import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from vif_qos.config import policy
from vif_qos.errors import ConfigError
from vif_qos.model import HostSettings, VifFacts


def write(tmp_path, text, name="vif-qos.conf"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_shipped_example_is_valid_and_documents_the_seed():
    p = policy.load_policy(policy.EXAMPLE_PATH)
    assert p.host == HostSettings()  # the example shows the built-in host values
    assert list(p.pools) == ["overage"]
    overage = p.pools["overage"]
    assert (overage.rate_bits_per_s, overage.ceil_bits_per_s, overage.index) == (10 ** 7, 10 ** 7, 0)
    assert [(e.kind, e.pattern) for e in p.domains] == [("name", "heavy-*"), ("name", "baldr")]
    baldr = p.domains[1].spec
    assert baldr["burst"].value == 40 * 1048576 and baldr["burst"].written_as == "maxburst"
    assert baldr["peak"].value == 2 * 10 ** 6


def test_builtin_defaults_when_default_file_missing(tmp_path, monkeypatch):
    monkeypatch.delenv(policy.ENV_VAR, raising=False)
    monkeypatch.setattr(policy, "DEFAULT_PATH", str(tmp_path / "absent.conf"))
    p = policy.load_policy()
    assert p.host == HostSettings()
    assert p.domain_config_dirs == ["/etc/xen/auto", "/etc/xen"]
    assert p.bridge("xenbr0").rate_bits_per_s == 10 ** 9 and p.bridge("xenbr0").uplink is None
    assert p.pools == {} and p.domains == [] and p.defaults == {}
    assert p.source("host.mtu") == policy.BUILTIN


def test_missing_explicit_file_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not found"):
        policy.load_policy(str(tmp_path / "absent.conf"))
    monkeypatch.setenv(policy.ENV_VAR, str(tmp_path / "absent.conf"))
    with pytest.raises(ConfigError, match="not found"):
        policy.load_policy()


def test_env_var_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "[host]\non_failure = warn\n")
    monkeypatch.setenv(policy.ENV_VAR, path)
    assert policy.load_policy().host.on_failure == "warn"


def test_settings_and_their_lines(tmp_path):
    path = write(tmp_path, """\
        # comment
        [host]
        mark_mask = 0xff00
        qdisc_major = 0x10
        classid_min = 0x20
        classid_max = 300
        on_failure = warn
        debug = yes
        domain_config_dirs = /srv/xen
        xen_rate_outbound = no
        mtu = 9000
        max_burst_time = 2s
        [bridges]
        rate = 10gbit
          [[xenbr1]]
          uplink = bond0
          default_rate = 1gbit
        [defaults]
        latency = 20ms
        rate = 100mbit
        [pools]
          [[a]]
          rate = 10mbit
          [[b]]
          rate = 20mbit
          ceil = 40mbit
          member_rate = 1mbit
          member_ceil = 5mbit
        [domains]
          [[uuid:5C0B0000-0000-0000-0000-000000000001]]
          pool = b
          [[mac:00:16:3E:00:00:01]]
          rate_in = none
          [[vif:web*]]
          quantum = 3000
        """)
    p = policy.load_policy(path)
    assert p.host == HostSettings(0xFF00, 0x10, 0x20, 300, "warn", True)
    assert p.domain_config_dirs == ["/srv/xen"]
    assert (p.xen_rate_inbound, p.xen_rate_outbound) == (True, False)
    assert (p.mtu_bytes, p.frame_bytes, p.max_burst_time_us) == (9000, 9014, 2_000_000)
    assert p.source("host.mtu") == f"{path}:11"
    assert p.source("host.qdisc_major") == f"{path}:4"
    b1 = p.bridge("xenbr1")
    assert (b1.uplink, b1.rate_bits_per_s, b1.default_rate_bits_per_s) == ("bond0", 10 ** 10, 10 ** 9)
    assert b1.sources["uplink"] == f"{path}:16" and b1.sources["rate"] == f"{path}:14"
    assert p.bridge("xenbr0").uplink is None
    assert p.defaults["latency"].value == 20_000
    assert p.defaults["latency"].source == f"{path}:19"
    assert p.defaults["rate_out"].source == f"{path}:20"
    assert [pool.index for pool in p.pools.values()] == [0, 1]
    assert p.pools["a"].effective_ceil_bits_per_s == 10 ** 7
    assert p.pools["b"].member_ceil_bits_per_s == 5 * 10 ** 6
    uuid_entry, mac_entry, vif_entry = p.domains
    assert uuid_entry.source == f"{path}:30"
    facts = VifFacts(vif="vif3.0", devid=0, domain_name="web",
                     domain_uuid="5c0b0000-0000-0000-0000-000000000001",
                     mac="00:16:3e:00:00:01")
    assert uuid_entry.matches(facts) and mac_entry.matches(facts)
    assert not vif_entry.matches(facts)
    assert vif_entry.matches(VifFacts(vif="web-eth0", devid=0))
    assert p.matching_entries(facts) == [uuid_entry, mac_entry]


def test_name_globs(tmp_path):
    path = write(tmp_path, "[domains]\n[[heavy-*]]\nrate = 1mbit\n[[name:db?]]\nrate = 2mbit\n")
    p = policy.load_policy(path)
    names = {n: [e.pattern for e in p.matching_entries(VifFacts("vif1.0", 0, domain_name=n))]
             for n in ("heavy-1", "db1", "db10", "Heavy-1")}
    assert names == {"heavy-1": ["heavy-*"], "db1": ["db?"], "db10": [], "Heavy-1": []}


BAD = """\
[host]
mark_mask = 0x0f0f0000
on_failure = explode
mtu = big
bogus = 1
[bridges]
rate = 10zbit
[[xenbr0]]
rate = 1mbit, 2mbit
[defaults]
rate = 12bit
pool = nosuch
frob = 1
[pools]
[[p1]]
ceil = 1mbit
[domains]
[[uuid:]]
rate = 1mbit
[[web*]]
burst = 0
latency = 1ms
limit = 10k
"""


def test_check_collects_every_problem_with_line_and_token(tmp_path):
    path = write(tmp_path, BAD)
    p, problems = policy.check_policy(path)
    assert p is None
    got = [(e.source, e.token) for e in problems]
    assert got == [
        (f"{path}:2", "0x0f0f0000"),
        (f"{path}:3", "explode"),
        (f"{path}:4", "big"),
        (f"{path}:5", "bogus"),
        (f"{path}:7", "10zbit"),
        (f"{path}:9", "1mbit, 2mbit"),
        (f"{path}:11", "12bit"),
        (f"{path}:12", "nosuch"),
        (f"{path}:13", "frob"),
        (f"{path}:15", None),          # [[p1]] has no rate
        (f"{path}:18", "uuid:"),
        (f"{path}:21", "0"),
        (f"{path}:23", "10k"),         # latency and limit together
    ]
    messages = [e.message for e in problems]
    assert "contiguous" in messages[0]
    assert "unknown unit 'zbit'" in messages[4]
    assert "missing required setting" in messages[9]
    assert all(e.exit_status == 2 for e in problems)
    with pytest.raises(ConfigError, match=r"and 12 more problems: run vif-qos check-config"):
        policy.load_policy(path)


def test_configobj_parse_errors_keep_their_lines(tmp_path):
    path = write(tmp_path, "[host]\nthis is not a setting\n[host]\nmtu = 1500\nmtu = 1400\n")
    _, problems = policy.check_policy(path)
    assert [e.source for e in problems] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert "Invalid line" in problems[0].message
    assert "Duplicate" in problems[1].message


@pytest.mark.parametrize("text, why", [
    ("[host]\nclassid_min = 0x200\nclassid_max = 0x100\n", "above classid_max"),
    ("[host]\nclassid_min = 0x10\n[pools]\n[[a]]\nrate=1mbit\n", "above the pool classes"),
    ("[host]\nmax_burst_time = 5s\n", "above 4s"),
    ("[host]\nqdisc_major = 0xffff\n", "above the largest allowed value 0xfffe"),
    ("[host]\nmark_mask = 0\n", "below the smallest"),
    ("[pools]\n[[a]]\nrate = 10mbit\nceil = 1mbit\n", "below the pool's rate"),
    ("[pools]\n[['bad name']]\nrate = 10mbit\n", "not a pool name"),
    ("[domains]\n[[frob:x]]\nrate = 1mbit\n", "entry name must be"),
    ("[domains]\n[[x]]\nspeed = 1mbit\n", "unknown setting"),
    ("[nosuch]\nx = 1\n", "unknown section"),
])
def test_policy_refusals(tmp_path, text, why):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=why) as info:
        policy.load_policy(path)
    assert info.value.source.startswith(path + ":")


def test_not_utf8(tmp_path):
    path = tmp_path / "p.conf"
    path.write_bytes(b"[host]\nmtu = 1500 # \xff\n")
    with pytest.raises(ConfigError, match="UTF-8") as info:
        policy.load_policy(str(path))
    assert info.value.source == f"{path}:2"


def test_scan_lines_follows_nesting_and_multiline_values():
    lines = ["[a]", "x = '''one", "two'''", "y = 1", "  [[b]]", "  z = 2", "[c]", "  [[b]]",
             "  z = 3"]
    from vif_qos.config.lines import scan_lines

    found = scan_lines(lines)
    assert found[("a",)] == 1 and found[("a", "x")] == 2 and found[("a", "y")] == 4
    assert found[("a", "b", "z")] == 6 and found[("c", "b", "z")] == 9


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_gives_only_config_errors(text):
    p, problems = policy.check_policy_text(text, "fuzz.conf")
    assert (p is None) == bool(problems)
    for err in problems:
        assert isinstance(err, ConfigError) and err.source.startswith("fuzz.conf")


def _rewriting_open(path, texts, monkeypatch):
    """policy's open(): each read of ``path`` returns what the file held, then
    rewrites it in place with the next of ``texts`` (an edit finishing while
    vif-qos reads), as a concurrent editor would."""
    import builtins

    pending = list(texts)
    reads = []

    class Reader:
        def __init__(self, real):
            self.real = real

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.real.close()

        def fileno(self):
            return self.real.fileno()

        def read(self, size=-1):
            data = self.real.read(size)
            reads.append(data)
            if pending:
                with builtins.open(path, "w") as fh:  # in place: same inode
                    fh.write(pending.pop(0) + "#" * len(reads))  # a new size
            return data

    def fake_open(name, mode="r", *args, **kwargs):
        real = builtins.open(name, mode, *args, **kwargs)
        return Reader(real) if str(name) == str(path) else real

    monkeypatch.setattr(policy, "open", fake_open, raising=False)
    return reads


OLD = "[defaults]\nrate_in = 2mbit\n"
NEW = "[defaults]\nrate_in = 3mbit\n"


def test_a_policy_edited_while_read_is_read_again(tmp_path, monkeypatch):
    """Issue 8: in-place rewrites while guests start gave some guests neither the
    old nor the new policy (a half-written file parsed). A file that changed
    while being read (size, mtime_ns, inode) is read once more."""
    path = tmp_path / "vif-qos.conf"
    path.write_text(OLD[:16])  # half written: 'rate_in = 2' would parse as 2 bit/s
    reads = _rewriting_open(path, [NEW], monkeypatch)
    loaded = policy.load_policy(str(path))
    assert len(reads) == 2 and loaded.defaults["rate_in"].value == 3_000_000


def test_a_policy_changing_on_every_read_is_a_one_line_error(tmp_path, monkeypatch):
    path = tmp_path / "vif-qos.conf"
    path.write_text(OLD)
    _rewriting_open(path, [NEW, OLD, NEW], monkeypatch)
    with pytest.raises(ConfigError, match="changed while it was read, twice .* mv"):
        policy.load_policy(str(path))


def test_a_policy_truncated_a_moment_ago_is_looked_at_again(tmp_path, monkeypatch):
    """An editor's truncate seen before its write (an empty file, stable during
    the read): a file modified less than SETTLE_NS ago is stat'ed again after
    that long; the editor's write landing meanwhile makes it read again."""
    import time as real_time

    path = tmp_path / "vif-qos.conf"
    path.write_text("")  # truncated just now
    waits = []

    class EditorFinishes:
        time_ns = staticmethod(real_time.time_ns)

        @staticmethod
        def sleep(seconds):
            waits.append(seconds)
            if len(waits) == 1:
                path.write_text(NEW)

    monkeypatch.setattr(policy, "time", EditorFinishes)
    loaded = policy.load_policy(str(path))
    assert waits and loaded.defaults["rate_in"].value == 3_000_000
