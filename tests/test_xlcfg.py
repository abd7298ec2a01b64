"""xl domain config files: real syntax, the qos= entry per devid, finding by name."""

import os

import pytest
from hypothesis import given, strategies as st

from vif_qos.config import xlcfg
from vif_qos.errors import ConfigError

WEB_CFG = """\
# /etc/xen/web.cfg: a PV guest
name = "web"
type = 'pvh'
memory = 2048
vcpus = 0x2   # numbers are kept as text
kernel = "/boot/vmlinuz"
extra = "console=hvc0 root=/dev/xvda1 \\"quoted\\""
disk = [ 'phy:/dev/vg0/web,xvda,w' ]
vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0,rate=10Mb/s@50ms',
        "mac=00:16:3e:00:00:02,bridge=xenbr1",   # backend net
      ]
qos = [
    'rate_in=1mbit,latency=50ms,peak=2mbit,burst=40MB',   # devid 0: the seed's TBF

    "rate_out=1mbit,pool=overage",
]
on_crash = "restart"; on_reboot = "restart"
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_real_looking_file(tmp_path):
    path = write(tmp_path, "web.cfg", WEB_CFG)
    cfg = xlcfg.load_xl_config(path)
    assert cfg.get_string("name").text == "web"
    assert cfg.get_string("type").text == "pvh"
    assert cfg.settings["memory"] == xlcfg.Atom("2048", 3 + 1, False)
    assert cfg.settings["vcpus"].text == "0x2"
    assert cfg.get_string("extra").text == 'console=hvc0 root=/dev/xvda1 "quoted"'
    vifs = cfg.get_string_list("vif")
    assert [v.line for v in vifs] == [9, 10]
    assert cfg.get_string("on_reboot").text == "restart"
    assert xlcfg.qos_entry(cfg, 0) == (
        "rate_in=1mbit,latency=50ms,peak=2mbit,burst=40MB", f"{path}:13")
    assert xlcfg.qos_entry(cfg, 1) == ("rate_out=1mbit,pool=overage", f"{path}:15")
    assert xlcfg.qos_entry(cfg, 2) is None


def test_last_setting_wins_and_plus_equals_appends(tmp_path):
    cfg = xlcfg.parse_xl_config(
        "name='a'\nname='b'\nqos=['rate=1mbit']\nqos += ['rate=2mbit']\n"
        "extra='x'\nextra+='y'\n", "f")
    assert cfg.get_string("name").text == "b"
    assert [a.text for a in cfg.get_string_list("qos")] == ["rate=1mbit", "rate=2mbit"]
    assert cfg.get_string("extra").text == "xy"


def test_empty_list_trailing_comma_semicolons_and_no_final_newline():
    cfg = xlcfg.parse_xl_config("qos = [\n]\nvif=['a',];name='n'", "f")
    assert cfg.get_string_list("qos") == []
    assert [a.text for a in cfg.get_string_list("vif")] == ["a"]
    assert cfg.get_string("name").text == "n"


def test_comment_at_end_of_file_without_newline():
    cfg = xlcfg.parse_xl_config("name = 'x' # last", "f")
    assert cfg.get_string("name").text == "x"


@pytest.mark.parametrize("text, line, token", [
    ("name = 'web'\nkernel = os.path.join('/boot', 'k')\n", 2, "('/boot',"),  # xm
    ("import os\nname = 'x'\n", 1, "os"),  # 'import' is an ident, then 'os' is not '='
    ("name = web\n", 1, "web"),                # unquoted string
    ("Name = 'x'\n", 1, "Name"),               # upper case names are not xl syntax
    ("name = 'x\n", 1, "'x"),                  # unterminated string
    ("qos = [ 'a' 'b' ]\n", 1, "b"),
    ("qos = [ 'a',\n  'b'\n", 3, "end of file"),
    ("name = 'x' 'y'\n", 1, "y"),
    ("name 'x'\n", 1, "x"),
    ("(domain (name x))\n", 1, "(domain"),     # xend-config.sxp style
    ("name = 'a\\qb'\n", 1, "\\q"),
    ("name = 'x'\r\n", 1, "\r"),
])
def test_not_xl_syntax_gives_config_error_with_line(text, line, token):
    with pytest.raises(ConfigError) as info:
        xlcfg.parse_xl_config(text, "/etc/xen/bad.cfg")
    assert info.value.source == f"/etc/xen/bad.cfg:{line}"
    assert info.value.token == token or token in (info.value.token or "")
    assert info.value.exit_status == 2


@pytest.mark.parametrize("text, why", [
    ("qos = 'rate=1mbit'\n", "must be a list"),
    ("qos = [ 5 ]\n", "quoted string"),
    ("qos = [ ['a'] ]\n", "quoted string"),
])
def test_qos_must_be_a_list_of_strings(text, why):
    cfg = xlcfg.parse_xl_config(text, "f")
    with pytest.raises(ConfigError, match=why):
        xlcfg.qos_entry(cfg, 0)


def test_find_domain_config_by_name(tmp_path):
    auto = tmp_path / "auto"
    auto.mkdir()
    etc = tmp_path / "etc"
    etc.mkdir()
    web = write(etc, "web.cfg", WEB_CFG)
    os.symlink(web, auto / "web.cfg")                            # /etc/xen/auto symlink
    write(etc, "xend-config.sxp", "(network-script network-bridge)\n")  # not xl syntax
    write(etc, "db.cfg", "name = 'db'\nqos = ['rate=5mbit']\n")
    write(etc, "web.cfg~", "name = 'web'\n")                     # editor leftover
    (etc / "scripts").mkdir()
    dirs = [str(auto), str(etc)]

    cfg, others = xlcfg.find_domain_config("web", dirs)
    assert cfg.source == str(auto / "web.cfg") and others == []
    assert xlcfg.qos_entry(cfg, 1)[0] == "rate_out=1mbit,pool=overage"
    cfg, _ = xlcfg.find_domain_config("db", dirs)
    assert xlcfg.qos_entry(cfg, 0) == ("rate=5mbit", f"{etc}/db.cfg:2")
    assert xlcfg.find_domain_config("nosuch", dirs) == (None, [])
    assert xlcfg.find_domain_config("web", [str(tmp_path / "missing")]) == (None, [])


def test_duplicate_names_first_wins_and_others_reported(tmp_path):
    a = write(tmp_path, "a.cfg", "name = 'x'\n")
    b = write(tmp_path, "b.cfg", "name = \"x\"\n")
    cfg, others = xlcfg.find_domain_config("x", [str(tmp_path)])
    assert cfg.source == a and others == [b]


def test_matching_file_with_bad_syntax_is_an_error(tmp_path):
    write(tmp_path, "x.cfg", "name = 'x'\nqos = [ 'rate=1mbit' \n")
    with pytest.raises(ConfigError) as info:
        xlcfg.find_domain_config("x", [str(tmp_path)])
    assert info.value.source == f"{tmp_path}/x.cfg:3"


def test_unreadable_and_non_utf8(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        xlcfg.load_xl_config(str(tmp_path / "none.cfg"))
    path = tmp_path / "bin.cfg"
    path.write_bytes(b"name = 'x'\nextra = '\xff'\n")
    # xl's lexer is 8-bit: it reads this file, so vif-qos must not refuse it (a token
    # that vif-qos parses and that holds such a byte is refused with its line:
    # test_breakage_inputs.py).
    config = xlcfg.load_xl_config(str(path))
    assert config.get_string("name").text == "x"


strings = st.text(st.characters(blacklist_characters="\n\r\x00",
                                blacklist_categories=("Cs",)), max_size=20)


def quote(s, q):
    return q + s.replace("\\", "\\\\").replace(q, "\\" + q) + q


@given(st.lists(strings, max_size=5), st.sampled_from(["'", '"']), st.booleans())
def test_string_lists_round_trip(items, q, multiline):
    sep = ",\n  " if multiline else ", "
    text = "name = 'd'\nqos = [ " + sep.join(quote(s, q) for s in items) + " ]\n"
    cfg = xlcfg.parse_xl_config(text, "prop")
    assert [a.text for a in cfg.get_string_list("qos")] == items


@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_config_error(text):
    try:
        xlcfg.parse_xl_config(text, "fuzz")
    except ConfigError as err:
        assert err.source.startswith("fuzz:")


def test_name_after_a_semicolon_is_found(tmp_path):
    write(tmp_path, "one.cfg", "memory = 512; name = 'semi'\nqos = ['rate=1mbit']\n")
    cfg, _ = xlcfg.find_domain_config("semi", [str(tmp_path)])
    assert cfg is not None and xlcfg.qos_entry(cfg, 0)[0] == "rate=1mbit"


def test_vif_line_values_as_xl_writes_them_to_the_backend():
    """The xl ``vif = [...]`` entry reader (config/xlcfg.py, used by plan --domain and
    check-config): rate= in netback's backend form, bridge=, mac=, vifname=; other
    keys ignored; a bad value names itself and where it was written."""
    from vif_qos.errors import InputError

    config = xlcfg.parse_xl_config(WEB_CFG, "/etc/xen/web.cfg")
    atoms = config.get_string_list("vif")
    first = xlcfg.vif_line_values(atoms[0].text, config.where(atoms[0].line))
    assert first == {"xen_rate": "62500,50000",  # bytes per 50 ms: 10 Mbit/s
                     "xen_rate_source": "/etc/xen/web.cfg:9 (vif rate=)",
                     "bridge": "xenbr0", "mac": "00:16:3e:00:00:01"}
    second = xlcfg.vif_line_values(atoms[1].text, config.where(atoms[1].line))
    assert second == {"bridge": "xenbr1", "mac": "00:16:3e:00:00:02"}
    assert xlcfg.vif_line_values("vifname=web-eth0, script=vif-qos", "f:1") == {
        "vif": "web-eth0"}
    with pytest.raises(InputError) as err:
        xlcfg.vif_line_values("bridge=xenbr0,rate=10MB", "f:2")
    assert err.value.source == "f:2 (vif rate=)" and err.value.token == "10MB"
    with pytest.raises(InputError) as err:
        xlcfg.vif_line_values("vifname=a/b", "f:3")
    assert err.value.source == "f:3 (vif vifname=)"
