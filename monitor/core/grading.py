"""The call's score, its grade and the scorecard that explains both (pure functions).

Owns how the audio-quality assessment and the compliance result become one grade, so that a
grade never contradicts the checklist beside it:

* score = `quality_weight` × quality + (1 − `quality_weight`) × compliance (quality alone
  when no script ran); the grade is the first of excellent / good / pass whose threshold the
  score reaches, else needs_improvement;
* then **caps** (`GradingSettings.cap_*`, each the best grade such a call can get): compliance
  failed (below the script's pass score), a critical stage missed or critical forbidden
  phrase, a required stage missed (or heard outside its window), any forbidden phrase;
* the scorecard lists every deduction with the points it took off its own score (quality or
  compliance) and off the call score, plus every cap that applied and why, so "why 43?" and
  "why only pass?" have an answer on the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import GRADES, GradingSettings
from monitor.qa import ComplianceResult


@dataclass(frozen=True, slots=True)
class ScoreLine:
    """One deduction: `points` off its own 0–100 score, `call_points` off the call score."""

    source: str  # "quality" | "compliance"
    item: str  # quality finding kind, stage id or forbidden-rule id
    kind: str  # quality: the finding's severity; compliance: missed, outside_window, ...
    severity: str
    party: str | None
    points: float
    call_points: float
    value: float | None = None  # quality: the measure and the threshold it crossed
    threshold: float | None = None
    unit: str = ""
    at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class GradeCap:
    """A rule that held the grade down: `grade` is the best the call could get."""

    reason: str  # compliance_failed | critical | missed_required | forbidden
    grade: str
    items: tuple[str, ...]  # the stages / rules behind it


@dataclass(frozen=True, slots=True)
class Scorecard:
    score: float
    grade: str
    uncapped_grade: str  # what the score alone gives
    quality_score: float
    compliance_score: float | None
    quality_weight: float  # the share of quality in `score` (1.0 when no script ran)
    lines: tuple[ScoreLine, ...]
    caps: tuple[GradeCap, ...]
    #: What the card must say besides, e.g. "no_agent_leg": compliance not checked because
    #: the agent's audio was not streamed (the grade is quality alone).
    notes: tuple[str, ...] = ()


def grade_of(score: float, grading: GradingSettings) -> str:
    if score >= grading.excellent:
        return "excellent"
    if score >= grading.good:
        return "good"
    if score >= grading.passing:
        return "pass"
    return "needs_improvement"


def _worse(a: str, b: str) -> str:
    return a if GRADES.index(a) >= GRADES.index(b) else b


def _caps(c: ComplianceResult, g: GradingSettings) -> list[GradeCap]:
    missed = tuple(
        s.stage for s in c.stages if s.required and s.status in ("missed", "outside_window")
    )
    critical = tuple(
        s.stage for s in c.stages if s.stage in missed and s.severity == "critical"
    ) + tuple(sorted({f.rule for f in c.forbidden if f.severity == "critical"}))
    forbidden = tuple(sorted({f.rule for f in c.forbidden}))
    found = [
        ("compliance_failed", g.cap_compliance_failed, () if c.passed else (c.script,)),
        ("critical", g.cap_critical, critical if c.critical or critical else ()),
        ("missed_required", g.cap_missed_required, missed),
        ("forbidden", g.cap_forbidden, forbidden),
    ]
    return [GradeCap(reason, cap, items) for reason, cap, items in found if items]


def score_call(assessment: Any, compliance: ComplianceResult | None,
               grading: GradingSettings, notes: tuple[str, ...] = ()) -> Scorecard:  # fmt: skip
    """The call's scorecard from `audio_quality.assessment.QualityAssessment` and the
    compliance result (None when no script ran)."""
    quality = float(assessment.score)
    w = 1.0 if compliance is None else grading.quality_weight
    lines = [
        ScoreLine(
            "quality",
            f.kind,
            f.severity,
            f.severity,
            f.party,
            f.points,
            round(w * f.points, 2),
            f.value,
            f.threshold,
            f.unit,
            f.start_ms,
        )  # fmt: skip
        for f in assessment.findings
    ]
    caps: list[GradeCap] = []
    if compliance is None:
        score = quality
    else:
        score = w * quality + (1.0 - w) * compliance.score
        lines += [
            ScoreLine(
                "compliance",
                d.rule,
                d.kind,
                d.severity,
                None,
                d.points,
                round((1.0 - w) * d.points, 2),
                at_ms=d.at_ms,
            )  # fmt: skip
            for d in compliance.deductions
        ]
        caps = _caps(compliance, grading)
    uncapped = grade_of(score, grading)
    grade = uncapped
    for cap in caps:
        grade = _worse(grade, cap.grade)
    return Scorecard(
        score=round(score, 1),
        grade=grade,
        uncapped_grade=uncapped,
        quality_score=quality,
        compliance_score=None if compliance is None else compliance.score,
        quality_weight=w,
        lines=tuple(lines),
        caps=tuple(c for c in caps if GRADES.index(c.grade) > GRADES.index(uncapped)),
        notes=notes,
    )
