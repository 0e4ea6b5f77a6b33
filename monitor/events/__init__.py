"""Typed live events of a call (`calls`), their lossless JSON (`codec`) and numbering
(`sequence`). Owned by `monitor`: storage, alerts and the board subscribe to these."""

from monitor.events.calls import (
    EVENT_TYPES,
    AlertChanged,
    AlertRaised,
    CallEnded,
    CallEvent,
    CallFinalised,
    CallScored,
    CallStarted,
    FindingDetail,
    FindingMade,
    FindingSource,
    JsonDoc,
    JsonValue,
    Marked,
    ReadingTaken,
    ResultComputed,
    SegmentTranscribed,
    TraceKind,
    missing_speech,
)
from monitor.events.codec import SCHEMA_VERSION, EventDecodeError, from_json, to_json
from monitor.events.sequence import CallSequencer

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "AlertChanged",
    "AlertRaised",
    "CallEnded",
    "CallEvent",
    "CallFinalised",
    "CallScored",
    "CallSequencer",
    "CallStarted",
    "EventDecodeError",
    "FindingDetail",
    "FindingMade",
    "FindingSource",
    "JsonDoc",
    "JsonValue",
    "Marked",
    "ReadingTaken",
    "ResultComputed",
    "SegmentTranscribed",
    "TraceKind",
    "from_json",
    "missing_speech",
    "to_json",
]
