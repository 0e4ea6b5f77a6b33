"""The switch's hold and IVR-prompt markers, parsed once (sans-I/O).

A mid-stream text frame (`{"event": "hold"}`, `{"event": "ivr_prompt", "start_ms": ..,
"end_ms": ..}` ...) becomes one typed `Marker`, or None when it is not a marker. The call core
applies markers (music on hold and prompts are neither talk nor dead air); the runtime traces
them. Capture pause/resume words are here too, so every text-frame vocabulary lives in one
place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

#: Text-frame `event` (or `type`) values that mark the customer being put on / taken off hold.
HOLD_STARTED = frozenset({"hold", "hold_start", "hold_started", "on_hold"})
HOLD_ENDED = frozenset({"unhold", "hold_end", "hold_ended", "off_hold", "resume"})
#: Text-frame events that pause / resume capture (docs/privacy.md; also the API).
CAPTURE_PAUSE = frozenset({"pause_recording", "recording_pause", "pause_capture"})
CAPTURE_RESUME = frozenset({"resume_recording", "recording_resume", "resume_capture"})
#: IVR prompts: a start/end pair, or one `{"event":"ivr_prompt","start_ms":..,"end_ms":..}`
#: (media ms of this call; or `duration_ms` from now). Prompts are not talk or dead air.
IVR_STARTED = frozenset({"ivr_prompt_start", "ivr_prompt_started", "prompt_start"})
IVR_ENDED = frozenset({"ivr_prompt_end", "ivr_prompt_ended", "prompt_end"})
IVR_PROMPT = "ivr_prompt"
#: Keys of an `ivr_prompt` text frame that the trace entry has as its own.
_IVR_OWN = frozenset(
    {"event", "type", "start_ms", "end_ms", "duration_ms", "kind", "party", "media_ms"}
)


class MarkerKind(enum.StrEnum):
    """Also the trace kind each marker is recorded under."""

    HOLD_STARTED = "hold_started"
    HOLD_ENDED = "hold_ended"
    IVR_PROMPT_STARTED = "ivr_prompt_started"
    IVR_PROMPT_ENDED = "ivr_prompt_ended"
    IVR_PROMPT = "ivr_prompt"  # a span; without one, traced only
    CAPTURE_PAUSED = "capture_paused"
    CAPTURE_RESUMED = "capture_resumed"
    INVALID = "app_message"  # an ivr_prompt whose span could not be read: traced as it came


@dataclass(frozen=True, slots=True)
class Marker:
    kind: MarkerKind
    event: str  # the switch's own word for it
    start_ms: int | None = None  # the span, for point markers the media time now
    end_ms: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other fields of an ivr_prompt
    problem: str | None = None  # why an INVALID marker's span was not applied

    @property
    def has_span(self) -> bool:
        return self.kind is MarkerKind.IVR_PROMPT and self.end_ms is not None


#: Markers that happen at the media time they arrive.
_AT_NOW = (
    (CAPTURE_PAUSE, MarkerKind.CAPTURE_PAUSED),
    (CAPTURE_RESUME, MarkerKind.CAPTURE_RESUMED),
    (HOLD_STARTED, MarkerKind.HOLD_STARTED),
    (HOLD_ENDED, MarkerKind.HOLD_ENDED),
    (IVR_STARTED, MarkerKind.IVR_PROMPT_STARTED),
    (IVR_ENDED, MarkerKind.IVR_PROMPT_ENDED),
)


def event_name(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    name = payload.get("event") or payload.get("type")
    return name if isinstance(name, str) else None


def parse_marker(payload: Any, now_ms: int) -> Marker | None:
    """The marker a text frame carries at media time `now_ms`, or None."""
    name = event_name(payload)
    if name is None:
        return None
    assert isinstance(payload, dict)
    for names, kind in _AT_NOW:
        if name in names:
            return Marker(kind, name, now_ms, now_ms)
    if name != IVR_PROMPT:
        return None
    extra = {k: v for k, v in payload.items() if k not in _IVR_OWN}
    if "end_ms" not in payload and "duration_ms" not in payload:
        # A bare marker (e.g. {"event":"ivr_prompt","prompt":"menu"}): traced, but with no
        # span there is nothing to leave out of talk time and dead air.
        return Marker(MarkerKind.IVR_PROMPT, name, extra=extra)
    try:
        start = int(payload.get("start_ms", now_ms))
        end = int(payload["end_ms"]) if "end_ms" in payload else start + int(payload["duration_ms"])
        if end < start:
            raise ValueError(f"end_ms ({end}) must not precede start_ms ({start})")
    except (TypeError, ValueError, OverflowError) as exc:
        # Kept in the trace as it came: nothing is lost, the span is just not applied.
        return Marker(MarkerKind.INVALID, name, problem=f"ivr_prompt: {exc}")
    return Marker(MarkerKind.IVR_PROMPT, name, start, end, extra)
