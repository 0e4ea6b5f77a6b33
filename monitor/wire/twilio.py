"""Twilio Media Streams (and Twilio-schema clones): the sans-I/O codec (PROTOCOLS.md §4).

Every message is a TEXT JSON object with an `event` discriminator: `connected`, then `start`
(call ids, `tracks`, `customParameters`, `mediaFormat`), then `media` per track (base64 μ-law
8 kHz, `chunk` per-track counter, `timestamp` ms since stream start), `dtmf`, `mark`, `stop`.
With `both_tracks`, `inbound` (what Twilio receives from the leg: the customer) and `outbound`
(what it sends to the leg: agent, IVR prompts, hold music) arrive as separate messages; they
are placed on the call timeline by `media.timestamp`, not by arrival order, so the gateway's
`PartyTimeline` can reorder, de-duplicate and fill them.

Quirks handled: counters are strings (`"1"`); the `dtmf` event exists only on bidirectional
streams (handled when it comes, never required); the signature is computed over the `wss://`
URL (see `monitor.wire.auth.twilio_signature`).

`TwilioDecoder` is used by the gateway, `TwilioEncoder` by `ivr_sim`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from monitor.core.events import Party
from monitor.core.metadata import parse_metadata
from monitor.errors import ProtocolError
from monitor.wire import fields as f
from monitor.wire.events import (
    AppEvent,
    CallEvent,
    CallStarted,
    Dtmf,
    PartyAudio,
    Stopped,
)

PROTOCOL_NAME = "twilio"
RATE = 8000
TRACK_PARTY = {"inbound": Party.CUSTOMER, "outbound": Party.AGENT}
_DTMF_TRACK = {"inbound_track": Party.CUSTOMER, "outbound_track": Party.AGENT}
_MAX_CUSTOM = 64  # <Parameter> entries kept
_LAYOUT_KEYS = frozenset(
    {"customerChannel", "customer_channel", "agentChannel", "agent_channel", "mixType"}
)


class TwilioDecoder:
    """Twilio messages -> call events. Raises `ProtocolError` on violations."""

    def __init__(self) -> None:
        self.started = False
        self.stopped = False
        self.parties: tuple[Party, ...] = ()
        self.last_sequence = 0
        self.sequence_gaps = 0  # messages Twilio numbered but we never saw

    def receive_bytes(self, data: bytes) -> list[CallEvent]:
        raise ProtocolError(
            ProtocolError.UNSUPPORTED_DATA, "Twilio Media Streams sends text frames only"
        )

    def receive_text(self, text: str) -> list[CallEvent]:
        msg = f.load_object(text, "Twilio")
        event = f.get(msg, "event", str, "message")
        if "sequenceNumber" in msg:
            seq = f.int_text(msg, "sequenceNumber", event)
            if seq > self.last_sequence + 1 and self.last_sequence:
                self.sequence_gaps += seq - self.last_sequence - 1
            self.last_sequence = max(self.last_sequence, seq)
        if event == "connected":
            return [AppEvent("switch_connected", _strings(msg, ("protocol", "version")))]
        if event == "start":
            return [self._start(msg)]
        if not self.started:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION, f"Twilio {event!r} before start: send start first"
            )
        if event == "media":
            if self.stopped:  # no audio after stop (as AudioHook after close): ignored
                return []
            return [self._media(msg)]
        if event == "dtmf":
            body = f.get(msg, "dtmf", dict, "dtmf")
            digit = f.get(body, "digit", str, "dtmf")[:4]
            party = _DTMF_TRACK.get(str(body.get("track", "inbound_track")))
            return [Dtmf(digit, party)]
        if event == "mark":
            body = f.get(msg, "mark", dict, "mark")
            return [AppEvent("mark", {"name": str(body.get("name", ""))[:128]})]
        if event == "stop":
            self.stopped = True
            return [Stopped("normal", "Twilio stop")]
        return [AppEvent("app_message", {"event": event[:64]})]

    def _start(self, msg: dict[str, Any]) -> CallStarted:
        if self.started:
            raise ProtocolError(ProtocolError.POLICY_VIOLATION, "Twilio start sent twice")
        body = f.get(msg, "start", dict, "start")
        fmt = f.get(body, "mediaFormat", dict, "start")
        encoding = f.get(fmt, "encoding", str, "start.mediaFormat")
        rate = f.int_text(fmt, "sampleRate", "start.mediaFormat")
        channels = f.int_text(fmt, "channels", "start.mediaFormat") if "channels" in fmt else 1
        if encoding != "audio/x-mulaw" or rate != RATE or channels != 1:
            raise ProtocolError(
                ProtocolError.UNSUPPORTED_DATA,
                f"unsupported Twilio media {encoding} {rate} Hz x{channels}; "
                "expected audio/x-mulaw 8000 Hz mono",
            )
        tracks = f.opt(body, "tracks", list, "start", ["inbound"])
        if (
            not tracks
            or any(t not in TRACK_PARTY for t in tracks)
            or len(set(tracks)) != len(tracks)
        ):
            raise f.bad("start.tracks must list inbound and/or outbound")
        self.parties = tuple(TRACK_PARTY[t] for t in ("inbound", "outbound") if t in tracks)
        custom = f.opt(body, "customParameters", dict, "start", {})
        if len(custom) > _MAX_CUSTOM:
            raise f.bad(f"more than {_MAX_CUSTOM} customParameters")
        raw: dict[str, Any] = {
            str(k)[:64]: v if isinstance(v, str | int | float | bool) else str(v)[:256]
            for k, v in custom.items()
            if k not in _LAYOUT_KEYS  # the layout comes from `tracks`, never from parameters
        }
        raw.update(_strings(body, ("callSid", "accountSid", "streamSid")))
        raw.update({"sampleRate": RATE, "channels": len(self.parties)})
        if self.parties == (Party.AGENT,):
            raw["agentChannel"] = 0
        meta = parse_metadata(json.dumps(raw), default_sample_rate=RATE)
        self.started = True
        info = {"tracks": list(tracks), "streamSid": raw.get("streamSid")}
        return CallStarted(meta, json.dumps(raw, ensure_ascii=False), "PCMU", info)

    def _media(self, msg: dict[str, Any]) -> PartyAudio:
        body = f.get(msg, "media", dict, "media")
        track = body.get("track", "inbound")
        party = TRACK_PARTY.get(track) if isinstance(track, str) else None
        if party is None or party not in self.parties:
            raise f.bad(f"media.track {str(track)[:20]!r} is not a started track")
        pcm = f.decode_payload("PCMU", f.b64(f.get(body, "payload", str, "media"), "media.payload"))
        stamp = f.int_text(body, "timestamp", "media") if "timestamp" in body else None
        chunk = f.int_text(body, "chunk", "media") if "chunk" in body else None
        position = None if stamp is None else stamp * RATE // 1000
        return PartyAudio(party, position, pcm, chunk)


def _strings(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    return {k: str(obj[k])[:128] for k in keys if obj.get(k) is not None}


class TwilioEncoder:
    """What Twilio sends for a `<Start><Stream track="both_tracks">` fork (simulator, tests)."""

    def __init__(self, *, stream_sid: str, call_sid: str, account_sid: str = "AC" + "0" * 32):
        self.stream_sid, self.call_sid, self.account_sid = stream_sid, call_sid, account_sid
        self._seq = 0
        self._chunks = {"inbound": 0, "outbound": 0}

    def _next(self) -> str:
        self._seq += 1
        return str(self._seq)

    @staticmethod
    def connected() -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, tracks: list[str], custom: dict[str, str]) -> str:
        return json.dumps({
            "event": "start", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "start": {
                "streamSid": self.stream_sid, "accountSid": self.account_sid,
                "callSid": self.call_sid, "tracks": tracks, "customParameters": custom,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            },
        })  # fmt: skip

    def media(self, track: str, timestamp_ms: int, pcm: bytes) -> str:
        self._chunks[track] += 1
        payload = base64.b64encode(f.encode_payload("PCMU", pcm)).decode()
        return json.dumps({
            "event": "media", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "media": {"track": track, "chunk": str(self._chunks[track]),
                      "timestamp": str(timestamp_ms), "payload": payload},
        })  # fmt: skip

    def dtmf(self, digit: str, track: str = "inbound_track") -> str:
        return json.dumps({
            "event": "dtmf", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "dtmf": {"track": track, "digit": digit},
        })  # fmt: skip

    def mark(self, name: str) -> str:
        return json.dumps({
            "event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "mark": {"name": name},
        })  # fmt: skip

    def stop(self) -> str:
        return json.dumps({
            "event": "stop", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
        })  # fmt: skip
