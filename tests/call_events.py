"""Call events for tests, made the way a live call makes them (short positional helpers, so
a test reads like the call it describes). Sequence numbers are the test's to choose."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from audio_quality.records import DeadAirDetected, QualityReading
from monitor.events import (
    AlertChanged,
    AlertRaised,
    CallEnded,
    CallFinalised,
    CallScored,
    CallStarted,
    FindingDetail,
    FindingMade,
    FindingSource,
    Marked,
    ReadingTaken,
    SegmentTranscribed,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def started(
    call_id: str,
    at: datetime = T0,
    *,
    queue: str | None = "billing",
    agent: str | None = "a1",
    parties: tuple[tuple[str, int], ...] = (("customer", 0), ("agent", 1)),
    caller: str | None = None,
) -> CallStarted:
    return CallStarted(call_id, 0, 0, at, f"x-{call_id}", "audiofork", 8000, 2,
                       f"{call_id}.wav", parties, agent_id=agent, queue=queue,
                       caller=caller)  # fmt: skip


def finalised(
    call_id: str,
    ended_at: datetime = T0,
    status: str = "completed",
    duration_ms: int = 60_000,
    *,
    seq: int = 99,
) -> CallFinalised:
    return CallFinalised(call_id, seq, duration_ms, ended_at, ended_at, status, "normal",
                         duration_ms, duration_ms * 8)  # fmt: skip


def ended(
    call_id: str,
    ended_at: datetime = T0,
    status: str = "completed",
    duration_ms: int = 60_000,
    pending: int = 0,
    *,
    seq: int = 98,
) -> CallEnded:
    return CallEnded(call_id, seq, duration_ms, ended_at, status, "normal", duration_ms,
                     duration_ms * 8, transcripts_pending=pending)  # fmt: skip


def mark(
    call_id: str,
    seq: int,
    kind: str,
    media_ms: int | None = None,
    party: str | None = None,
    at: datetime = T0,
    **data: Any,
) -> Marked:
    return Marked(call_id, seq, media_ms, at, kind, party, data)


def segment(
    call_id: str,
    party: str,
    start_ms: int,
    end_ms: int,
    text: str,
    *,
    latency_ms: int | None = None,
    late: bool = False,
    seq: int = 10,
) -> SegmentTranscribed:
    return SegmentTranscribed(call_id, seq, start_ms, T0, party, start_ms, end_ms, text, "en",
                              0.9, latency_ms, late)  # fmt: skip


def reading(
    call_id: str,
    party: str,
    seq: int,
    *,
    snr_db: float | None = 30.0,
    span_ms: int = 2000,
    **values: Any,
) -> ReadingTaken:
    fields: dict[str, Any] = {
        "window_start_ms": seq * span_ms, "speech_ms": 0, "rms_dbov": -30.0,
        "speech_level_dbov": None, "noise_level_dbov": None, "snr_db": snr_db,
        "clipped_samples": 0, "clip_ratio": 0.0, "dropouts": 0, "dropout_ms": 0,
        "missing_ms": 0,
    } | values  # fmt: skip
    r = QualityReading(party, seq, seq * span_ms, (seq + 1) * span_ms, **fields)
    return ReadingTaken(call_id, 100 + seq, r.end_ms, T0, r)


_KINDS = {
    "DeadAirDetected": (FindingSource.CONVERSATION, "dead_air"),
    "OvertalkDetected": (FindingSource.CONVERSATION, "overtalk"),
    "PhraseMatched": (FindingSource.COMPLIANCE, "phrase_matched"),
    "PhraseMissed": (FindingSource.COMPLIANCE, "phrase_missed"),
    "ForbiddenPhraseSaid": (FindingSource.COMPLIANCE, "forbidden_phrase"),
    "OrderViolated": (FindingSource.COMPLIANCE, "order_violated"),
    "RuleSuspended": (FindingSource.COMPLIANCE, "rule_suspended"),
}


def finding(
    call_id: str,
    seq: int,
    detail: FindingDetail,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    party: str | None = None,
) -> FindingMade:
    """The finding a live call makes for `detail` (its source, kind and severity)."""
    name = type(detail).__name__
    source, kind = _KINDS.get(name, (FindingSource.QUALITY, getattr(detail, "kind", name)))
    start = start_ms if start_ms is not None else getattr(detail, "start_ms", None)
    start = start if start is not None else getattr(detail, "at_ms", None)
    end = end_ms if end_ms is not None else getattr(detail, "end_ms", start)
    who = party or getattr(detail, "party", None)
    return FindingMade(call_id, seq, start, T0, source, kind, detail,
                       getattr(detail, "severity", None), who, start, end)  # fmt: skip


def dead_air(call_id: str, seq: int, start_ms: int, end_ms: int) -> FindingMade:
    return finding(call_id, seq, DeadAirDetected(start_ms, end_ms))


def alert_raised(
    alert_id: int,
    call_id: str,
    rule: str,
    kind: str,
    severity: str,
    at: datetime = T0,
    media_start_ms: int | None = 0,
    media_end_ms: int | None = None,
    message: str = "",
    *,
    seq: int = 50,
    **kw: Any,
) -> AlertRaised:
    return AlertRaised(call_id, seq, media_end_ms, at, alert_id, rule, kind, severity, message,
                       media_start_ms, media_end_ms, **kw)  # fmt: skip


def alert_changed(
    alert_id: int, call_id: str, state: str, by: str, at: datetime = T0, *, seq: int = 60
) -> AlertChanged:
    return AlertChanged(call_id, seq, None, at, alert_id, state, by)


def scored(
    call_id: str,
    score: float | None,
    grade: str | None,
    compliance_score: float | None = None,
    *,
    seq: int = 97,
) -> CallScored:
    return CallScored(call_id, seq, None, T0, score, grade, None, compliance_score)
