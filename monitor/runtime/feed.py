"""Applies the normalised call events of any switch protocol to one `LiveCall`.

The gateway (websocket protocols) and the AudioSocket server (raw TCP, two legs) decode with
their protocol's codec and hand every `monitor.wire.events` event to a `CallFeed`, which owns:

- starting the call (`CallStarted` -> `LiveCall`, opened with its metadata and media format);
- the media timeline: `FramesReceived` go straight to the call; `PartyAudio` go through a
  `CallTimeline` (reorder / de-duplicate / gap-fill per party, then interleave); a pause the
  switch marks but does not fill (audio fork) is filled with wall-clock silence on resume, so
  the recording always runs on call time;
- the audio-rate limit (audio faster than `max_audio_rate` x real time after a burst allowance
  is a policy violation) and the facts the stall timer needs (`last_audio_at`, `paused`);
- the trace: every DTMF (masked: `monitor.privacy.scrub.DtmfMasker`), app event,
  pause/resume and the media counts, with media time;
- the format check of raw L16 forks (`audio_quality.format_check`): a stream that looks read
  in the wrong format (channels that are one interleaved signal, pitch out of any voice's
  range) is logged and traced once as `format_suspect`;
- finishing once: flush the timeline, store the media counts (a `call_results` row
  kind="media" and a `media` trace event), finalise the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from audio_quality.format_check import StreamFormatCheck
from config.settings import GatewaySettings
from monitor.core.events import Party
from monitor.errors import ProtocolError
from monitor.runtime.call import LiveCall
from monitor.runtime.logs import fields
from monitor.wire.events import (
    AppEvent,
    CallEvent,
    CallStarted,
    Dtmf,
    FramesReceived,
    PartyAudio,
    Paused,
    Reply,
    Resumed,
    Stopped,
)
from monitor.wire.timeline import CallTimeline

log = logging.getLogger("callwatch.gateway")
MAX_PAUSE_FILL_S = 3600
#: App/switch text events traced under their own name (the rest: `app_message`, hold markers).
SWITCH_EVENTS = frozenset(
    {"ivr_prompt", "ivr_menu", "queue", "transfer", "agent_connected", "conference"}
)
_RESERVED = frozenset({"event", "kind", "party", "media_ms"})  # trace()'s own parameters
MAX_EARLY = 8  # app events kept from before the call started

CallFactory = Callable[[CallStarted], LiveCall]


class CallFeed:
    def __init__(
        self, cfg: GatewaySettings, factory: CallFactory, *, protocol: str, now: float
    ) -> None:
        self._cfg = cfg
        self._factory = factory
        self.protocol = protocol
        self.call: LiveCall | None = None
        self.timeline: CallTimeline | None = None
        self.connected_at = now
        self.first_audio_at: float | None = None
        self.last_audio_at = now
        self.paused_at: float | None = None
        self.stopped: Stopped | None = None
        self.received_frames = 0
        self.filled_frames = 0  # silence for discarded/lost media and marked pauses
        self.codec = ""
        self._finished = False
        self._early: list[CallEvent] = []
        self.extra_counts: dict[str, int] = {}  # protocol-specific (Twilio sequence gaps)
        self._format_check: StreamFormatCheck | None = None  # raw L16 forks only

    @property
    def started(self) -> bool:
        return self.call is not None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    async def handle(self, event: CallEvent, now: float) -> list[Reply]:
        """Apply one event; return the replies to send. Raises `ProtocolError`."""
        if isinstance(event, Reply):
            return [event]
        if isinstance(event, CallStarted):
            await self._start(event)
            for early in self._early:
                await self.handle(early, now)
            self._early.clear()
            return []
        if self.call is None and isinstance(event, Stopped) and event.reason == "probe":
            # An AudioHook connection probe was answered: no call, nothing stored.
            log.info("AudioHook connection probe answered", extra=fields(protocol=self.protocol))
            self.stopped = event
            return []
        if self.call is None and isinstance(event, AppEvent) and len(self._early) < MAX_EARLY:
            self._early.append(event)  # e.g. Twilio `connected`: traced once the call opens
            return []
        call = self._require_call(type(event).__name__)
        if isinstance(event, FramesReceived):
            if event.filled:
                self.filled_frames += len(event.pcm) // call.metadata.frame_bytes
            else:
                self._count_audio(len(event.pcm) // call.metadata.frame_bytes, now)
                await self._check_format(call, event.pcm)
            await call.on_audio(event.pcm)
        elif isinstance(event, PartyAudio):
            assert self.timeline is not None
            if event.party not in self.timeline.lines:
                raise ProtocolError(
                    ProtocolError.POLICY_VIOLATION, f"audio for {event.party.value}: not a party"
                )
            self._count_audio(len(event.pcm) // 2 // call.metadata.channels, now)
            frames = self.timeline.push(event.party, event.position, event.pcm)
            if frames:
                await call.on_audio(frames)
        elif isinstance(event, Dtmf):
            # Never the digit: a "*" per press, nothing at all in a secure-entry stage.
            if (masked := call.dtmf.press()) is not None:
                party = event.party.value if event.party else None
                await call.trace("dtmf", party=party, media_ms=self._party_ms(event.party),
                                 duration_ms=event.duration_ms, **masked)  # fmt: skip
        elif isinstance(event, AppEvent):
            payload = event.data.get("payload")
            name = payload.get("event") if isinstance(payload, dict) else None
            if (stage := call.dtmf.marker(name or event.name)) is not None:
                await call.trace(stage)
                return []
            # IVR prompt spans go to the call too: the conversation tracker leaves them out of
            # talk time and dead air (the call traces them itself).
            if event.name == "app_message" and name in SWITCH_EVENTS and name != "ivr_prompt":
                assert isinstance(payload, dict)
                await call.trace(name, **{k: v for k, v in payload.items() if k not in _RESERVED})
            elif event.name == "app_message" and "payload" in event.data:
                await call.on_app_message(payload)
            else:
                await call.trace(event.name, **event.data)
        elif isinstance(event, Paused):
            self.paused_at = now
            await call.trace("paused", source=event.reason)
        elif isinstance(event, Resumed):
            await self._resume(call, event, now)
        elif isinstance(event, Stopped):
            if self.stopped is None:
                self.stopped = event
                await call.trace("stop", reason=event.reason, detail=event.detail)
        return []

    async def align(self, party: Party) -> None:
        """A leg joined late (AudioSocket): its audio starts at the call's current time."""
        if self.call is not None and self.timeline is not None:
            frames = self.timeline.align(party)
            if frames:
                await self.call.on_audio(frames)
            await self.call.trace("leg_joined", party=party.value)

    def _party_ms(self, party: Party | None) -> int | None:
        """Where that party's own stream is (legs and tracks run ahead of the mix)."""
        if party is None or self.timeline is None or self.call is None:
            return None
        line = self.timeline.lines.get(party)
        if line is None or line.received_end == 0:
            return None
        return line.received_end * 1000 // self.call.metadata.sample_rate

    async def leg_left(self, party: Party) -> None:
        if self.call is not None and self.timeline is not None:
            frames = self.timeline.left(party)
            if frames:
                await self.call.on_audio(frames)

    async def _start(self, event: CallStarted) -> None:
        if self.call is not None:
            raise ProtocolError(ProtocolError.POLICY_VIOLATION, "call started twice")
        meta = event.metadata
        self.call = self._factory(event)
        self.codec = event.codec
        rate = meta.sample_rate
        parties = [p for p, _ in sorted(meta.channel_of.items(), key=lambda kv: kv[1])]
        self.timeline = CallTimeline(
            parties,
            window=self._cfg.reorder_window_ms * rate // 1000,
            max_lag=self._cfg.max_party_lag_ms * rate // 1000,
            tolerance=rate // 1000,  # timestamps rounded to whole milliseconds
        )
        await self.call.open()
        await self.call.trace("media_format", codec=event.codec, sample_rate=rate, **event.info)
        if self._cfg.format_check and event.codec == "L16":
            self._format_check = StreamFormatCheck(rate, meta.channels)

    async def _check_format(self, call: LiveCall, pcm: bytes, final: bool = False) -> None:
        """A raw L16 fork read in the wrong format is flagged once, never silently: a
        warning, a `format_suspect` trace entry (the board badges the call)."""
        check = self._format_check
        if check is None or check.done:
            return
        found = check.finish() if final else check.feed(np.frombuffer(pcm, dtype="<i2"))
        if not found:
            return
        meta = call.metadata
        log.warning(
            "call %s: audio does not look like %d Hz, %d channel(s): %s",
            call.call_id, meta.sample_rate, meta.channels, "; ".join(f.hint for f in found),
            extra=fields(call_id=call.call_id, reasons=[f.reason for f in found]),
        )  # fmt: skip
        await call.trace(
            "format_suspect",
            sample_rate=meta.sample_rate,
            channels=meta.channels,
            reasons=[f.reason for f in found],
            values=[f.value for f in found],
            hints=[f.hint for f in found],
        )

    def _require_call(self, what: str) -> LiveCall:
        if self.call is None:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION, f"{what} before the call started (send it first)"
            )
        return self.call

    def _count_audio(self, frames: int, now: float) -> None:
        self.last_audio_at = now
        if self.first_audio_at is None:
            self.first_audio_at = now
        self.received_frames += frames
        cfg = self._cfg
        if cfg.max_audio_rate <= 0 or self.call is None:
            return
        media_s = self.received_frames / self.call.metadata.sample_rate
        allowed = cfg.audio_burst_s + (now - self.first_audio_at) * cfg.max_audio_rate
        if media_s > allowed:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION,
                f"audio arrives faster than {cfg.max_audio_rate:g}x real time",
            )

    async def _resume(self, call: LiveCall, event: Resumed, now: float) -> None:
        fill = 0
        if event.discarded_samples is None and self.paused_at is not None:
            seconds = min(now - self.paused_at, MAX_PAUSE_FILL_S)
            fill = int(seconds * call.metadata.sample_rate)
            if fill:
                self.filled_frames += fill
                await call.on_audio(bytes(fill * call.metadata.frame_bytes))
        self.paused_at = None
        self.last_audio_at = now
        await call.trace("resumed", discarded_samples=event.discarded_samples, filled_samples=fill)

    def counts(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "codec": self.codec,
            "received_frames": self.received_frames,
            "filled_frames": self.filled_frames,
            "parties": self.timeline.counts() if self.timeline else {},
            **self.extra_counts,
        }

    async def finish(
        self, *, status: str, reason: str, detail: str | None, asr_wait_s: float
    ) -> None:
        """Flush and finalise once (shield it: it must run even when the task is cancelled)."""
        if self._finished or self.call is None:
            return
        self._finished = True
        call = self.call
        if self.timeline is not None:
            frames = self.timeline.finish()
            if frames:
                await call.on_audio(frames)
        await self._check_format(call, b"", final=True)  # a short call: judge what there is
        counts = self.counts()
        await call.trace("media", **counts)
        await call.save_result("media", counts)
        await call.finish(status=status, reason=reason, detail=detail, asr_wait_s=asr_wait_s)
