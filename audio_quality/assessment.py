"""Measures to findings, a 0–100 audio-quality score and a grade (pure function `assess`).

Owns the judgement, not the measuring: it reads the per-party summaries and the conversation
summary and compares them with `ThresholdSettings`. Each rule has a direction in its
threshold names (`*_min_*`: below is bad; `*_max_*`: above is bad) and two levels: beyond
`*_warning` is a warning, beyond `*_critical` is critical. A measure that could not be taken
(None) gives no finding: the absence of evidence is not a fault.

Score: 100 minus, per finding, the severity's penalty times the kind's weight
(`ScoreSettings`; each finding carries its `points`, so the score can be explained), clamped
to 0–100; the grade is the first of excellent / good / pass whose
minimum the score reaches, else needs_improvement. The score is meant to feed the call's
overall grade later, alongside compliance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from audio_quality.records import ConversationSummary, PartyQualitySummary
from audio_quality.settings import QualitySettings

Grade = Literal["excellent", "good", "pass", "needs_improvement"]


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # poor_snr, low_clarity, clipping, dropouts, low_level, high_level, ...
    severity: Literal["warning", "critical"]
    party: str | None  # None for conversation findings
    value: float
    threshold: float  # the threshold crossed (the critical one for critical findings)
    unit: str  # dB, dBov, MOS, ratio, per_min, ms, words_per_min, chars_per_min
    start_ms: int  # media-time span the finding is about
    end_ms: int
    points: float = 0.0  # taken off the quality score for it (severity penalty × weight)


@dataclass(frozen=True, slots=True)
class QualityAssessment:
    score: float
    grade: Grade
    findings: tuple[Finding, ...]


def _judge(
    value: float | None, warning: float, critical: float, *, low_is_bad: bool
) -> tuple[Literal["warning", "critical"], float] | None:
    if value is None:
        return None
    if low_is_bad:
        if value < critical:
            return "critical", critical
        if value < warning:
            return "warning", warning
    else:
        if value > critical:
            return "critical", critical
        if value > warning:
            return "warning", warning
    return None


def assess(
    party_summaries: Iterable[PartyQualitySummary],
    conversation: ConversationSummary | None,
    settings: QualitySettings,
) -> QualityAssessment:
    """Findings, score and grade for one call."""
    th = settings.thresholds
    found: list[Finding] = []

    def add(
        kind: str, party: str | None, value: float | None, warn: float, crit: float,
        unit: str, span: tuple[int, int], *, low_is_bad: bool,
    ) -> None:  # fmt: skip
        verdict = _judge(value, warn, crit, low_is_bad=low_is_bad)
        if verdict is not None and value is not None:
            found.append(Finding(kind, verdict[0], party, value, verdict[1], unit, *span))

    for p in party_summaries:
        span = (0, p.duration_ms)
        minutes = p.duration_ms / 60_000.0
        add("poor_snr", p.party, p.snr_db, th.snr_min_db_warning, th.snr_min_db_critical,
            "dB", span, low_is_bad=True)  # fmt: skip
        add("low_clarity", p.party, p.dnsmos_ovrl_mean, th.dnsmos_ovrl_min_warning,
            th.dnsmos_ovrl_min_critical, "MOS", span, low_is_bad=True)  # fmt: skip
        add("low_level", p.party, p.speech_level_dbov, th.speech_level_min_dbov_warning,
            th.speech_level_min_dbov_critical, "dBov", span, low_is_bad=True)  # fmt: skip
        add("high_level", p.party, p.speech_level_dbov, th.speech_level_max_dbov_warning,
            th.speech_level_max_dbov_critical, "dBov", span, low_is_bad=False)  # fmt: skip
        add("clipping", p.party, p.clip_ratio if p.clipped_samples else None,
            th.clip_ratio_max_warning, th.clip_ratio_max_critical, "ratio", span,
            low_is_bad=False)  # fmt: skip
        add("dropouts", p.party, p.dropouts / minutes if minutes > 0 else None,
            th.dropouts_per_min_max_warning, th.dropouts_per_min_max_critical, "per_min",
            span, low_is_bad=False)  # fmt: skip

    if conversation is not None and not conversation.absent:
        # One party not streamed: nothing measured between the parties can be judged.
        c = conversation
        whole = (0, c.duration_ms)
        if c.dead_air_longest_start_ms is not None and c.dead_air_longest_end_ms is not None:
            add("long_dead_air", None, float(c.dead_air_max_ms), th.dead_air_max_ms_warning,
                th.dead_air_max_ms_critical, "ms",
                (c.dead_air_longest_start_ms, c.dead_air_longest_end_ms),
                low_is_bad=False)  # fmt: skip
        talk_minutes = (c.duration_ms - c.hold_ms - c.ivr_ms) / 60_000.0
        # A rate over a short call is no evidence: one 0.6 s overlap in 51 s is 1.2/min.
        enough = (c.overtalk_count >= th.overtalk_min_count
                  or c.overtalk_total_ms >= th.overtalk_min_total_ms)  # fmt: skip
        add("excessive_overtalk", None,
            c.overtalk_count / talk_minutes if talk_minutes > 0 and enough else None,
            th.overtalk_per_min_max_warning, th.overtalk_per_min_max_critical, "per_min",
            whole, low_is_bad=False)  # fmt: skip
        add("slow_response", "agent", c.response_gap_mean_ms,
            th.response_gap_mean_ms_max_warning, th.response_gap_mean_ms_max_critical, "ms",
            whole, low_is_bad=False)  # fmt: skip
        for party, wpm, cpm in (
            ("agent", c.agent_words_per_min, c.agent_chars_per_min),
            ("customer", c.customer_words_per_min, c.customer_chars_per_min),
        ):
            add("fast_speech", party, wpm, th.words_per_min_max_warning,
                th.words_per_min_max_critical, "words_per_min", whole,
                low_is_bad=False)  # fmt: skip
            add("fast_speech", party, cpm, th.chars_per_min_max_warning,
                th.chars_per_min_max_critical, "chars_per_min", whole,
                low_is_bad=False)  # fmt: skip

    sc = settings.score
    found = [
        replace(f, points=round(
            (sc.critical_penalty if f.severity == "critical" else sc.warning_penalty)
            * float(getattr(sc, f"{f.kind}_weight", 1.0)), 2))
        for f in found
    ]  # fmt: skip
    score = max(0.0, min(100.0, 100.0 - sum(f.points for f in found)))
    grade: Grade
    if score >= sc.excellent_min:
        grade = "excellent"
    elif score >= sc.good_min:
        grade = "good"
    elif score >= sc.pass_min:
        grade = "pass"
    else:
        grade = "needs_improvement"
    return QualityAssessment(score=round(score, 1), grade=grade, findings=tuple(found))
