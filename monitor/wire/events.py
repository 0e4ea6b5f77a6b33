"""The normalised call events every switch codec produces (PROTOCOLS.md §10).

Each protocol module in `monitor.wire` turns its own messages into these, so the gateway has one
generic loop whatever the switch. Media time is in samples of the call's native rate
(`CallStarted.metadata.sample_rate`); positions are per party.

- `CallStarted`: metadata (ids, agent, queue, numbers, custom parameters) + the audio layout
  (which party is on which interleaved channel), the codec on the wire and the native rate.
- `FramesReceived`: whole interleaved L16 frames in the call's channel layout, contiguous with
  what came before (audio fork, AudioHook: the transport keeps order).
- `PartyAudio`: one party's mono L16 at an explicit media position (Twilio tracks, AudioSocket
  legs): it goes through that party's `PartyTimeline` (reorder, de-duplicate, fill gaps).
- `Dtmf`, `AppEvent`, `Paused`, `Resumed`: everything else the switch tells us, for the trace.
- `Reply`: a message the gateway must send back (AudioHook `opened`/`pong`/`closed`).
- `Stopped`: the switch ended the stream (idempotent; the gateway finalises once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.core.events import Party
from monitor.core.metadata import CallMetadata


@dataclass(frozen=True, slots=True)
class CallStarted:
    metadata: CallMetadata
    raw: str  # what the switch sent, for the call record (no credentials in it)
    codec: str  # "L16", "PCMU", "PCMA" - what was on the wire before decoding
    info: dict[str, Any] = field(default_factory=dict)  # protocol facts for the trace


@dataclass(frozen=True, slots=True)
class FramesReceived:
    pcm: bytes  # interleaved little-endian L16, whole frames, in the call's layout
    filled: bool = False  # silence standing in for media the switch discarded or lost
    #: With `filled`: how many frames of silence (`pcm` is then empty). A count, not bytes,
    #: so a claimed span costs nothing until the gateway has checked it against its limits.
    silence: int = 0


@dataclass(frozen=True, slots=True)
class PartyAudio:
    party: Party
    position: int | None  # first sample's media position; None = right after the last chunk
    pcm: bytes  # mono little-endian L16 at the call rate
    seq: int | None = None  # the switch's chunk counter, when it has one (diagnostics)


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    party: Party | None = None
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AppEvent:
    """A message the switch or the app sent that is not audio: goes into the trace as `name`."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Paused:
    reason: str = "switch"


@dataclass(frozen=True, slots=True)
class Resumed:
    discarded_samples: int | None = None  # audio the switch dropped while paused (AudioHook)


@dataclass(frozen=True, slots=True)
class Reply:
    text: str | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Stopped:
    reason: str = "normal"  # "normal", "graceful_shutdown", "error", "hangup", ...
    detail: str | None = None


CallEvent = (
    CallStarted | FramesReceived | PartyAudio | Dtmf | AppEvent | Paused | Resumed | Reply | Stopped
)
