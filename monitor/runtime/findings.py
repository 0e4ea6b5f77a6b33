"""Map the analysis cores' events and verdict to call events (`monitor.events`).

Readings become `ReadingTaken` (the typed `QualityReading` inside); dead air, overtalk and
compliance events become `FindingMade` with the detector's own event as `detail`; the start of
a dead-air stretch becomes a `dead_air_started` mark; the end-of-call verdict becomes
`ResultComputed` documents, a `FindingMade` per quality finding and `CallScored`. Every event
is numbered by the call's sequencer as it is made: publish them in the order returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audio_quality.dnsmos import DnsmosScore
from audio_quality.records import DeadAirDetected, DeadAirStarted, OvertalkDetected, QualityReading
from monitor.core.analysis import AnalysisEvent, CallVerdict
from monitor.events import (
    CallEvent,
    CallScored,
    CallSequencer,
    FindingMade,
    FindingSource,
    Marked,
    ReadingTaken,
    ResultComputed,
    TraceKind,
)
from monitor.events.documents import jsonable
from monitor.qa import (
    ForbiddenPhraseSaid,
    OrderViolated,
    PhraseMatched,
    PhraseMissed,
    RuleSuspended,
)

#: event class -> (source, finding kind)
_FINDINGS: dict[type, tuple[FindingSource, str]] = {
    DeadAirDetected: (FindingSource.CONVERSATION, "dead_air"),
    OvertalkDetected: (FindingSource.CONVERSATION, "overtalk"),
    PhraseMatched: (FindingSource.COMPLIANCE, "phrase_matched"),
    PhraseMissed: (FindingSource.COMPLIANCE, "phrase_missed"),
    ForbiddenPhraseSaid: (FindingSource.COMPLIANCE, "forbidden_phrase"),
    OrderViolated: (FindingSource.COMPLIANCE, "order_violated"),
    RuleSuspended: (FindingSource.COMPLIANCE, "rule_suspended"),
}


def _span(event: Any) -> tuple[int | None, int | None]:
    if isinstance(event, PhraseMissed):
        return event.at_ms, event.at_ms
    if isinstance(event, OrderViolated):
        return event.stage_ms, event.stage_ms
    return getattr(event, "start_ms", None), getattr(event, "end_ms", None)


def analysis_events(seq: CallSequencer, found: Sequence[AnalysisEvent]) -> list[CallEvent]:
    """The call events for the analysis cores' output (other outputs are ignored)."""
    out: list[CallEvent] = []
    for event in found:
        if isinstance(event, QualityReading):
            out.append(seq.make(ReadingTaken, media_ms=event.end_ms, reading=event))
        elif (kind := _FINDINGS.get(type(event))) is not None:
            start, end = _span(event)
            party = getattr(event, "party", None) or getattr(event, "interrupter", None)
            out.append(
                seq.make(FindingMade, media_ms=start, source=kind[0], kind=kind[1],
                         detail=event, severity=getattr(event, "severity", None),
                         party=party, start_ms=start, end_ms=end)
            )  # fmt: skip
        elif isinstance(event, DeadAirStarted):
            out.append(seq.make(Marked, media_ms=event.start_ms, kind=TraceKind.DEAD_AIR_STARTED))
    return out


def dnsmos_events(
    seq: CallSequencer, scores: Sequence[DnsmosScore], media_ms: int
) -> list[CallEvent]:
    """Every DNSMOS window score of the call, per party, each with its source sample rate,
    codec, model and model rate beside it (scores are only comparable on the same path)."""
    by_party: dict[str, list[Any]] = {}
    for score in sorted(scores, key=lambda sc: (sc.party, sc.seq)):
        by_party.setdefault(score.party, []).append(jsonable(score))
    return [
        seq.make(ResultComputed, media_ms=media_ms, kind="dnsmos_windows", party=party,
                 data={"windows": windows})
        for party, windows in by_party.items()
    ]  # fmt: skip


def verdict_events(seq: CallSequencer, verdict: CallVerdict, media_ms: int) -> list[CallEvent]:
    def doc(kind: str, value: Any, party: str = "") -> CallEvent:
        return seq.make(ResultComputed, media_ms=media_ms, kind=kind, party=party,
                        data=jsonable(value))  # fmt: skip

    out = [doc("quality_party", summary, party) for party, summary in verdict.parties.items()]
    out.append(doc("conversation", verdict.conversation))
    out.append(doc("quality", verdict.assessment))
    for f in verdict.assessment.findings:
        out.append(
            seq.make(FindingMade, media_ms=f.start_ms, source=FindingSource.QUALITY,
                     kind=f.kind, detail=f, severity=f.severity, party=f.party,
                     start_ms=f.start_ms, end_ms=f.end_ms)
        )  # fmt: skip
    if verdict.compliance is not None:
        out.append(doc("compliance", verdict.compliance))
    out.append(doc("scorecard", verdict.scorecard))
    out.append(
        seq.make(CallScored, media_ms=media_ms, score=verdict.score, grade=verdict.grade,
                 quality_score=float(verdict.assessment.score),
                 compliance_score=verdict.compliance.score if verdict.compliance else None)
    )  # fmt: skip
    return out
