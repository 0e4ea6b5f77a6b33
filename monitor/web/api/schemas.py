"""Response models of the call routes, so the OpenAPI document declares every property and
generated clients get typed objects, not bare dicts: a search hit, the call detail (with its
transcript, trace, analysis and alerts) and the vCon export.

Every timestamp is serialised the same way by pydantic (`2026-11-20T09:00:00Z`), in the list
and in the detail alike. Analysis documents whose shape belongs to the analysers (quality,
compliance, scorecard) stay open objects, named so clients can find them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from monitor.web.api.insights import AlertOut
from storage.models import TraceInfo


class CallItem(BaseModel):
    call_id: str
    external_id: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    duration_ms: int | None
    agent_id: str | None
    queue: str | None
    caller: str | None
    callee: str | None
    score: float | None
    grade: str | None
    quality_score: float | None
    compliance_score: float | None
    end_reason: str | None
    protocol: str


class CallPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[CallItem]


class PartyOut(BaseModel):
    party: str
    channel: int = Field(description="channel index in the recording")
    samples: int | None = Field(description="samples received; null until the call closed")


class SegmentOut(BaseModel):
    segment_id: int
    party: str
    start_ms: int
    end_ms: int
    text: str
    language: str
    confidence: float
    latency_ms: int | None


class TraceOut(BaseModel):
    seq: int
    kind: str
    at: datetime
    media_ms: int | None
    party: str | None
    data: dict[str, Any]


def in_media_order(trace: Iterable[TraceInfo]) -> list[TraceInfo]:
    """The trace by media time, then sequence: a transcript that arrives after the caller hung
    up is shown where it was said, not after `disconnected`. An event without a media time
    stays right after the event stored before it."""
    keyed: list[tuple[int, int, TraceInfo]] = []
    media = 0
    for t in sorted(trace, key=lambda t: t.seq):
        media = t.media_ms if t.media_ms is not None else media
        keyed.append((media, t.seq, t))
    return [t for _, _, t in sorted(keyed, key=lambda k: (k[0], k[1]))]


class QualityOut(BaseModel):
    call: dict[str, Any] | None = Field(description="the call's quality result")
    by_party: dict[str, Any] = Field(description="quality per party")
    conversation: dict[str, Any] | None = Field(description="talk, overtalk, dead air")


class FindingOut(BaseModel):
    seq: int
    source: str
    kind: str
    severity: str | None
    party: str | None
    start_ms: int | None
    end_ms: int | None
    data: dict[str, Any]


class ReadingOut(BaseModel):
    party: str
    seq: int
    start_ms: int
    end_ms: int
    values: dict[str, Any]


class RecordingFailedOut(BaseModel):
    at_ms: int = Field(description="media time from which the call is not recorded")
    error: str = Field(description="errno name, e.g. ENOSPC")
    reason: str = Field(description="in plain words, e.g. 'disk full'")


class MissingSpeechOut(BaseModel):
    party: str | None
    start_ms: int = Field(description="media time the untranscribed utterance starts")
    end_ms: int
    reason: str = Field(description="`asr_timeout` (the model never answered within "
                        "asr.utterance_timeout_s), `asr_shed` (overload) ...")  # fmt: skip


class CallDetailOut(CallItem):
    sample_rate: int
    channels: int
    recording_path: str
    recording_frames: int | None
    recording_url: str
    recording_failed: RecordingFailedOut | None = Field(
        None, description="the recording stopped (disk full, I/O error): it holds the call up "
        "to `at_ms` only (none at all from 0), never presented as complete"
    )  # fmt: skip
    metadata: dict[str, Any]
    parties: list[PartyOut]
    transcript: list[SegmentOut]
    transcript_complete: bool = Field(
        True, description="false: speech in `transcript_missing` was never transcribed"
    )
    transcript_missing: list[MissingSpeechOut] = Field(
        default_factory=list, description="the ranges of speech with no transcript, in order"
    )
    trace: list[TraceOut] = Field(description="by media time, then sequence")
    quality: QualityOut
    compliance: dict[str, Any] | None
    scorecard: dict[str, Any] | None = Field(description="every deduction and grade cap")
    findings: list[FindingOut]
    readings: list[ReadingOut] | None = Field(None, description="with ?readings=true")
    alerts: list[AlertOut]


# -- vCon (draft-ietf-vcon-vcon-core); extra keys a later draft adds pass through ------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class VconParty(_Open):
    role: str | None = None
    name: str | None = None
    tel: str | None = None


class VconDialog(_Open):
    type: Literal["recording", "text", "transfer", "incomplete"]
    start: str
    duration: float | None = None
    parties: list[int]
    mediatype: str
    mimetype: str
    filename: str | None = None
    url: str | None = Field(None, description="absolute; absent when the body is inline")
    content_hash: str | None = None
    body: str | None = Field(None, description="the recording, base64url (?inline=true)")
    encoding: Literal["base64url"] | None = None


class VconAnalysis(_Open):
    type: str
    dialog: int
    vendor: str
    product: str | None = None
    schema_: str | None = Field(None, alias="schema")
    mediatype: str
    encoding: Literal["json"]
    body: dict[str, Any]


class VconAttachment(_Open):
    type: str
    purpose: str
    start: str | None = None
    party: int = Field(description="the callwatch party (role monitor): who added it")
    dialog: int | None = None
    mediatype: str
    encoding: Literal["json"]
    body: dict[str, Any] | list[Any]


class VconOut(_Open):
    vcon: str
    uuid: str
    created_at: str
    subject: str | None = None
    parties: list[VconParty]
    dialog: list[VconDialog]
    analysis: list[VconAnalysis]
    attachments: list[VconAttachment]
