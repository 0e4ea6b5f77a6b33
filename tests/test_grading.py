"""The call grade never contradicts the checklist; the scorecard explains every point
(issue 19 item 10). Real compliance scripts (config/scripts/en_default.toml) through the real
checker, real `assess` on quality summaries."""

from __future__ import annotations

from dataclasses import replace

import pytest

from audio_quality.assessment import assess
from audio_quality.settings import QualitySettings
from config.settings import GradingSettings
from monitor.board.state import BoardState
from monitor.core.grading import score_call
from monitor.events import CallSequencer, FindingMade
from monitor.qa import ComplianceChecker, ComplianceResult, PhraseMissed, load_compliance_scripts
from monitor.runtime.findings import analysis_events
from tests.test_board_state import T0, opened
from tests.test_quality_assessment import GOOD_CALL, GOOD_PARTY

QUALITY = QualitySettings()
GRADING = GradingSettings()
CLEAN = assess([GOOD_PARTY, replace(GOOD_PARTY, party="customer")], GOOD_CALL, QUALITY)

GREETING = "Thank you for calling Acme, my name is Emily, how can I help you today?"
VERIFY = "Before we go on, can you confirm your full name and date of birth?"
CLOSING = "Thank you for calling, have a great day, goodbye."


def comply(lines: list[tuple[int, str]], duration_ms: int = 60_000) -> ComplianceResult:
    script = load_compliance_scripts().get("en-default")
    checker = ComplianceChecker(script)
    for start, text in lines:
        checker.on_segment("agent", start, start + 4000, text, "en")
    checker.close(duration_ms)
    return checker.finish(duration_ms)


def test_all_stages_missed_is_never_a_pass() -> None:
    comp = comply([(1000, "Hello."), (20_000, "Okay.")])
    assert not comp.passed and comp.score < 80
    card = score_call(CLEAN, comp, GRADING)
    # Before: 0.4 × 100 + 0.6 × 70 = 82 graded "good" next to "compliance FAILED".
    assert card.uncapped_grade in ("good", "pass")
    assert card.grade == "needs_improvement"
    reasons = {c.reason for c in card.caps}
    assert reasons == {"compliance_failed", "missed_required"}
    missed = next(c for c in card.caps if c.reason == "missed_required")
    assert set(missed.items) == {"greeting", "verification", "closing"}


def test_a_missed_greeting_caps_the_grade_although_compliance_passed() -> None:
    comp = comply([(1000, "Hi there."), (8000, VERIFY), (54_000, CLOSING)])
    assert comp.passed and comp.score == 85.0  # 85 >= 80: compliance alone would pass it
    card = score_call(CLEAN, comp, GRADING)
    assert card.uncapped_grade == "excellent"  # 0.4 × 100 + 0.6 × 85 = 91
    assert card.grade == "needs_improvement"
    assert [c.reason for c in card.caps] == ["missed_required"]
    relaxed = GradingSettings(cap_missed_required="pass")
    assert score_call(CLEAN, comp, relaxed).grade == "pass"  # configurable


def test_forbidden_phrase_caps_at_pass_and_critical_fails() -> None:
    ok = [(1000, GREETING), (8000, VERIFY), (54_000, CLOSING)]
    rude = comply([*ok, (30_000, "Calm down, I already told you that.")])
    card = score_call(CLEAN, rude, GRADING)
    assert card.grade == "pass" and [c.reason for c in card.caps] == ["forbidden"]
    promise = comply([*ok, (30_000, "I guarantee this will be fixed, no matter what.")])
    card = score_call(CLEAN, promise, GRADING)
    assert card.grade == "needs_improvement"
    assert "critical" in {c.reason for c in card.caps}
    assert score_call(CLEAN, comply(ok), GRADING).grade == "excellent"  # nothing to cap


def test_scorecard_explains_every_point() -> None:
    noisy = replace(GOOD_PARTY, party="customer", snr_db=6.0, dnsmos_ovrl_mean=2.0,
                    dropouts=40)  # fmt: skip
    quality = assess([GOOD_PARTY, noisy], GOOD_CALL, QUALITY)
    assert quality.score < 60
    comp = comply([(1000, "Hi there."), (8000, VERIFY), (30_000, "Calm down."),
                   (54_000, CLOSING)])  # fmt: skip
    card = score_call(quality, comp, GRADING)
    q = [x for x in card.lines if x.source == "quality"]
    c = [x for x in card.lines if x.source == "compliance"]
    # "Why 43?": the quality lines add up to what the quality score lost, likewise compliance.
    assert sum(x.points for x in q) == pytest.approx(100 - quality.score)
    assert {x.item for x in q} == {"poor_snr", "low_clarity", "dropouts"}
    assert all(x.value is not None and x.threshold is not None and x.unit for x in q)
    assert sum(x.points for x in c) == pytest.approx(100 - comp.score)
    assert {x.item for x in c} == {"greeting", "rude"}
    assert sum(x.call_points for x in card.lines) == pytest.approx(100 - card.score, abs=0.05)


def test_optional_stage_not_said_is_grey_on_the_board() -> None:
    script = load_compliance_scripts().get("en-default")
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 1000, 5000, GREETING, "en")
    events = checker.close(60_000)
    missed = {e.stage: e for e in events if isinstance(e, PhraseMissed)}
    assert missed["hold"].required is False and missed["verification"].required is True
    board = BoardState(today=T0.date())
    board.apply(opened(), now=0.0)
    for ev in analysis_events(CallSequencer("c1", start=1), events):
        assert isinstance(ev, FindingMade)
        board.apply(ev, now=1.0)
    states = {s["stage"]: s["state"] for s in board.snapshot()["calls"][0]["checklist"]}
    assert states["hold"] == "not_said" and states["pre_closing"] == "not_said"
    assert states["verification"] == "missed" and states["closing"] == "missed"


def test_one_off_overlap_in_a_short_call_is_no_excessive_overtalk() -> None:
    """Issue 19 item 12: one 0.6 s overlap in a 51 s call is 1.2 per minute, but one event is
    no pattern; the rate is judged from `overtalk_min_count` (3) or 5 s of overlap on."""
    short = replace(GOOD_CALL, duration_ms=51_000, overtalk_count=1, overtalk_total_ms=600)
    assert not [f for f in assess([], short, QUALITY).findings if f.kind == "excessive_overtalk"]
    three = replace(short, overtalk_count=3, overtalk_total_ms=1800)
    [found] = [f for f in assess([], three, QUALITY).findings if f.kind == "excessive_overtalk"]
    assert found.severity == "critical" and found.value == pytest.approx(3 / 0.85)
    long_one = replace(short, overtalk_count=2, overtalk_total_ms=6000)  # two long overlaps
    assert [f for f in assess([], long_one, QUALITY).findings if f.kind == "excessive_overtalk"]
