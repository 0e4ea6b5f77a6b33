"""Genesys Cloud AudioHook Monitor: the sans-I/O codec (PROTOCOLS.md §5).

TEXT frames are JSON envelopes `{version:"2", id, type, seq, parameters, serverseq, position}`;
the client opens with `open` (media offers), the server answers `opened` with exactly one
chosen offer, then BINARY frames carry the audio interleaved in the order of the chosen
`channels` (`external` = customer, `internal` = agent). The server answers `ping` with `pong`,
`update` with `updated` and `close` with `closed`; `paused`/`resumed`/`discarded` re-align the
timeline (the `discarded` duration is filled with silence so the recording stays on call time),
and a `position` ahead of the audio received means frames went missing (also filled).

Connection probes (Genesys Cloud's "test connection", the reference client's
`--connection-probe`): an `open` whose `conversationId` or participant id is the nil UUID,
with no audio. The server answers it as any session (`opened` with a chosen offer, `pong`,
`closed`: the client checks exactly that) but it is no call: no `CallStarted`, nothing stored;
its `close` ends it as `Stopped("probe")`, and audio sent anyway is ignored.

`customConfig` (the JSON an organisation attaches to the AudioHook integration) names the
agent and queue with the audio fork's metadata keys (`agent`/`agentId`, `queue`/`queueName`,
`agentName`); it is kept whole in the call's metadata too. An `open` with
`supportedLanguages: true` gets the languages callwatch transcribes in `opened`.

Choice of offer: a two-channel offer first (PCMU, then L16), else one channel. Sequence
numbers: the client's `seq` must increase by one; every server message carries its own `seq`
and the last `clientseq`. `AudioHookDecoder` is used by the gateway (its `Reply` events are the
server's messages), `AudioHookEncoder` by `ivr_sim`.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.core.events import Party
from monitor.core.metadata import CallMetadata
from monitor.errors import ProtocolError
from monitor.wire import fields as f
from monitor.wire.events import (
    AppEvent,
    CallEvent,
    CallStarted,
    Dtmf,
    FramesReceived,
    Paused,
    Reply,
    Resumed,
    Stopped,
)

PROTOCOL_NAME = "audiohook"
RATE = 8000
CHANNEL_PARTY = {"external": Party.CUSTOMER, "internal": Party.AGENT}
POSITION_SLACK = RATE // 50  # 20 ms: a position further ahead than this means lost audio
NULL_UUID = "00000000-0000-0000-0000-000000000000"
#: What `opened` lists when the client asks (`supportedLanguages: true`): the languages the
#: bundled Whisper model transcribes and the shipped compliance scripts check.
SUPPORTED_LANGUAGES = ("en-US", "zh-CN")


def choose_offer(offers: list[Any]) -> dict[str, Any] | None:
    """Prefer two channels (one per party), PCMU before L16; 8 kHz only."""
    valid = [
        o
        for o in offers
        if isinstance(o, dict)
        and o.get("type", "audio") == "audio"
        and o.get("format") in ("PCMU", "L16")
        and o.get("rate") == RATE
        and isinstance(o.get("channels"), list)
        and 1 <= len(o["channels"]) <= 2
        and len(set(map(str, o["channels"]))) == len(o["channels"])
        and all(c in CHANNEL_PARTY for c in o["channels"])
    ]
    valid.sort(key=lambda o: (-len(o["channels"]), o["format"] != "PCMU"))
    return valid[0] if valid else None


class AudioHookDecoder:
    def __init__(self, supported_languages: tuple[str, ...] = SUPPORTED_LANGUAGES) -> None:
        self.session_id: str | None = None
        self.supported_languages = supported_languages
        self.probe = False  # a connection probe: answered, never a call
        self.opened = False
        self.closed = False
        self.paused = False
        self._client_seq = 0
        self._server_seq = 0
        self._codec = "PCMU"
        self._frame_bytes = 2
        self._carry = b""
        self.frames = 0  # audio frames received + filled (samples per channel)

    # -- server messages -------------------------------------------------------------------
    def _reply(self, kind: str, parameters: dict[str, Any] | None = None) -> Reply:
        self._server_seq += 1
        return Reply(
            text=json.dumps({
                "version": "2", "type": kind, "seq": self._server_seq,
                "clientseq": self._client_seq, "id": self.session_id or "",
                "parameters": parameters or {},
            })
        )  # fmt: skip

    def disconnect(self, reason: str, info: str = "") -> Reply:
        return self._reply("disconnect", {"reason": reason, "info": info[:200]})

    # -- client messages -------------------------------------------------------------------
    def receive_text(self, text: str) -> list[CallEvent]:
        msg = f.load_object(text, "AudioHook")
        kind = f.get(msg, "type", str, "message")
        seq = f.get(msg, "seq", int, kind)
        if seq != self._client_seq + 1:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION,
                f"AudioHook seq {seq} out of order (expected {self._client_seq + 1})",
            )
        self._client_seq = seq
        session = f.get(msg, "id", str, kind)[:64]
        params = f.opt(msg, "parameters", dict, kind, {})
        if kind == "open":
            self.session_id = session
            return self._open(params)
        if not self.opened:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION, f"AudioHook {kind!r} before open: send open first"
            )
        out: list[CallEvent] = []
        if kind in ("resumed", "discarded"):  # the discarded span first: position includes it
            self.paused = kind == "discarded" and self.paused
            lost = round(f.iso_seconds(params.get("discarded", "PT0S"), f"{kind}.discarded") * RATE)
            if lost:
                out.append(self._silence(lost))
            trace = Resumed(lost) if kind == "resumed" else AppEvent("discarded", {"samples": lost})
        if self.probe:  # answer what the client checks, and nothing else
            if kind == "close":
                self.closed = True
                return [self._reply("closed"), Stopped("probe")]
            return [self._reply("pong")] if kind == "ping" else []
        if "position" in msg and not self.paused:  # while paused, `resumed` re-aligns
            out += self._catch_up(f.iso_seconds(msg["position"], f"{kind}.position"))
        if kind in ("resumed", "discarded"):
            return [*out, trace]
        if kind == "ping":
            return [*out, self._reply("pong")]
        if kind == "paused":
            self.paused = True
            return [*out, Paused("audiohook")]
        if kind == "update":
            data = {k: str(v)[:64] for k, v in params.items() if k == "language"}
            return [*out, AppEvent("update", data), self._reply("updated")]
        if kind == "close":
            self.closed = True
            reason = str(params.get("reason", "end"))[:32]
            return [*out, Stopped("normal" if reason == "end" else reason), self._reply("closed")]
        if kind == "error":
            detail = {"code": params.get("code"), "message": str(params.get("message", ""))[:200]}
            return [*out, AppEvent("switch_error", detail)]
        if kind == "dtmf":
            return [*out, Dtmf(str(params.get("digit", ""))[:4], Party.CUSTOMER)]
        return [*out, AppEvent("app_message", {"type": kind[:64]})]

    def _open(self, params: dict[str, Any]) -> list[CallEvent]:
        if self.opened:
            raise ProtocolError(ProtocolError.POLICY_VIOLATION, "AudioHook open sent twice")
        offer = choose_offer(f.get(params, "media", list, "open.parameters"))
        if offer is None:
            raise ProtocolError(
                ProtocolError.UNSUPPORTED_DATA,
                "no supported AudioHook media offer (need PCMU or L16, 8000 Hz)",
            )
        participant = f.opt(params, "participant", dict, "open.parameters", {})
        channels = [str(c) for c in offer["channels"]]
        chosen = {"type": "audio", "format": str(offer["format"]), "channels": channels,
                  "rate": RATE}  # fmt: skip
        opened: dict[str, Any] = {"startPaused": False, "media": [chosen]}
        if params.get("supportedLanguages") is True:
            opened["supportedLanguages"] = list(self.supported_languages)
        if NULL_UUID in (params.get("conversationId"), participant.get("id")):
            self.probe = self.opened = True
            return [self._reply("opened", opened)]
        custom = params.get("customConfig")
        custom = custom if isinstance(custom, dict) else {}
        extra = {
            "organizationId": params.get("organizationId"),
            "sessionId": self.session_id,
            "participantId": participant.get("id"),
            "language": params.get("language"),
            "customConfig": params.get("customConfig"),
            # The agent's name from customConfig, where the compliance greeting looks for it.
            "agentName": _text(custom.get("agentName", custom.get("agent_name"))),
        }
        meta = CallMetadata(
            external_id=_text(params.get("conversationId")) or self.session_id,
            sample_rate=RATE,
            channels=len(channels),
            channel_of={CHANNEL_PARTY[c]: i for i, c in enumerate(channels)},
            agent_id=_text(_first(custom, "agent", "agentId", "agent_id")),
            queue=_text(_first(custom, "queue", "queueName", "queue_name")),
            caller=_text(participant.get("ani")),
            callee=_text(participant.get("dnis")),
            extra={k: v for k, v in extra.items() if v is not None},
        )
        self._codec = str(offer["format"])
        self._frame_bytes = f.CODEC_WIDTH[self._codec] * len(channels)
        self.opened = True
        raw = json.dumps({"conversationId": meta.external_id, **meta.extra}, default=str)
        return [
            CallStarted(meta, raw[:8192], self._codec, {"media": chosen}),
            self._reply("opened", opened),
        ]

    def receive_bytes(self, data: bytes) -> list[CallEvent]:
        if not self.opened:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION, "AudioHook audio before opened: send open first"
            )
        if self.closed or self.probe:
            return []  # "no more audio after close"; a probe has no call to carry audio
        buf = self._carry + data
        whole = len(buf) - len(buf) % self._frame_bytes
        self._carry = buf[whole:]
        if not whole:
            return []
        self.frames += whole // self._frame_bytes
        return [FramesReceived(f.decode_payload(self._codec, buf[:whole]))]

    def _catch_up(self, position_s: float) -> list[CallEvent]:
        missing = round(position_s * RATE) - self.frames
        return [self._silence(missing)] if missing > POSITION_SLACK else []

    def _silence(self, frames: int) -> FramesReceived:
        frames = min(frames, RATE * 3600)
        self.frames += frames
        width = self._frame_bytes // f.CODEC_WIDTH[self._codec]
        return FramesReceived(bytes(2 * width * frames), filled=True)


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)[:256]


def _first(obj: dict[str, Any], *keys: str) -> Any:
    return next((obj[k] for k in keys if obj.get(k) not in (None, "")), None)


class AudioHookEncoder:
    """What Genesys Cloud sends (simulator, tests): envelopes with seq and position."""

    def __init__(self, *, session_id: str, codec: str = "PCMU") -> None:
        self.session_id, self.codec = session_id, codec
        self.seq = 0
        self.server_seq = 0
        self.samples = 0  # frames streamed, for `position`

    def _msg(self, kind: str, parameters: dict[str, Any]) -> str:
        self.seq += 1
        return json.dumps({
            "version": "2", "type": kind, "seq": self.seq, "serverseq": self.server_seq,
            "position": f"PT{self.samples / RATE:.3f}S", "id": self.session_id,
            "parameters": parameters,
        })  # fmt: skip

    def open(self, *, conversation_id: str, ani: str, dnis: str, **custom: Any) -> str:
        offers = [
            {"type": "audio", "format": self.codec, "channels": ch, "rate": RATE}
            for ch in (["external", "internal"], ["external"], ["internal"])
        ]
        return self._msg("open", {
            "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
            "conversationId": conversation_id,
            "participant": {"id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0", "ani": ani,
                            "aniName": "", "dnis": dnis},
            "media": offers, "language": "en-US", "customConfig": custom,
        })  # fmt: skip

    def audio(self, pcm_stereo: bytes) -> bytes:
        self.samples += len(pcm_stereo) // 4
        return f.encode_payload(self.codec, pcm_stereo)

    def ping(self) -> str:
        return self._msg("ping", {"rtt": "PT0.045S"})

    def dtmf(self, digit: str) -> str:
        return self._msg("dtmf", {"digit": digit})

    def paused(self) -> str:
        return self._msg("paused", {})

    def resumed(self, discarded_s: float) -> str:
        start = f"PT{self.samples / RATE:.3f}S"
        self.samples += round(discarded_s * RATE)
        return self._msg("resumed", {"start": start, "discarded": f"PT{discarded_s:.3f}S"})

    def close(self, reason: str = "end") -> str:
        return self._msg("close", {"reason": reason})

    def receive(self, text: str) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(text)
        self.server_seq = int(reply.get("seq", self.server_seq))
        return reply
