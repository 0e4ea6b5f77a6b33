"""Compliance scripts as data: the shipped defaults, validation messages, selection per call."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from monitor.qa import (
    DEFAULT_SCRIPTS_DIR,
    ScriptBook,
    ScriptInvalid,
    ScriptNotFound,
    load_compliance_scripts,
    load_script_file,
    script_from_dict,
)
from monitor.qa.rules import Anchor, Severity, Speaker, WindowKind
from monitor.qa.scripts import expand

MINIMAL = """
name = "mini"
language = "en"
[[stage]]
id = "greeting"
phrases = ["hello"]
"""


def parse(extra: str = "", base: str = MINIMAL) -> dict[str, Any]:
    return tomllib.loads(base + extra)


def with_top(top: str, name: str = "mini") -> dict[str, Any]:
    """MINIMAL with top-level keys (they must come before the first table)."""
    return tomllib.loads(top + MINIMAL.replace('"mini"', f'"{name}"'))


def test_shipped_scripts_load_with_a_default_per_language() -> None:
    book = load_compliance_scripts()
    assert {s.language for s in book.scripts} >= {"en", "zh"}
    for language in ("en", "zh"):
        script = book.select({}, language)
        assert script.language == language and script.selector.default
        stages = {s.id: s for s in script.stages}
        assert {"greeting", "verification", "hold", "closing"} <= set(stages)
        greeting = stages["greeting"]
        assert greeting.window.kind is WindowKind.FIRST
        assert greeting.window.anchor is Anchor.AGENT_SPEECH and greeting.window.seconds == 10
        assert len(greeting.elements) == 3 and greeting.party is Speaker.AGENT
        assert stages["closing"].window.kind is WindowKind.LAST
        assert "greeting" in stages["verification"].after
        assert any(f.severity is Severity.CRITICAL for f in script.forbidden)
        assert script.exceptions


def test_one_file_per_business_line(tmp_path: Path) -> None:
    for path in DEFAULT_SCRIPTS_DIR.glob("*.toml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    cards = 'queues = ["Cards", "fraud"]\ncallees = ["8005550100"]\n' + MINIMAL.replace(
        '"mini"', '"en-cards"'
    )
    (tmp_path / "en_cards.toml").write_text(cards, encoding="utf-8")
    book = load_compliance_scripts(tmp_path)
    assert book.select({"queue": "cards"}, "en").name == "en-cards"
    assert book.select({"queueName": "FRAUD"}).name == "en-cards"
    assert book.select({"to": "8005550100"}).name == "en-cards"
    assert book.select({"queue": "billing"}, "en").name == "en-default"
    assert book.select({"queue": "billing", "language": "zh"}).name == "zh-default"
    assert book.select({}).name == "zh-default"  # the fallback when the language is unknown


def test_selection_without_default_or_fallback() -> None:
    a = script_from_dict(with_top('queues = ["a"]\n'), "a.toml")
    b = script_from_dict(with_top('queues = ["b"]\n', "b"), "b.toml")
    book = ScriptBook([a, b])
    assert book.select({"queue": "b"}).name == "b"
    with pytest.raises(ScriptNotFound, match="no fallback"):
        book.select({"queue": "c"}, "en")
    assert ScriptBook([a]).select({}).name == "mini"  # the only script


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[stages]]\nid = "x"\n', "top level: unknown key 'stages' (did you mean 'stage'?)"),
        ('[[stage]]\nid = "x"\nphrase = ["a"]\n', "unknown key 'phrase' (did you mean 'phrases'?)"),
        ('[[stage]]\nid = "Bad Id"\nphrases = ["a"]\n', "id must be lower_snake_case"),
        ('[[stage]]\nid = "greeting"\nphrases = ["a"]\n', "id 'greeting' is used twice"),
        ('[[stage]]\nid = "x"\nphrases = []\n', "phrases must list at least one entry"),
        ('[[stage]]\nid = "x"\nphrases = ["..."]\n', "has no letters or digits"),
        (
            '[[stage]]\nid = "x"\nphrases = ["a"]\nwindow = { first_s = -3 }\n',
            "first_s must be between 0.5 and 3600, got -3",
        ),
        (
            '[[stage]]\nid = "x"\nphrases = ["a"]\nwindow = { first_s = 5, last_s = 5 }\n',
            "give exactly one of first_s and last_s",
        ),
        (
            '[[stage]]\nid = "x"\nphrases = ["a"]\nwindow = { first_s = 5, from = "dawn" }\n',
            "from must be one of call_start | agent_speech | customer_speech, got 'dawn'",
        ),
        ('[[stage]]\nid = "x"\nphrases = ["a"]\nwindow = "early"\n', 'expected "anywhere"'),
        ('[[stage]]\nid = "x"\nphrases = ["a"]\nafter = ["nope"]\n', "after: 'nope' is not"),
        (
            '[[stage]]\nid = "x"\nphrases = ["a"]\nafter = ["y"]\n'
            '[[stage]]\nid = "y"\nphrases = ["b"]\nafter = ["x"]\n',
            "form a cycle",
        ),
        (
            '[[stage]]\nid = "x"\nphrases = ["a"]\nseverity = "huge"\n',
            "severity must be one of info | minor | major | critical, got 'huge'",
        ),
        ('[[stage]]\nid = "x"\nphrases = ["a"]\nparty = "bot"\n', "party must be one of"),
        ('[[stage]]\nid = "x"\nphrases = ["a"]\ndeduction = 120\n', "deduction must be between"),
        ('[[stage]]\nid = "x"\nphrases = ["{$nope} there"]\n', "unknown synonym set {$nope}"),
        (
            '[[exception]]\nid = "e"\nphrases = ["a"]\nsuspends = ["nope"]\n',
            "suspends: 'nope' is no stage or forbidden rule",
        ),
        ("[matching]\ntolerance = 0.9\n", "tolerance must be between 0 and 0.5"),
    ],
)
def test_validation_names_the_file_and_the_field(extra: str, message: str) -> None:
    with pytest.raises(ScriptInvalid) as err:
        script_from_dict(parse(extra), "config/scripts/mini.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("config/scripts/mini.toml: ")


def test_bad_language_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ScriptInvalid, match="language must be one of en | zh, got 'fr'"):
        script_from_dict(parse(base=MINIMAL.replace('"en"', '"fr"')))
    path = tmp_path / "broken.toml"
    path.write_text("name = [", encoding="utf-8")
    with pytest.raises(ScriptInvalid, match="broken.toml: not valid TOML"):
        load_script_file(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScriptInvalid, match="no \\*.toml compliance scripts"):
        load_compliance_scripts(empty)


def test_two_defaults_for_one_language_are_refused() -> None:
    a = script_from_dict(with_top("default = true\n"), "a.toml")
    b = script_from_dict(with_top("default = true\n", "b"), "b.toml")
    with pytest.raises(ScriptInvalid, match="two default scripts for language 'en'"):
        ScriptBook([a, b])


def test_phrase_expansion() -> None:
    sets = {"thanks": ("thank you", "{many|} thanks")}
    assert expand("how {can|may} I help", sets) == ["how can I help", "how may I help"]
    assert expand("{$thanks} for calling", sets) == [
        "thank you for calling",
        "many thanks for calling",
        "thanks for calling",
    ]
    with pytest.raises(ScriptInvalid, match="unbalanced braces"):
        expand("how {can I help", sets)
    with pytest.raises(ScriptInvalid, match="expands to"):
        expand("{a|b|c|d}" * 5, sets)


def test_rule_tolerance_overrides_the_script_default() -> None:
    raw = parse('[[stage]]\nid = "loose"\ntolerance = 0.4\nphrases = ["thank you for calling"]\n')
    script = script_from_dict(raw)
    strict = script.stage("greeting").elements[0].phrases[0]
    loose = script.stage("loose").elements[0].phrases[0]
    assert loose.threshold < 80 <= strict.threshold


def test_demo_calls_follow_the_shipped_scripts() -> None:
    """The calls `scripts/run` plays (ivr_sim/scripts) grade as compliant on their exact
    lines: greeting, verification and closing heard, nothing forbidden."""
    from ivr_sim.script import builtin_scripts, load_script, render
    from monitor.qa import ComplianceChecker, load_compliance_scripts

    book = load_compliance_scripts()
    for path in builtin_scripts():
        call = render(load_script(path))
        language = "zh" if call.script.name.startswith("zh") else "en"
        checker = ComplianceChecker(book.select(call.script.metadata, language))
        for turn in sorted(call.turns, key=lambda t: t.end_s):
            checker.on_segment(
                turn.party,
                int(turn.start_s * 1000),
                int(turn.end_s * 1000),
                turn.transcript or "",
                language,
            )
            checker.advance(int(turn.end_s * 1000))
        result = checker.finish(int(call.duration_s * 1000))
        assert result.script.startswith(language) and result.passed, (path.name, result)
        assert result.score == 100 and not result.forbidden, (path.name, result)
