"""Applies the normalised call events of any switch protocol to one `LiveCall`.

The gateway (websocket protocols) and the AudioSocket server (raw TCP, two legs) decode with
their protocol's codec and hand every `monitor.wire.events` event to a `CallFeed`, which owns:

- starting the call (`CallStarted` -> `LiveCall`, opened with its metadata and media format);
- the media timeline: `FramesReceived` go straight to the call; `PartyAudio` go through a
  `CallTimeline` (reorder / de-duplicate / gap-fill per party, then interleave); a pause the
  switch marks but does not fill (audio fork) is filled with wall-clock silence on resume, so
  the recording always runs on call time;
- the audio-rate limit (audio faster than `max_audio_rate` x real time after a burst allowance
  is a policy violation; silence filled for gaps counts too) and the facts the stall timer
  needs (`last_audio_at`, `paused`);
- the gap limits: a message may open at most `max_gap_s` of silence (a timestamp or position
  jump, a discarded span) and a call `max_gap_total_s` in all, checked before anything is
  filled; silence and long runs of audio reach the call in `DELIVER_S` pieces with a yield to
  the event loop between them, so no message costs the loop more than a piece's analysis;
- the trace: every DTMF (masked), app event, pause/resume and the media counts, media-timed;
- the format check of raw L16 forks (traced once as `format_suspect`); text frames over
  `max_text_bytes` / `max_text_rate` counted, not stored; each audio message's ingest latency;
- finishing once: flush the timeline, store the media counts, finalise the call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from audio_quality.format_check import StreamFormatCheck
from config.settings import GatewaySettings
from monitor.core.events import Party
from monitor.errors import ProtocolError
from monitor.runtime.call import LiveCall
from monitor.runtime.latency import LatencyHistogram, MediaLateness
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
#: Audio reaches the call (recording, segmenter, analysis) in pieces this long at most, with a
#: yield between pieces: a long gap fill never holds the event loop (other calls) for long.
DELIVER_S = 0.25
#: App/switch text events traced under their own name (the rest: `app_message`, hold markers).
SWITCH_EVENTS = frozenset({"ivr_prompt", "ivr_menu", "queue", "transfer", "agent_connected",
                           "conference"})  # fmt: skip
_RESERVED = frozenset({"event", "kind", "party", "media_ms"})  # trace()'s own parameters
MAX_EARLY = 8  # app events kept from before the call started

CallFactory = Callable[[CallStarted], LiveCall]


class CallFeed:
    def __init__(self, cfg: GatewaySettings, factory: CallFactory, *, protocol: str, now: float,
                 shared: LatencyHistogram | None = None) -> None:  # fmt: skip
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
        self.claimed_gap_frames = 0  # silence the switch claimed (jumps, discarded spans)
        self.jump_frames = 0  # of which timestamp jumps (the timeline fills them)
        self.codec = ""
        self._finished = False
        self._early: list[CallEvent] = []
        self.extra_counts: dict[str, int] = {}  # protocol-specific (Twilio sequence gaps)
        self._format_check: StreamFormatCheck | None = None  # raw L16 forks only
        self.text_oversized = 0
        self.text_dropped = 0
        self._text_tokens = float(cfg.text_burst)  # token bucket for stored text frames
        self._text_at = now
        self.lateness = MediaLateness(shared)

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
        if isinstance(event, AppEvent | Dtmf) and not self._admit_text(event, now):
            return []
        if isinstance(event, FramesReceived):
            if event.filled:
                count = event.silence + len(event.pcm) // call.metadata.frame_bytes
                self._claim_gap(count, "a discarded or lost span")
                self._count_fill(count, now)
                await self._silence(call, count)
            else:
                self._count_audio(len(event.pcm) // call.metadata.frame_bytes, now)
                await self._check_format(call, event.pcm, now=now)
                await self._deliver(call, event.pcm)
        elif isinstance(event, PartyAudio):
            assert self.timeline is not None
            if event.party not in self.timeline.lines:
                raise ProtocolError(
                    ProtocolError.POLICY_VIOLATION, f"audio for {event.party.value}: not a party"
                )
            ahead = self.timeline.ahead(event.position)  # a frame's rounding is not a claim
            if ahead > call.metadata.sample_rate // 50:
                # Checked (and counted against the rate) before the timeline holds it: a
                # refused jump never reaches the recording, not even when the call is flushed.
                self._claim_gap(ahead, "a media timestamp jump")
                self.jump_frames += ahead
            # A party's own stream position is its media clock (tracks arrive in turns).
            start = event.position
            if start is None:  # right after its last chunk
                start = self.timeline.lines[event.party].received_end
            end = start + len(event.pcm) // 2
            self._count_audio(len(event.pcm) // 2 // call.metadata.channels, now, end)
            frames = self.timeline.push(event.party, event.position, event.pcm)
            if frames:
                await self._deliver(call, frames)
        elif isinstance(event, Dtmf):
            # Never the digit: a "*" per press, nothing at all in a secure-entry stage.
            party = event.party.value if event.party else None
            at_ms = self._party_ms(event.party)
            if (masked := call.dtmf.press()) is not None:
                await call.trace("dtmf", party=party, media_ms=at_ms,
                                 duration_ms=event.duration_ms, **masked)  # fmt: skip
            key_ms = call.session.duration_ms if at_ms is None else at_ms
            if (action := call.dtmf.keyed(event.digit, key_ms)) is not None:  # *1 / *2
                await call.set_capture(paused=action == "pause", by=party or "keypad", how="dtmf")
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
            # Where its audio starts in the recording, to the sample (an audit can tell a leg
            # that joined late from one that was cut).
            at = self.timeline.lines[party].next_pos
            if frames:
                await self._deliver(self.call, frames)
            await self.call.trace("leg_joined", party=party.value, at_sample=at)

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
                await self._deliver(self.call, frames)

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
            self._format_check = StreamFormatCheck(
                rate, meta.channels, check_pace=event.info.get("format_from") != "metadata"
            )

    async def _check_format(
        self, call: LiveCall, pcm: bytes, final: bool = False, now: float | None = None
    ) -> None:
        """A raw L16 fork in the wrong format is flagged (a warning, a `format_suspect` trace
        entry) once for what the audio looks like, once for its pace (`now`: gateway clock)."""
        check = self._format_check
        if check is None or (check.done and check.pace_done):
            return
        found = check.finish() if final else check.feed(np.frombuffer(pcm, dtype="<i2")) or []
        if now is not None and self.first_audio_at is not None:
            found = [*found, *(check.pace(now - self.first_audio_at) or [])]
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

    def _admit_text(self, event: AppEvent | Dtmf, now: float) -> bool:
        """Whether this text event may be stored: small enough, and within the call's rate."""
        if isinstance(event, AppEvent):
            size = len(json.dumps(event.data, default=str, ensure_ascii=False).encode())
            if size > self._cfg.max_text_bytes:
                self.text_oversized += 1
                return False
        cfg = self._cfg
        self._text_tokens = min(
            float(cfg.text_burst), self._text_tokens + (now - self._text_at) * cfg.max_text_rate
        )
        self._text_at = now
        if self._text_tokens < 1:
            self.text_dropped += 1
            return False
        self._text_tokens -= 1
        return True

    def _count_audio(self, frames: int, now: float, end: int | None = None) -> None:
        self.last_audio_at = now
        if self.first_audio_at is None:
            self.first_audio_at = now
        self.received_frames += frames
        if self.call is not None:
            media = self.received_frames + self.filled_frames + self.jump_frames
            self.lateness.observe(
                now, (media if end is None else end) / self.call.metadata.sample_rate
            )
        self._check_rate(now)

    def _count_fill(self, frames: int, now: float) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = now
        self.filled_frames += frames
        self._check_rate(now)

    def _check_rate(self, now: float) -> None:
        """Media, filled silence included, at most `max_audio_rate` x real time after a burst."""
        cfg = self._cfg
        if cfg.max_audio_rate <= 0 or self.call is None or self.first_audio_at is None:
            return
        frames = self.received_frames + self.filled_frames + self.jump_frames
        media_s = frames / self.call.metadata.sample_rate
        allowed = cfg.audio_burst_s + (now - self.first_audio_at) * cfg.max_audio_rate
        if media_s > allowed:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION,
                f"audio arrives faster than {cfg.max_audio_rate:g}x real time",
            )

    def _claim_gap(self, frames: int, what: str) -> None:
        """Bound the silence one message (and the call) may make us fill, before allocating."""
        if frames <= 0 or self.call is None:
            return
        rate, cfg = self.call.metadata.sample_rate, self._cfg
        if frames > cfg.max_gap_s * rate:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION,
                f"{what} of {frames / rate:.0f} s (limit gateway.max_gap_s = {cfg.max_gap_s:g})",
            )
        self.claimed_gap_frames += frames
        if self.claimed_gap_frames > cfg.max_gap_total_s * rate:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION,
                f"gaps total over gateway.max_gap_total_s = {cfg.max_gap_total_s:g} s",
            )

    async def _deliver(self, call: LiveCall, pcm: bytes) -> None:
        """Hand audio to the call in `DELIVER_S` pieces, yielding to the loop between them."""
        step = max(1, int(DELIVER_S * call.metadata.sample_rate)) * call.metadata.frame_bytes
        for start in range(0, len(pcm), step):
            if start:
                await asyncio.sleep(0)
            await call.on_audio(pcm[start : start + step])

    async def _silence(self, call: LiveCall, frames: int) -> None:
        """`frames` of silence, made and handed over one piece at a time (bounded memory)."""
        step = max(1, int(DELIVER_S * call.metadata.sample_rate))
        for start in range(0, frames, step):
            if start:
                await asyncio.sleep(0)
            await call.on_audio(bytes(min(step, frames - start) * call.metadata.frame_bytes))

    async def _resume(self, call: LiveCall, event: Resumed, now: float) -> None:
        fill = 0
        if event.discarded_samples is None and self.paused_at is not None:
            seconds = min(now - self.paused_at, MAX_PAUSE_FILL_S)
            fill = int(seconds * call.metadata.sample_rate)
            if fill:  # wall-clock time, not a claim: counted, but no gap limit applies
                self.filled_frames += fill
                await self._silence(call, fill)
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
            "text_oversized": self.text_oversized,
            "text_dropped": self.text_dropped,
            "ingest": self.lateness.hist.to_doc(),
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
        try:
            if self.timeline is not None:
                frames = self.timeline.finish()
                if frames:
                    await self._deliver(call, frames)
            await self._check_format(call, b"", final=True)  # a short call: judge what there is
            counts = self.counts()
            await call.trace("media", **counts)
            await call.save_result("media", counts)
        except Exception:
            # The call is closed all the same (with what is known): never left `active`.
            log.exception("flushing the call's media failed", extra=fields(call_id=call.call_id))
        await call.finish(status=status, reason=reason, detail=detail, asr_wait_s=asr_wait_s)
