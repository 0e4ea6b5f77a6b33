"""The live events of a call: the one vocabulary between the call, storage, alerts and the board.

Every event is a frozen, slotted dataclass with a past-tense name and the same four leading
fields: `call_id`, `seq` (the call's event sequence number, from 0, assigned by the call's one
`CallSequencer`: see `monitor.events.sequence`), `media_ms` (media time of the call, None where
the event has none, e.g. an alert acknowledged from the API) and `at` (wall-clock UTC, stamped
when the event was made). They serialise losslessly (`monitor.events.codec`), so they can
cross a process or a machine.

What is typed stays typed: a reading carries its `QualityReading`, a finding its detector's or
checker's own event (`FindingDetail`); only free-form switch payloads, result documents and
alert evidence are JSON values. Trace kinds the rules act on are `TraceKind` members (switch
events keep their own name, a plain string).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Union

from audio_quality.assessment import Finding as QualityFinding
from audio_quality.records import DeadAirDetected, OvertalkDetected, QualityReading
from monitor.qa.events import (
    ForbiddenPhraseSaid,
    OrderViolated,
    PhraseMatched,
    PhraseMissed,
    RuleSuspended,
)

#: A JSON value (what switch payloads, result documents and alert evidence hold). Lists, not
#: tuples: that is what survives a round trip.
JsonValue = Union[None, bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"]]  # noqa: UP007
JsonDoc = dict[str, JsonValue]


class TraceKind(enum.StrEnum):
    """Timeline entries the live side makes itself. Switch and app events (`dtmf`, `mark`,
    Genesys `paused` ...) keep their own names as plain strings in `Marked.kind`."""

    CONNECTED = "connected"
    METADATA = "metadata"
    UTTERANCE = "utterance"
    ASR_SHED = "asr_shed"
    ASR_TIMEOUT = "asr_timeout"
    ASR_DEFERRED = "asr_deferred"
    ASR_CATCH_UP = "asr_catch_up"
    REDACTED = "redacted"
    AUDIO_REDACTED = "audio_redacted"
    RECORDING_FAILED = "recording_failed"
    PARTICIPANT_JOINED = "participant_joined"
    LEG_ENDED = "leg_ended"
    DEAD_AIR_STARTED = "dead_air_started"
    HOLD_STARTED = "hold_started"
    HOLD_ENDED = "hold_ended"
    IVR_PROMPT_STARTED = "ivr_prompt_started"
    IVR_PROMPT_ENDED = "ivr_prompt_ended"
    IVR_PROMPT = "ivr_prompt"
    CAPTURE_PAUSED = "capture_paused"
    CAPTURE_RESUMED = "capture_resumed"
    APP_MESSAGE = "app_message"
    FORMAT_SUSPECT = "format_suspect"
    MEDIA_FORMAT = "media_format"
    DISCONNECTED = "disconnected"
    FINALISATION_ERROR = "finalisation_error"
    FINALISED = "finalised"
    ALERT = "alert"
    ALERT_CHANGED = "alert_changed"


_TRACE_KINDS = {k.value: k for k in TraceKind}
#: Trace entries of an utterance that was never transcribed: the model did not answer within
#: `asr.utterance_timeout_s`, or it was given up under overload.
UNTRANSCRIBED = (TraceKind.ASR_TIMEOUT.value, TraceKind.ASR_SHED.value)


def missing_speech(trace: Iterable[Any]) -> list[dict[str, Any]]:
    """The ranges of speech a stored call's transcript lacks, by start, from its trace
    entries (anything with `kind`, `party`, `media_ms`, `data`): `{party, start_ms, end_ms,
    reason}`. Empty: every utterance cut was transcribed (or is still pending)."""
    missing = [
        {"party": t.party, "start_ms": t.media_ms or 0,
         "end_ms": int(t.data.get("end_ms") or t.media_ms or 0), "reason": t.kind}
        for t in trace if t.kind in UNTRANSCRIBED
    ]  # fmt: skip
    return sorted(missing, key=lambda m: (m["start_ms"], m["end_ms"]))


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call connected: who, how, and where its recording goes."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    external_id: str
    protocol: str
    sample_rate: int
    channels: int
    recording_path: str
    parties: tuple[tuple[str, int], ...]  # (party, channel index)
    agent_id: str | None = None
    queue: str | None = None
    caller: str | None = None
    callee: str | None = None
    metadata: JsonDoc = field(default_factory=dict)
    #: The gateway node that owns the call (scale-out); None on a single box.
    node: str | None = None


@dataclass(frozen=True, slots=True)
class Marked:
    """An entry on the call's timeline (the trace): a `TraceKind`, or a switch event's name."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    kind: TraceKind | str
    party: str | None = None
    data: JsonDoc = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One spelling per kind, so a round trip through JSON gives back an equal event.
        if not isinstance(self.kind, TraceKind) and self.kind in _TRACE_KINDS:
            object.__setattr__(self, "kind", _TRACE_KINDS[self.kind])


@dataclass(frozen=True, slots=True)
class SegmentTranscribed:
    """A party's utterance, transcribed (and redacted where the privacy settings say so)."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    party: str
    start_ms: int
    end_ms: int
    text: str
    language: str
    confidence: float
    latency_ms: int | None = None
    late: bool = False  # transcribed off the live path (overload catch-up)


@dataclass(frozen=True, slots=True)
class ReadingTaken:
    """One party's periodic audio-quality measures (every ≤ 2 s of media)."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    reading: QualityReading


#: What a finding is about, in its detector's own terms.
FindingDetail = (
    DeadAirDetected | OvertalkDetected | PhraseMatched | PhraseMissed | ForbiddenPhraseSaid
    | OrderViolated | RuleSuspended | QualityFinding
)  # fmt: skip


class FindingSource(enum.StrEnum):
    CONVERSATION = "conversation"
    COMPLIANCE = "compliance"
    QUALITY = "quality"


@dataclass(frozen=True, slots=True)
class FindingMade:
    """Something found over a media span: dead air, overtalk, a compliance hit or miss, a
    forbidden phrase, an end-of-call quality finding. `kind` is the stored name
    ("dead_air", "phrase_matched", "poor_snr" ...); `detail` the typed original."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    source: FindingSource
    kind: str
    detail: FindingDetail
    severity: str | None = None
    party: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    @property
    def compliance_hit(self) -> bool:
        return isinstance(self.detail, PhraseMatched)

    @property
    def compliance_miss(self) -> bool:
        return isinstance(self.detail, PhraseMissed)


@dataclass(frozen=True, slots=True)
class ResultComputed:
    """A call-level summary document (per party, or call-wide with `party` "")."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    kind: str  # "quality_party", "conversation", "quality", "compliance", "scorecard" ...
    party: str = ""
    data: JsonDoc = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallScored:
    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    score: float | None
    grade: str | None
    quality_score: float | None = None
    compliance_score: float | None = None


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The switch hung up: status, end and length are final; `transcripts_pending`
    utterances may still be in ASR (`CallFinalised` follows once they are in)."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    status: str  # "completed" | "interrupted"
    end_reason: str
    duration_ms: int
    recording_frames: int
    party_samples: dict[str, int] = field(default_factory=dict)
    transcripts_pending: int = 0


@dataclass(frozen=True, slots=True)
class CallFinalised:
    """The verdict is made: nothing more will be added to the call by the live side."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    ended_at: datetime
    status: str
    end_reason: str
    duration_ms: int
    recording_frames: int
    party_samples: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertRaised:
    """An alert on a call; `alert_id` is numbered by the alert service."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    alert_id: int
    rule: str
    kind: str
    severity: str  # "info" | "warning" | "critical"
    message: str
    media_start_ms: int | None
    media_end_ms: int | None
    party: str | None = None
    evidence: JsonDoc = field(default_factory=dict)
    agent_id: str | None = None
    queue: str | None = None
    webhooks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertChanged:
    """An alert acknowledged or resolved."""

    call_id: str
    seq: int
    media_ms: int | None
    at: datetime
    alert_id: int
    state: str  # "acknowledged" | "resolved"
    by: str
    webhooks: tuple[str, ...] = ()


CallEvent = (
    CallStarted | Marked | SegmentTranscribed | ReadingTaken | FindingMade | ResultComputed
    | CallScored | CallEnded | CallFinalised | AlertRaised | AlertChanged
)  # fmt: skip

EVENT_TYPES: tuple[type[CallEvent], ...] = (
    CallStarted, Marked, SegmentTranscribed, ReadingTaken, FindingMade, ResultComputed,
    CallScored, CallEnded, CallFinalised, AlertRaised, AlertChanged,
)  # fmt: skip
