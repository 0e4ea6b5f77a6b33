"""Plain write records: what the live side hands to storage, in storage's own vocabulary.

`monitor` maps its call events to these records; `Repository.apply(batch)` writes a list of
them in one transaction, in order. They are frozen so a batch can be retried as is.
Times: `*_ms` are media time (milliseconds from the start of the call's audio); `*_at` are
wall-clock UTC datetimes stamped at the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class CallOpened:
    call_id: str  # our id (unique, time-sortable)
    external_id: str  # the switch's call id (callid / callSid / uuid ...), may repeat
    started_at: datetime
    protocol: str  # "audiofork", later "twilio", "audiohook", "audiosocket"
    sample_rate: int
    channels: int
    recording_path: str  # relative to the recordings directory
    parties: tuple[tuple[str, int], ...]  # (party, channel index): ("customer", 0), ("agent", 1)
    agent_id: str | None = None
    queue: str | None = None
    caller: str | None = None
    callee: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The gateway node that owns the call (scale-out); None on a single box.
    node: str | None = None


@dataclass(frozen=True, slots=True)
class SegmentAdded:
    call_id: str
    party: str
    start_ms: int
    end_ms: int
    text: str
    language: str
    confidence: float  # 0..1
    latency_ms: int | None = None  # end of utterance (wall) -> segment ready (wall)
    #: Transcribed off the live path (ASR was overloaded: the catch-up lane, or re-read from
    #: the recording after the call). Its latency says how late; compliance still saw it.
    late: bool = False


@dataclass(frozen=True, slots=True)
class TraceAdded:
    call_id: str
    seq: int  # per-call order (the call's event number): unique, increasing, may have gaps
    kind: str  # connected, metadata, utterance, asr_shed, protocol_error, disconnected, finalised
    at: datetime
    media_ms: int | None = None
    party: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallClosed:
    call_id: str
    ended_at: datetime
    status: str  # "completed" | "interrupted"
    end_reason: str  # "normal", "transport", "protocol_error", "idle_timeout", "server_crash", ...
    duration_ms: int
    recording_frames: int  # frames (samples per channel) in the recording
    party_samples: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The switch hung up: the call is over (its status, end time and length are final and
    stored at once) while `transcripts_pending` utterances may still be in ASR. Its
    `CallClosed`, with the same values, follows once they are in and the verdict is made."""

    call_id: str
    ended_at: datetime
    status: str  # "completed" | "interrupted"
    end_reason: str
    duration_ms: int
    recording_frames: int
    party_samples: dict[str, int] = field(default_factory=dict)
    transcripts_pending: int = 0


@dataclass(frozen=True, slots=True)
class ReadingAdded:
    """A periodic per-party measurement (audio quality every ≤ 2 s of media)."""

    call_id: str
    party: str
    seq: int  # per call and party, from 0
    start_ms: int
    end_ms: int
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FindingAdded:
    """Something found over a media-time span: dead air, overtalk, a quality finding, a
    compliance hit or miss, a forbidden phrase. `seq` orders a call's findings (from 0)."""

    call_id: str
    seq: int
    source: str  # "quality", "conversation", "compliance"
    kind: str  # e.g. "dead_air", "overtalk", "poor_snr", "phrase_matched", "phrase_missed"
    severity: str | None = None  # "info", "minor", "major", "critical"
    party: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResultSaved:
    """A call-level summary document; saving the same (kind, party) again replaces it."""

    call_id: str
    kind: str  # "quality_party", "conversation", "quality", "compliance"
    party: str = ""  # "" for call-wide results
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallScored:
    """The call's scores (0-100) and grade (excellent / good / pass / needs_improvement)."""

    call_id: str
    score: float | None
    grade: str | None
    quality_score: float | None = None
    compliance_score: float | None = None


ALERT_SEVERITIES = ("info", "warning", "critical")
ALERT_STATES = ("open", "acknowledged", "resolved")


@dataclass(frozen=True, slots=True)
class AlertRaised:
    """An alert on a call. `alert_id` is allocated by the alert service (one callwatch instance
    per database, like crash recovery assumes), so the live feed knows it before the commit.
    At most one alert per (call_id, rule): a second one is skipped on insert. One webhook
    outbox row per name in `webhooks` is written in the same transaction as the alert."""

    alert_id: int
    call_id: str
    rule: str  # the rule instance, unique per call: "duration_long", "compliance_miss:greeting"
    kind: str  # what happened: "duration_long", "dead_air", "poor_audio", "media_stalled" ...
    severity: str  # one of ALERT_SEVERITIES
    raised_at: datetime
    media_start_ms: int | None
    media_end_ms: int | None
    message: str
    party: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)  # values, thresholds, span
    agent_id: str | None = None
    queue: str | None = None
    webhooks: tuple[str, ...] = ()  # names of [[webhooks.targets]] to notify


@dataclass(frozen=True, slots=True)
class AlertChanged:
    """An alert acknowledged or resolved (open -> acknowledged -> resolved; open -> resolved).
    Webhook outbox rows for `webhooks` are written in the same transaction."""

    alert_id: int
    call_id: str
    state: str  # "acknowledged" | "resolved"
    by: str  # who (a user name, or "system")
    at: datetime
    webhooks: tuple[str, ...] = ()


Record = (
    CallOpened | SegmentAdded | TraceAdded | CallClosed | CallEnded
    | ReadingAdded | FindingAdded | ResultSaved | CallScored
    | AlertRaised | AlertChanged
)  # fmt: skip
