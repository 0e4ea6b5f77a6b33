"""FreeSWITCH `mod_audio_fork` / `mod_audio_stream` / jambonz `listen`: the sans-I/O codec.

Wire format (PROTOCOLS.md §1–3): the first TEXT frame is JSON metadata; then BINARY frames of
raw L16 little-endian, interleaved when stereo, of *any* size (the module writes whatever it
has buffered), so a frame may end in the middle of a sample or of a stereo pair. Later TEXT
frames are application messages (DTMF, `send_text`). A zero-length BINARY frame is the
`graceful-shutdown` signal.

Mid-stream TEXT frames become call events: `{"event":"dtmf","digit":"1"}` (drachtio
`send_text`), `{"event":"dtmf","dtmf":"2","duration":"1600"}` (jambonz `passDtmf`, duration in
8 kHz RTP units) and `{"dtmf":"1","duration":"1600"}` (drachtio's `audio_fork.js` forwarding
the endpoint's DTMF event, no `event` key) -> `Dtmf`; `{"event":"paused"}` /
`{"event":"resumed"}` pause markers (FreeSWITCH sends no audio while paused, so the app marks
the pause; the gateway fills the wall-clock gap with silence) -> `Paused`/`Resumed`; anything
else -> `AppEvent("app_message")`. The zero-length BINARY frame ->
`AppEvent("graceful_shutdown")` (the switch closes the socket right after).
A close 1000 ends the call `completed` with or without that frame before it (FreeSWITCH sends
it on `uuid_audio_fork stop`, not on every hang-up).

The format (rate, channels) comes from the metadata, else from the connection URL's query
(`/audiofork?rate=16000&channels=1`, `path_format`), else from the gateway's defaults
(`gateway.default_sample_rate`, `default_channels`).

`AudioForkDecoder` is used by the gateway; `AudioForkEncoder` by `ivr_sim`, so the simulator can
never drift from what the gateway accepts.
"""

from __future__ import annotations

import enum
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from monitor.core.metadata import format_declared, parse_metadata
from monitor.errors import ProtocolError
from monitor.wire.events import (
    AppEvent,
    CallEvent,
    CallStarted,
    Dtmf,
    FramesReceived,
    Paused,
    Resumed,
)

SUBPROTOCOLS = ("audio.drachtio.org", "audio.jambonz.org")
PROTOCOL_NAME = "audiofork"
PAUSE_EVENTS = frozenset({"paused", "pause", "audio_paused"})
RESUME_EVENTS = frozenset({"resumed", "audio_resumed"})


class _State(enum.Enum):
    AWAITING_METADATA = "awaiting_metadata"
    STREAMING = "streaming"


class AudioForkDecoder:
    """Turns websocket messages into wire events. Raises `ProtocolError` on violations."""

    def __init__(
        self, *, default_sample_rate: int = 8000, default_channels: int = 2, query: str = ""
    ) -> None:
        self._defaults = {
            "default_sample_rate": default_sample_rate,
            "default_channels": default_channels,
        }
        self._query = query  # the URL's `?rate=16000&channels=1`, checked with the metadata
        self._state = _State.AWAITING_METADATA
        self._frame_bytes = 0
        self._carry = b""
        self.bytes_received = 0
        self.paused = False

    @property
    def metadata_received(self) -> bool:
        return self._state is _State.STREAMING

    @property
    def pending_bytes(self) -> int:
        """Bytes of a torn frame waiting for the rest of it."""
        return len(self._carry)

    def receive_text(self, text: str) -> list[CallEvent]:
        if self._state is _State.AWAITING_METADATA:
            meta = parse_metadata(text, **(self._defaults | path_format(self._query)))
            self._state = _State.STREAMING
            self._frame_bytes = meta.frame_bytes
            # Traced with the format: a guessed format is checked harder (the pace).
            source = "metadata" if format_declared(text) else "path or defaults"
            return [CallStarted(meta, text, "L16", {"format_from": source})]
        try:
            payload: Any = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            payload = text[:1024]
        return [self._app_event(payload)]

    def _app_event(self, payload: Any) -> CallEvent:
        if not isinstance(payload, dict):
            return AppEvent("app_message", {"payload": payload})
        if any(not isinstance(payload.get(k), str | None) for k in ("event", "type")):
            # `{"event": {...}}`, a list, a number: no event name, so kept as the app's message
            # text (truncated), never a discriminator the call would try to match.
            return AppEvent("app_message", {"payload": json.dumps(payload)[:1024]})
        event = payload.get("event") or payload.get("type")
        if event is None and "dtmf" in payload:
            event = "dtmf"  # drachtio forwards FreeSWITCH's DTMF as {"dtmf":"1","duration":…}
        if event == "dtmf":
            digit = payload.get("digit", payload.get("dtmf"))
            duration = payload.get("duration")
            text = str(duration)
            ms = int(text) // 8 if text.isascii() and text.isdigit() else None
            return Dtmf(str(digit)[:4], None, ms)
        if event in PAUSE_EVENTS:
            self.paused = True
            return Paused("app_marker")
        if event in RESUME_EVENTS or (event == "resume" and self.paused):
            self.paused = False
            return Resumed()
        return AppEvent("app_message", {"payload": payload})

    def receive_bytes(self, data: bytes) -> list[CallEvent]:
        if self._state is _State.AWAITING_METADATA:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION,
                "audio before metadata: send the JSON metadata text frame first",
            )
        if not data:
            return [AppEvent("graceful_shutdown")]
        self.bytes_received += len(data)
        buf = self._carry + data if self._carry else data
        whole = len(buf) - len(buf) % self._frame_bytes
        self._carry = buf[whole:]
        if not whole:
            return []
        return [FramesReceived(buf[:whole])]


def path_format(query: str) -> dict[str, int]:
    """A fork's format from its URL query (`rate=16000&channels=1`): a deployment names it
    per path when its metadata carries none (drachtio's `uuid_audio_fork … mono 16k` sends
    no rate). The metadata's own fields still win. Raises `ProtocolError` (1003) for values
    that are not whole numbers; the rate and channel count are then checked as the
    metadata's are."""
    out: dict[str, int] = {}
    for key, value in urllib.parse.parse_qsl(query):
        name = _QUERY_FORMAT.get(key.lower())
        if name is None:
            continue  # other parameters belong to authentication or the switch
        if not (value.isascii() and value.isdigit()):
            raise ProtocolError(
                ProtocolError.UNSUPPORTED_DATA,
                f"URL parameter {key}={value[:16]!r} is not a whole number: use e.g. "
                "?rate=16000&channels=1",
            )
        out[name] = int(value)
    return out


_QUERY_FORMAT = {
    "rate": "default_sample_rate",
    "sample_rate": "default_sample_rate",
    "samplerate": "default_sample_rate",
    "channels": "default_channels",
}


class AudioForkEncoder:
    """What a FreeSWITCH/jambonz fork sends, for the simulator and tests."""

    subprotocol = SUBPROTOCOLS[0]

    @staticmethod
    def metadata(fields: Mapping[str, Any]) -> str:
        # Compact JSON: the drachtio API splits its arguments on spaces (PROTOCOLS.md §1.1).
        return json.dumps(dict(fields), separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def audio(pcm: bytes, chunk_bytes: int) -> Iterator[bytes]:
        """Split interleaved L16 into messages of `chunk_bytes` (any size, even odd)."""
        if chunk_bytes <= 0:
            raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
        for start in range(0, len(pcm), chunk_bytes):
            yield pcm[start : start + chunk_bytes]

    @staticmethod
    def graceful_shutdown() -> bytes:
        return b""
