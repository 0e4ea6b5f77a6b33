"""Map the analysis cores' events and verdict to storage records (and trace entries).

Readings become `ReadingAdded`; dead air, overtalk and compliance events become `FindingAdded`
(plus a trace entry, so the call's timeline shows them); the end-of-call verdict becomes
`ResultSaved` documents and `CallScored`. Documents are made JSON-safe here: non-finite floats
become null, enums their values.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from audio_quality.conversation import DeadAirDetected, DeadAirStarted, OvertalkDetected
from audio_quality.records import QualityReading
from monitor.core.analysis import CallVerdict
from monitor.qa import (
    ForbiddenPhraseSaid,
    OrderViolated,
    PhraseMatched,
    PhraseMissed,
    RuleSuspended,
)
from storage.records import CallScored, FindingAdded, ReadingAdded, ResultSaved

#: event class -> (source, finding kind)
_FINDINGS: dict[type, tuple[str, str]] = {
    DeadAirDetected: ("conversation", "dead_air"),
    OvertalkDetected: ("conversation", "overtalk"),
    PhraseMatched: ("compliance", "phrase_matched"),
    PhraseMissed: ("compliance", "phrase_missed"),
    ForbiddenPhraseSaid: ("compliance", "forbidden_phrase"),
    OrderViolated: ("compliance", "order_violated"),
    RuleSuspended: ("compliance", "rule_suspended"),
}
_READING_KEYS = ("party", "seq", "start_ms", "end_ms")


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _span(event: Any) -> tuple[int | None, int | None]:
    if isinstance(event, PhraseMissed):
        return event.at_ms, event.at_ms
    if isinstance(event, OrderViolated):
        return event.stage_ms, event.stage_ms
    return getattr(event, "start_ms", None), getattr(event, "end_ms", None)


def finding(call_id: str, seq: int, event: Any) -> FindingAdded | None:
    """The finding for a live event, or None for events that are not findings."""
    kind = _FINDINGS.get(type(event))
    if kind is None:
        return None
    start, end = _span(event)
    party = getattr(event, "party", None) or getattr(event, "interrupter", None)
    return FindingAdded(
        call_id=call_id,
        seq=seq,
        source=kind[0],
        kind=kind[1],
        severity=getattr(event, "severity", None),
        party=party,
        start_ms=start,
        end_ms=end,
        data=jsonable(event),
    )


def reading(call_id: str, event: Any) -> ReadingAdded | None:
    if not isinstance(event, QualityReading):
        return None
    doc = jsonable(event)
    values = {k: v for k, v in doc.items() if k not in _READING_KEYS}
    return ReadingAdded(call_id, event.party, event.seq, event.start_ms, event.end_ms, values)


def is_dead_air_start(event: Any) -> bool:
    return isinstance(event, DeadAirStarted)


def dnsmos_records(call_id: str, scores: list[Any]) -> list[ResultSaved]:
    """Every DNSMOS window score of the call, per party, each with its source sample rate,
    codec, model and model rate beside it (scores are only comparable on the same path)."""
    by_party: dict[str, list[Any]] = {}
    for score in sorted(scores, key=lambda sc: (sc.party, sc.seq)):
        by_party.setdefault(score.party, []).append(jsonable(score))
    return [
        ResultSaved(call_id, "dnsmos_windows", party, {"windows": windows})
        for party, windows in by_party.items()
    ]


def verdict_records(call_id: str, verdict: CallVerdict, next_seq: int) -> list[Any]:
    out: list[Any] = [
        ResultSaved(call_id, "quality_party", party, jsonable(summary))
        for party, summary in verdict.parties.items()
    ]
    out.append(ResultSaved(call_id, "conversation", "", jsonable(verdict.conversation)))
    out.append(ResultSaved(call_id, "quality", "", jsonable(verdict.assessment)))
    for f in getattr(verdict.assessment, "findings", ()):
        out.append(
            FindingAdded(
                call_id=call_id,
                seq=next_seq,
                source="quality",
                kind=f.kind,
                severity=f.severity,
                party=getattr(f, "party", None),
                start_ms=getattr(f, "start_ms", None),
                end_ms=getattr(f, "end_ms", None),
                data=jsonable(f),
            )
        )
        next_seq += 1
    if verdict.compliance is not None:
        out.append(ResultSaved(call_id, "compliance", "", jsonable(verdict.compliance)))
    out.append(ResultSaved(call_id, "scorecard", "", jsonable(verdict.scorecard)))
    out.append(
        CallScored(
            call_id=call_id,
            score=verdict.score,
            grade=verdict.grade,
            quality_score=float(verdict.assessment.score),
            compliance_score=verdict.compliance.score if verdict.compliance else None,
        )
    )
    return out
