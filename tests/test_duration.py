"""The one duration grammar (vif_qos.core.duration) and the places that read it: the
policy file's [billing] cooldown/retention and set/assign --for accept and refuse
exactly the same words. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from vif_qos.config.policy import check_policy_text
from vif_qos.core import duration
from vif_qos.core.duration import DURATION_UNITS, MAX_DURATION_S, parse_duration
from vif_qos.errors import InputError

GOOD = [("90", 90), ("30m", 1800), ("1h", 3600), ("400d", 400 * 86400), ("2w", 1209600),
        ("1h30m", 5400), ("2d", 172800), ("90s", 90), ("1w", 604800),
        # accepted now that there is one grammar: a bare number (seconds, as the
        # policy file always read it) and parts with white space between them
        ("30", 30), ("1h 30m", 5400),
        ("2 weeks", 1209600), (" 1H30M ", 5400), ("1hour30mins", 5400), ("0h30m", 1800),
        ("36600d", MAX_DURATION_S)]

BAD = ["", "0", "0s", "1y", "h", "-1h", "1.5h", "20y", "1e3", "1_000", "+5m", "m30",
       "1h,30m", "1h-30m", "\u0661h", "36601d", "9" * 5000, "1 month"]


@pytest.mark.parametrize("text, seconds", GOOD)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", BAD)
def test_parse_duration_refuses_naming_token_and_source(text):
    with pytest.raises(InputError) as err:
        parse_duration(text, "--for")
    assert err.value.source == "--for" and err.value.token == text
    assert len(str(err.value).splitlines()) == 1


def test_not_a_string_is_refused():
    with pytest.raises(InputError, match="expected a single value"):
        parse_duration(["1h", "2h"], "f:3")


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(DURATION_UNITS))),
                min_size=1, max_size=4), st.sampled_from(["", " "]))
def test_parts_add_up(parts, sep):
    text = sep.join(f"{n}{unit}" for n, unit in parts)
    total = sum(n * DURATION_UNITS[unit] for n, unit in parts)
    if 1 <= total <= MAX_DURATION_S:
        assert parse_duration(text) == total
    else:
        with pytest.raises(InputError):
            parse_duration(text)


def _policy_verdict(text):
    _policy, problems = check_policy_text(f"[billing]\ncooldown = \"{text}\"\n", "p.conf")
    return [p.one_line() for p in problems]


def _for_verdict(text):
    try:
        parse_duration(text, "--for")
    except InputError as err:
        return err
    return None


@pytest.mark.parametrize("text", [t for t, _s in GOOD] + BAD[:16])
def test_policy_file_and_for_agree(text):
    """The symptom of issue 19: a duration accepted in one place and refused in
    another. The policy file's cooldown and set --for now read one grammar."""
    refused_by_for = _for_verdict(text) is not None
    problems = _policy_verdict(text)
    assert bool(problems) == refused_by_for, (text, problems)
    if problems:
        assert "[billing] cooldown" in problems[0] and "p.conf:2" in problems[0]


def test_set_command_reads_the_same_grammar(capsys, monkeypatch, tmp_path):
    """``vif-qos set --for`` goes through the same parser (refused before anything
    is read or changed)."""
    from vif_qos import cli

    monkeypatch.setenv("VIF_QOS_STATE_DIR", str(tmp_path / "state"))
    assert cli.main(["set", "g1", "rate=1mbit", "--for", "1 month"]) == 2
    err = capsys.readouterr().err
    assert "--for: duration: not a duration" in err and "'1 month'" in err
    assert not (tmp_path / "state").exists()


def test_module_docstring_lists_every_unit():
    doc = duration.__doc__ or ""
    for unit in DURATION_UNITS:
        assert f" {unit} " in doc or f" {unit}\n" in doc or f"= {unit} " in doc, unit
