"""The entry comment is the kernel-side record of a vif: parsing is strict but never raises."""

import pytest
from hypothesis import given, strategies as st

from vif_qos.kernel import nft as nftadapter
from vif_qos.kernel.nft import COMMENT_PREFIX, parse_comment


def test_comment_round_trip():
    entry = nftadapter.Entry(vif="vif3.0", bridge="xenbr0", uplink="peth0",
                             classid=0x7A510105, mark=0x1050000, inbound=True, pool="overage")
    assert parse_comment(entry.comment()) == entry


@pytest.mark.parametrize("field", ["classid=zz:1", "classid=7a51:10000", "mark=0xq",
                                   "mark=123456789ab", "classid=:", "classid=-1:5"])
def test_a_hand_edited_field_is_dropped_not_fatal(field):
    entry = parse_comment(f"{COMMENT_PREFIX}vif=vif3.0 uplink=peth0 {field}")
    assert entry is not None and entry.vif == "vif3.0" and entry.uplink == "peth0"
    key = field.split("=")[0]
    assert getattr(entry, key) is None


@given(st.text(max_size=120))
def test_any_comment_parses_or_is_ignored(text):
    entry = parse_comment(COMMENT_PREFIX + text)
    assert entry is None or isinstance(entry.vif, str)


def test_missing_bindings_name_both_install_routes(monkeypatch):
    import sys

    from vif_qos.errors import EnvironmentProblem

    monkeypatch.setitem(sys.modules, "nftables", None)  # import nftables -> ImportError
    with pytest.raises(EnvironmentProblem) as err:
        nftadapter._nft()
    message = err.value.one_line()
    assert "python3-nftables" in message and "pip install 'vif-qos[pypi]'" in message
