"""Call events -> storage rows, and each row class's policy under pressure.

The only module that knows both vocabularies: `monitor.events` (what a live call says) and
`storage.records` (what the repository writes). Everything else in `monitor` speaks events;
the storage writer (`monitor.runtime.storage_sink`) calls `rows_for` on each event it hears
on the bus and queues the rows with the policy `policy_of` gives them.

Mapping notes: a trace row's `seq` is its event's seq (the call's one sequence, so the trace
is ordered and unique but has gaps where a call's other events, e.g. readings, came between).
A finding and an alert each also make a trace row (the call's timeline shows them) under the
same seq; an alert change is only a trace row (the alert row itself is changed by the alert
service, in the same transaction as its webhook outbox rows). Documents are made JSON-safe
here: non-finite floats become null, enums their values.
"""

from __future__ import annotations

import enum
from typing import Any

from monitor import events as ev
from monitor.events.documents import jsonable
from storage import records as rec

Row = rec.Record
__all__ = ["Policy", "Row", "policy_of", "rows_for"]


class Policy(enum.Enum):
    """What the writer may do with a row when it cannot keep up."""

    #: Never dropped: the writer holds it (callers that can wait are slowed instead).
    KEEP = "keep"
    #: May be shed when the writer's queue is full; counted (health, metrics).
    SHED = "shed"


#: Per row class, written down: the call's lifecycle, its transcript, findings (compliance
#: results among them), results, scores and alerts are what the call *is*, and are never
#: dropped. Periodic readings and timeline entries are detail a loaded system may lose,
#: except the timeline entries in `KEPT_TRACE` (below).
POLICY: dict[type, Policy] = {
    rec.CallOpened: Policy.KEEP,
    rec.CallEnded: Policy.KEEP,
    rec.CallClosed: Policy.KEEP,
    rec.SegmentAdded: Policy.KEEP,
    rec.FindingAdded: Policy.KEEP,
    rec.ResultSaved: Policy.KEEP,
    rec.CallScored: Policy.KEEP,
    rec.AlertRaised: Policy.KEEP,
    rec.AlertChanged: Policy.KEEP,
    rec.ReadingAdded: Policy.SHED,
    rec.TraceAdded: Policy.SHED,
}


#: Timeline entries that are part of the call's lifecycle or audit, kept like the rows above:
#: crash recovery looks for `finalised`; a capture pause is a PCI audit fact; an alert's and
#: an alert change's entries belong to the alert.
KEPT_TRACE = frozenset(
    {
        ev.TraceKind.CONNECTED,
        ev.TraceKind.METADATA,
        ev.TraceKind.DISCONNECTED,
        ev.TraceKind.FINALISED,
        ev.TraceKind.FINALISATION_ERROR,
        ev.TraceKind.CAPTURE_PAUSED,
        ev.TraceKind.CAPTURE_RESUMED,
        ev.TraceKind.REDACTED,  # what was masked, where: the audit of a redaction
        ev.TraceKind.AUDIO_REDACTED,
        ev.TraceKind.RECORDING_FAILED,  # what the recording lacks, and why
        ev.TraceKind.ALERT,
        ev.TraceKind.ALERT_CHANGED,
    }
)


def policy_of(row: Row) -> Policy:
    if isinstance(row, rec.TraceAdded) and row.kind in KEPT_TRACE:
        return Policy.KEEP
    return POLICY[type(row)]


_READING_KEYS = ("party", "seq", "start_ms", "end_ms")
#: Finding fields the trace entry has as its own (kind, party, media time, source).
_TRACE_OWN = frozenset({"kind", "party", "source", "media_ms"})


def _trace(e: ev.CallEvent, kind: str, party: str | None, data: dict[str, Any]) -> Row:
    return rec.TraceAdded(e.call_id, e.seq, kind, e.at, e.media_ms, party, data)


def rows_for(e: ev.CallEvent) -> list[Row]:
    """The rows that store event `e` (in this order, in one batch or consecutive ones)."""
    if isinstance(e, ev.Marked):
        return [_trace(e, str(e.kind), e.party, dict(e.data))]
    if isinstance(e, ev.ReadingTaken):
        r = e.reading
        doc = jsonable(r)
        values = {k: v for k, v in doc.items() if k not in _READING_KEYS}
        return [rec.ReadingAdded(e.call_id, r.party, r.seq, r.start_ms, r.end_ms, values)]
    if isinstance(e, ev.SegmentTranscribed):
        return [
            rec.SegmentAdded(e.call_id, e.party, e.start_ms, e.end_ms, e.text, e.language,
                             e.confidence, e.latency_ms, e.late)
        ]  # fmt: skip
    if isinstance(e, ev.FindingMade):
        data = jsonable(e.detail)
        trace = {k: v for k, v in data.items() if k not in _TRACE_OWN}
        return [
            rec.FindingAdded(e.call_id, e.seq, e.source.value, e.kind, e.severity, e.party,
                             e.start_ms, e.end_ms, data),
            rec.TraceAdded(e.call_id, e.seq, e.kind, e.at, e.start_ms, e.party,
                           {"source": e.source.value, **trace}),
        ]  # fmt: skip
    if isinstance(e, ev.CallStarted):
        return [
            rec.CallOpened(e.call_id, e.external_id, e.at, e.protocol, e.sample_rate,
                           e.channels, e.recording_path, e.parties, e.agent_id, e.queue,
                           e.caller, e.callee, dict(e.metadata), e.node)
        ]  # fmt: skip
    if isinstance(e, ev.ResultComputed):
        return [rec.ResultSaved(e.call_id, e.kind, e.party, dict(e.data))]
    if isinstance(e, ev.CallScored):
        return [rec.CallScored(e.call_id, e.score, e.grade, e.quality_score, e.compliance_score)]
    if isinstance(e, ev.CallEnded):
        return [
            rec.CallEnded(e.call_id, e.at, e.status, e.end_reason, e.duration_ms,
                          e.recording_frames, dict(e.party_samples), e.transcripts_pending)
        ]  # fmt: skip
    if isinstance(e, ev.CallFinalised):
        return [
            rec.CallClosed(e.call_id, e.ended_at, e.status, e.end_reason, e.duration_ms,
                           e.recording_frames, dict(e.party_samples))
        ]  # fmt: skip
    if isinstance(e, ev.AlertRaised):
        return [
            rec.AlertRaised(e.alert_id, e.call_id, e.rule, e.kind, e.severity, e.at,
                            e.media_start_ms, e.media_end_ms, e.message, e.party,
                            dict(e.evidence), e.agent_id, e.queue, e.webhooks),
            _trace(e, "alert", e.party,
                   {"alert_id": e.alert_id, "rule": e.rule, "alert_kind": e.kind,
                    "severity": e.severity, "message": e.message,
                    "media_start_ms": e.media_start_ms, "media_end_ms": e.media_end_ms}),
        ]  # fmt: skip
    if isinstance(e, ev.AlertChanged):
        return [
            _trace(e, "alert_changed", None,
                   {"alert_id": e.alert_id, "state": e.state, "by": e.by})
        ]  # fmt: skip
    raise TypeError(f"no rows for {type(e).__name__}")
