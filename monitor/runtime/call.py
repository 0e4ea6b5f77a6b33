"""The asyncio shell around one call: recording, ASR jobs, trace and the call's final record.

A `LiveCall` owns the call's `CallSession` (sans-I/O), its `WavRecorder` (disk writes in a
thread, serialized per call because the receive loop awaits them), the trace sequence, and the
set of its utterances still in ASR. It maps core events to storage records. Whatever happens
to the connection, `finish` runs once: the last utterance is cut, the recording closed and the
call stored as ended (completed or interrupted) at once; its verdict (compliance, grade,
`CallClosed`) is made in `completion` when its last transcript lands, utterances that ASR
deferred under overload included (re-read from the recording, `monitor.runtime.catchup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audio_quality.dnsmos import DnsmosScore
from config.settings import Settings
from monitor.core.analysis import CallAnalyzer
from monitor.core.metadata import CallMetadata
from monitor.core.session import CallSession
from monitor.privacy.scrub import DtmfMasker, scrub
from monitor.runtime import app_messages, findings
from monitor.runtime.asr_service import AsrService
from monitor.runtime.dnsmos_service import DnsmosSampler, DnsmosService
from monitor.runtime.logs import fields
from monitor.runtime.recording import CallRecording, RecordingFailure
from monitor.runtime.storage_sink import StorageWriter
from monitor.runtime.transcripts import CallTranscripts
from storage.records import (
    CallClosed,
    CallEnded,
    CallOpened,
    FindingAdded,
    ResultSaved,
    TraceAdded,
)

log = logging.getLogger("callwatch.call")

#: How long a finished call waits for its last transcripts while the server shuts down (else
#: `asr.final_wait_s`).
SHUTDOWN_ASR_WAIT_S = 8.0
#: Finding fields the trace entry has as its own (kind, party, media time, source).
_TRACE_OWN = frozenset({"kind", "party", "source", "media_ms"})


def new_call_id(now: datetime) -> str:
    """Time-sortable, unique, readable: 20261121T181603-3fa9c2."""
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class LiveCall(CallTranscripts):
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
        analyzer: CallAnalyzer | None = None,
        dnsmos: DnsmosService | None = None,
    ) -> None:
        self.settings = settings
        self.metadata = metadata
        self.started_at = connected_at
        self.call_id = new_call_id(connected_at)
        self.session = CallSession(metadata, settings.vad)
        rel = Path(f"{connected_at:%Y/%m/%d}") / f"{self.call_id}.wav"
        self.recording_rel = rel.as_posix()
        # A disk that fails (full, I/O error) stops the recording, never the call.
        self.recorder = CallRecording(
            settings.recordings_dir / rel,
            metadata.sample_rate,
            metadata.channels,
            flush_interval_s=settings.recording.flush_interval_s,
            fsync=settings.recording.fsync,
        )
        self._storage = storage
        self._asr = asr
        self._seq = 0
        self._init_transcripts()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._failure: str | None = None  # what broke while winding down (finalisation_error)
        self._end: dict[str, Any] = {}  # the CallEnded / CallClosed values, set at hang-up
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
        self._finding_seq = 0
        self._analysis_done = False
        self._dnsmos_scores: list[DnsmosScore] = []  # one per 9 s window scored
        self._dnsmos_sampler = DnsmosSampler(settings.quality.dnsmos.sample_every_s)
        self._dnsmos_out = 0  # windows submitted and not answered yet
        self.grade: str | None = None
        p = settings.privacy
        self.dtmf = DtmfMasker(p.secure_entry_start, p.secure_entry_end)
        self.capture_paused = False  # paused: the recording gets zeros, ASR hears nothing

    # -- records -----------------------------------------------------------------------
    def _trace(
        self, kind: str, *, media_ms: int | None = None, party: str | None = None, **data: Any
    ) -> TraceAdded:
        rec = TraceAdded(
            call_id=self.call_id,
            seq=self._seq,
            kind=kind,
            at=datetime.now(UTC),
            media_ms=media_ms,
            party=party,
            data=scrub(data),  # card numbers / IDs in switch payloads never stored in clear
        )
        self._seq += 1
        return rec

    async def open(self) -> None:
        m = self.metadata
        await self._storage.put_many(
            [
                CallOpened(
                    call_id=self.call_id,
                    external_id=m.external_id or self.call_id,
                    started_at=self.started_at,
                    protocol=self.protocol,
                    sample_rate=m.sample_rate,
                    channels=m.channels,
                    recording_path=self.recording_rel,
                    parties=tuple((p.value, ch) for p, ch in m.channel_of.items()),
                    agent_id=m.agent_id,
                    queue=m.queue,
                    caller=m.caller,
                    callee=m.callee,
                    metadata=scrub(m.extra),
                ),
                self._trace("connected", media_ms=0, peer=self.peer, protocol=self.protocol),
                self._trace(
                    "metadata",
                    media_ms=0,
                    sample_rate=m.sample_rate,
                    channels=m.channels,
                    parties={p.value: ch for p, ch in m.channel_of.items()},
                ),
            ]
        )
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
        await self.trace("recording_failed", media_ms=failure.at_ms, error=failure.error,
                         reason=failure.reason, frames_kept=failure.frames_kept)  # fmt: skip

    async def on_app_message(self, payload: Any) -> None:
        """A mid-stream text frame: see `monitor.runtime.app_messages`."""
        await app_messages.apply(self, payload)

    async def set_capture(self, *, paused: bool, by: str, how: str) -> bool:
        """Pause (PCI) or resume capture: see `monitor.runtime.app_messages.set_capture`."""
        return await app_messages.set_capture(self, paused=paused, by=by, how=how)

    @property
    def next_trace_seq(self) -> int:
        """The seq the call's next trace entry gets (others appending to this call's trace,
        like the alert service, go through `trace` and read this to stay in step)."""
        return self._seq

    async def trace(
        self, kind: str, *, party: str | None = None, media_ms: int | None = None, **data: Any
    ) -> None:
        """A trace event at the call's current media time (or `media_ms` when the switch's
        own clock for that party is ahead of the mixed timeline, e.g. a DTMF on one leg)."""
        at = self.session.duration_ms if media_ms is None else media_ms
        rec = self._trace(kind, media_ms=at, party=party, **data)
        await self._storage.put(rec)

    async def save_result(self, kind: str, data: dict[str, Any]) -> None:
        """A call-wide result row (e.g. kind="media": the switch's media counts)."""
        await self._storage.put(ResultSaved(call_id=self.call_id, kind=kind, data=data))

    # -- audio ---------------------------------------------------------------------------
    async def on_audio(self, pcm: bytes) -> None:
        if self.capture_paused:
            pcm = bytes(len(pcm))  # never written, transcribed or measured: zeros keep time
        self.recorder.append(pcm)
        for utterance in self.session.feed(pcm):
            self._submit(utterance)
        if self.analyzer is not None:
            speaking = {p.value: leg.segmenter.in_speech for p, leg in self.session.legs.items()}
            records = self._analysis_records(self.analyzer.feed(pcm, speaking))
            self._offer_dnsmos()
            if records:
                await self._storage.put_many(records)
        await self._tick_redactor()
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

    def _analysis_records(self, events: list[Any]) -> list[Any]:
        """Readings, findings (with a trace entry each) for the analysis events."""
        out: list[Any] = []
        for event in events:
            if (rec := findings.reading(self.call_id, event)) is not None:
                out.append(rec)
            elif (found := findings.finding(self.call_id, self._finding_seq, event)) is not None:
                self._finding_seq += 1
                out.append(found)
                out.append(self._finding_trace(found))
            elif findings.is_dead_air_start(event):
                out.append(self._trace("dead_air_started", media_ms=event.start_ms))
        return out

    def _finding_trace(self, found: FindingAdded) -> TraceAdded:
        data = {k: v for k, v in found.data.items() if k not in _TRACE_OWN}
        return self._trace(
            found.kind, media_ms=found.start_ms, party=found.party, source=found.source, **data
        )

    # -- end -------------------------------------------------------------------------------
    def _verdict_records(self) -> tuple[list[Any], dict[str, Any]]:
        """The end-of-call analysis: its last findings, the verdict and the DNSMOS rows."""
        assert self.analyzer is not None
        records = self._analysis_records(self.analyzer.flush())
        verdict = self.analyzer.finish()
        self._analysis_done = True
        self.grade = verdict.grade
        for rec in findings.verdict_records(self.call_id, verdict, self._finding_seq):
            records.append(rec)
            if isinstance(rec, FindingAdded):  # end-of-call quality findings: traced too
                self._finding_seq = rec.seq + 1
                records.append(self._finding_trace(rec))
        records += findings.dnsmos_records(self.call_id, self._dnsmos_scores)
        return records, {"grade": verdict.grade, "score": verdict.score}

    async def finish(
        self,
        *,
        status: str,
        reason: str,
        detail: str | None = None,
        asr_wait_s: float,
    ) -> None:
        """The switch hung up: end the call now, safe to call once from any exit path.

        The call is stored as ended (`CallEnded`: status, end time, length) at once; its
        verdict (compliance, grade, quality, the `finalised` trace entry and `CallClosed`,
        which triggers end-of-call alerts) follows in `self.completion` as soon as its last
        transcript is in, deferred utterances included, or after `asr_wait_s` at most.
        Never leaves the call `active`: a failure while winding down (the recorder, the
        analysis) is logged with its traceback and the call is closed with what is known,
        marked `finalisation_error` in its trace."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.trace("disconnected", status=status, reason=reason, detail=detail)
            for utterance in self.session.finish():
                self._submit(utterance)
            self._offer_dnsmos(final=True)
            frames, failure = await self.recorder.close()
            if failure is not None:
                await self._recording_failed(failure)
        except Exception as exc:
            log.exception("call finalisation failed", extra=fields(**self._log_fields))
            self._failure = type(exc).__name__
            frames = self.recorder.frames_written
        self._end = {
            "call_id": self.call_id,
            "ended_at": datetime.now(UTC),
            "status": status,
            "end_reason": reason,
            "duration_ms": self.session.duration_ms,
            "recording_frames": frames,
            "party_samples": {p.value: leg.samples for p, leg in self.session.legs.items()},
        }
        pending = self.asr_outstanding
        await self._storage.put(CallEnded(**self._end, transcripts_pending=pending))
        log.info(
            "call ended" + ("; transcripts pending" if pending else ""),
            extra=fields(**self._log_fields, status=status, reason=reason, pending=pending),
        )
        self._deadline = asyncio.get_running_loop().time() + asr_wait_s
        self.completion = asyncio.get_running_loop().create_task(
            self._complete(), name=f"call-complete-{self.call_id}"
        )
        self.completion.add_done_callback(self._completion_failed)

    def _completion_failed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The call is stored as ended; only its verdict is missing. Say which call.
            log.error("call verdict failed: %s: %s", type(exc).__name__, exc,
                      extra=fields(**self._log_fields), exc_info=exc)  # fmt: skip

    def hurry(self, wait_s: float) -> None:
        """Wait at most `wait_s` more for transcripts (the server is stopping)."""
        self._deadline = min(self._deadline, asyncio.get_running_loop().time() + wait_s)
        self._changed.set()

    async def _complete(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            if self._deferred:
                await self._catch_up()
            if not self.asr_outstanding and not self._dnsmos_out:
                break
            left = self._deadline - loop.time()
            if left <= 0:
                log.warning(
                    "making the verdict before the last transcripts arrived",
                    extra=fields(**self._log_fields, pending=self.asr_outstanding),
                )
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        await self._verdict()

    async def _verdict(self) -> None:
        # Transcripts still owed: compliance and speaking rate were judged without them.
        asr_pending = self.asr_outstanding
        verdict_records: list[Any] = []
        scores: dict[str, Any] = {}
        try:
            # Segments the redactor still holds are released (redacted) and judged first.
            verdict_records = self._flush_redactor()
            if self.analyzer is not None and self._failure is None:
                records, scores = self._verdict_records()
                verdict_records += records
        except Exception as exc:
            log.exception("call verdict failed", extra=fields(**self._log_fields))
            self._failure = type(exc).__name__
        if self._failure is not None:
            self._analysis_done = True
            verdict_records.append(self._trace("finalisation_error", error=self._failure))
        await self._storage.put_many(
            verdict_records
            + [
                self._trace("finalised", media_ms=self.session.duration_ms,
                            status=self._end["status"], segments=self.segments,
                            asr_shed=self.shed, asr_pending=asr_pending,
                            asr_late=self.late_segments,
                            asr_lost=self._deferred.lost + self.catchup_lost, **scores),
                CallClosed(**self._end),
            ]
        )  # fmt: skip
        log.info(
            "call finalised",
            extra=fields(**self._log_fields, status=self._end["status"],
                         duration_ms=self.session.duration_ms, segments=self.segments,
                         late=self.late_segments),
        )  # fmt: skip
