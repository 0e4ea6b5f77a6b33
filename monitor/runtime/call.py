"""The asyncio shell around one call: recording, ASR jobs, trace and the call's final record.

A `LiveCall` owns the call's `CallCore` (sans-I/O: legs, segmenters, analysis, markers), its
`WavRecorder` (disk writes in a thread, serialized per call because the receive loop awaits
them), the set of its utterances still in ASR, and the call's `CallSequencer`: it publishes
the call's events (`monitor.events`) on the bus, where storage, alerts and the board hear
them; its receive loop never waits for the database (`storage.room()`, the writer's
back-pressure, is awaited only by the tasks that store ASR results and make the verdict).
Whatever happens to the connection, `finish` runs once: the last utterance is cut, the
recording closed and the call published as ended (`CallEnded`: completed or interrupted) at
once; its verdict (compliance, grade, `CallFinalised`) is made in `completion` when its last
transcript lands, utterances that ASR deferred under overload included (re-read from the
recording, `monitor.runtime.catchup`). The call's parts: its side of ASR is `CallTranscripts`
(monitor/runtime/transcripts.py), its end and verdict `CallEnding` (monitor/runtime/call_end.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from audio_quality.dnsmos import DnsmosScore
from config.settings import Settings
from monitor.core.analysis import AnalysisEvent, CallAnalyzer
from monitor.core.call_core import CallCore
from monitor.core.metadata import CallMetadata
from monitor.events import (
    CallEvent,
    CallSequencer,
    CallStarted,
    Marked,
    ResultComputed,
    TraceKind,
)
from monitor.events.documents import jsonable
from monitor.privacy.scrub import DtmfMasker, scrub
from monitor.runtime import app_messages, findings
from monitor.runtime.asr_service import AsrService
from monitor.runtime.audio_redaction import audio_redaction_for
from monitor.runtime.bus import EventBus
from monitor.runtime.call_end import CallEnding
from monitor.runtime.dnsmos_service import DnsmosSampler, DnsmosService
from monitor.runtime.logs import fields
from monitor.runtime.recording import CallRecording, RecordingFailure
from monitor.runtime.storage_sink import StorageWriter
from storage.recordings import WavRecorder

log = logging.getLogger("callwatch.call")

#: How long a finished call waits for its last transcripts while the server shuts down (else
#: `asr.final_wait_s`).
SHUTDOWN_ASR_WAIT_S = 8.0
#: Finding fields the trace entry has as its own (kind, party, media time, source).
_TRACE_OWN = frozenset({"kind", "party", "source", "media_ms"})


def new_call_id(now: datetime) -> str:
    """Time-sortable, unique, readable: 20261121T181603-3fa9c2."""
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class LiveCall(CallEnding):
    def __init__(
        self,
        *,
        settings: Settings,
        metadata: CallMetadata,
        raw_metadata: str,
        protocol: str,
        peer: str,
        connected_at: datetime,
        storage: StorageWriter,
        asr: AsrService,
        bus: EventBus | None = None,
        analyzer: CallAnalyzer | None = None,
        dnsmos: DnsmosService | None = None,
    ) -> None:
        self.settings = settings
        self.metadata = metadata
        self.started_at = connected_at
        self.call_id = new_call_id(connected_at)
        #: The call's sans-I/O core; `session` (its legs) is the core's, for the shell's clocks.
        self.core = CallCore(metadata, settings.vad, analyzer)
        self.session = self.core.session
        rel = Path(f"{connected_at:%Y/%m/%d}") / f"{self.call_id}.wav"
        self.recording_rel = rel.as_posix()
        # A disk that fails (full, I/O error) stops the recording, never the call; the
        # recorder masks redacted spans in place, with a journal (issue 18, audio redaction).
        path = settings.recordings_dir / rel
        self._audio_redactor = None

        def open_recorder() -> WavRecorder:
            recorder, self._audio_redactor = audio_redaction_for(
                settings, path, metadata.sample_rate, metadata.channels
            )
            return recorder

        self.recorder = CallRecording(
            path,
            metadata.sample_rate,
            metadata.channels,
            flush_interval_s=settings.recording.flush_interval_s,
            fsync=settings.recording.fsync,
            open_recorder=open_recorder,
        )
        self._storage = storage
        self._bus = bus if bus is not None else storage.bus
        #: Numbers every event of this call (its own and the alerts raised on it).
        self.events = CallSequencer(self.call_id)
        self._asr = asr
        self._init_transcripts()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._failure: str | None = None  # what broke while winding down (finalisation_error)
        self._end: dict[str, Any] = {}  # the CallEnded / CallFinalised values, set at hang-up
        self._deadline = 0.0  # loop time after which the verdict stops waiting for ASR
        #: Makes the verdict once the last transcript is in (set by `finish`).
        self.completion: asyncio.Task[None] | None = None
        self._language = None if settings.asr.language == "auto" else settings.asr.language
        self._log_fields = {"call_id": self.call_id, "external_id": metadata.external_id}
        self.peer = peer
        self.protocol = protocol
        self.raw_metadata = raw_metadata
        self.analyzer = analyzer
        self._dnsmos = dnsmos
        self._analysis_done = False
        self._dnsmos_scores: list[DnsmosScore] = []  # one per 9 s window scored
        self._dnsmos_sampler = DnsmosSampler(settings.quality.dnsmos.sample_every_s)
        self._dnsmos_out = 0  # windows submitted and not answered yet
        self.grade: str | None = None
        p = settings.privacy
        self.dtmf = DtmfMasker(p.secure_entry_start, p.secure_entry_end,
                               pause_keys=p.pause_keys, resume_keys=p.resume_keys)  # fmt: skip
        self.capture_paused = False  # paused: the recording gets zeros, ASR hears nothing

    # -- events ------------------------------------------------------------------------
    def publish(self, events: list[CallEvent]) -> None:
        """Hand the call's events to the bus, in the order they were numbered."""
        for event in events:
            self._bus.publish(event)

    def _trace(
        self, kind: str, *, media_ms: int | None = None, party: str | None = None, **data: Any
    ) -> Marked:
        # card numbers / IDs in switch payloads never stored in clear; JSON values only
        doc = jsonable(scrub(data))
        return self.events.make(Marked, media_ms=media_ms, kind=kind, party=party, data=doc)

    async def open(self) -> None:
        m = self.metadata
        self.publish(
            [
                self.events.make(
                    CallStarted,
                    media_ms=0,
                    at=self.started_at,
                    external_id=m.external_id or self.call_id,
                    protocol=self.protocol,
                    sample_rate=m.sample_rate,
                    channels=m.channels,
                    recording_path=self.recording_rel,
                    parties=tuple((p.value, ch) for p, ch in m.channel_of.items()),
                    agent_id=m.agent_id,
                    queue=m.queue,
                    caller=m.caller,
                    callee=m.callee,
                    metadata=jsonable(scrub(m.extra)),
                    # Scale-out: the owning node, so a survivor can close it if this node dies.
                    node=self.settings.node.resolved_name if self.settings.bus.enabled else None,
                ),
                self._trace(TraceKind.CONNECTED, media_ms=0, peer=self.peer,
                            protocol=self.protocol),
                self._trace(
                    TraceKind.METADATA,
                    media_ms=0,
                    sample_rate=m.sample_rate,
                    channels=m.channels,
                    parties={p.value: ch for p, ch in m.channel_of.items()},
                ),
            ]
        )  # fmt: skip
        log.info("call started", extra=fields(**self._log_fields, peer=self.peer))
        if self.recorder.failure is not None:  # the file could not even be created
            await self._recording_failed(self.recorder.failure)

    async def _recording_failed(self, failure: RecordingFailure) -> None:
        # The trace entry raises the critical alert (monitor.alerts) and marks the call's
        # recording failed from here on (the API); the call itself goes on.
        log.error(
            "recording failed, the call continues unrecorded: %s", failure.reason,
            extra=fields(**self._log_fields, error=failure.error, at_ms=failure.at_ms),
        )  # fmt: skip
        await self.trace(TraceKind.RECORDING_FAILED, media_ms=failure.at_ms, error=failure.error,
                         reason=failure.reason, frames_kept=failure.frames_kept)  # fmt: skip

    async def on_app_message(self, payload: Any) -> None:
        """A mid-stream text frame: see `monitor.runtime.app_messages`."""
        await app_messages.apply(self, payload)

    async def set_capture(self, *, paused: bool, by: str, how: str) -> bool:
        """Pause (PCI) or resume capture: see `monitor.runtime.app_messages.set_capture`."""
        return await app_messages.set_capture(self, paused=paused, by=by, how=how)

    async def trace(
        self, kind: str, *, party: str | None = None, media_ms: int | None = None, **data: Any
    ) -> None:
        """A trace event at the call's current media time (or `media_ms` when the switch's
        own clock for that party is ahead of the mixed timeline, e.g. a DTMF on one leg)."""
        at = self.session.duration_ms if media_ms is None else media_ms
        self.publish([self._trace(kind, media_ms=at, party=party, **data)])

    async def save_result(self, kind: str, data: dict[str, Any]) -> None:
        """A call-wide result document (e.g. kind="media": the switch's media counts)."""
        doc = jsonable(data)
        now = self.session.duration_ms
        self.publish([self.events.make(ResultComputed, media_ms=now, kind=kind, data=doc)])

    # -- audio ---------------------------------------------------------------------------
    async def on_audio(self, pcm: bytes) -> None:
        if self.capture_paused:
            pcm = bytes(len(pcm))  # never written, transcribed or measured: zeros keep time
        self.recorder.append(pcm)
        fed = self.core.feed(pcm)
        for utterance in fed.utterances:
            self._submit(utterance)
        if self.analyzer is not None:
            self.publish(self._analysis_records(fed.found))
            self._offer_dnsmos()
        self._tick_redactor()
        if self.recorder.flush_due:
            self._confirm_audio()  # [hook: audio redaction] how far the recording is checked
        if (failure := await self.recorder.flush()) is not None:
            await self._recording_failed(failure)

    def _offer_dnsmos(self, *, final: bool = False) -> None:
        """DNSMOS windows through the call's sampler (the CPU budget) to the shared scorer;
        `final`: the end of the call, scored even when overload paused DNSMOS."""
        if self._dnsmos is None or self.analyzer is None:
            return
        windows = self.analyzer.take_dnsmos_windows()
        chosen = [(w, False) for window in windows for w in self._dnsmos_sampler.offer(window)]
        if final:
            chosen += [(w, True) for w in self._dnsmos_sampler.finish()]
        for window, last in chosen:
            self._dnsmos_out += 1
            self._dnsmos.submit(window, self._on_dnsmos, final=last)

    def _on_dnsmos(self, score: DnsmosScore | None) -> None:
        # Scores arriving until the verdict is made count; the verdict waits for them.
        self._dnsmos_out -= 1
        self._changed.set()
        if score is not None and self.analyzer is not None and not self._analysis_done:
            self.analyzer.add_dnsmos(score)
            self._dnsmos_scores.append(score)

    def _analysis_records(self, events: list[AnalysisEvent]) -> list[CallEvent]:
        """Readings, findings and dead-air marks for the analysis cores' output."""
        return findings.analysis_events(self.events, events)
