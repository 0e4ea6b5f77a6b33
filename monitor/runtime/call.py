"""The asyncio shell around one call: recording, ASR jobs, trace and the call's final record.

A `LiveCall` owns the call's `CallSession` (sans-I/O), its `WavRecorder` (disk writes in a
thread, serialized per call because the receive loop awaits them), the trace sequence, and the
set of its utterances still in ASR. It maps core events to storage records. Whatever happens
to the connection, `finish` runs once: the last utterance is cut, the recording closed, the
pending transcripts awaited (bounded), and the call closed as completed or interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asr.types import AsrResult
from audio_quality.dnsmos import DnsmosScore
from config.settings import Settings
from monitor.core.analysis import CallAnalyzer
from monitor.core.events import UtteranceEnded
from monitor.core.metadata import CallMetadata
from monitor.core.session import CallSession
from monitor.runtime import findings
from monitor.runtime.asr_service import AsrJob, AsrService
from monitor.runtime.dnsmos_service import DnsmosService
from monitor.runtime.logs import fields
from monitor.runtime.storage_sink import StorageWriter
from storage.recordings import WavRecorder
from storage.records import (
    CallClosed,
    CallOpened,
    FindingAdded,
    ResultSaved,
    SegmentAdded,
    TraceAdded,
)

log = logging.getLogger("callwatch.call")

#: How long a finished call waits for its last transcripts while the server shuts down (else
#: `asr.final_wait_s`).
SHUTDOWN_ASR_WAIT_S = 8.0
#: Text-frame `event` (or `type`) values that mark the customer being put on / taken off hold.
HOLD_STARTED = frozenset({"hold", "hold_start", "hold_started", "on_hold"})
#: Finding fields the trace entry has as its own (kind, party, media time, source).
_TRACE_OWN = frozenset({"kind", "party", "source", "media_ms"})
HOLD_ENDED = frozenset({"unhold", "hold_end", "hold_ended", "off_hold", "resume"})
#: IVR prompts: a start/end pair, or one `{"event":"ivr_prompt","start_ms":..,"end_ms":..}`
#: (media ms of this call; or `duration_ms` from now). Prompts are not talk or dead air.
IVR_STARTED = frozenset({"ivr_prompt_start", "ivr_prompt_started", "prompt_start"})
IVR_ENDED = frozenset({"ivr_prompt_end", "ivr_prompt_ended", "prompt_end"})
#: Keys of an `ivr_prompt` text frame that the trace entry has as its own.
_IVR_OWN = frozenset(
    {"event", "type", "start_ms", "end_ms", "duration_ms", "kind", "party", "media_ms"}
)


def new_call_id(now: datetime) -> str:
    """Time-sortable, unique, readable: 20261121T181603-3fa9c2."""
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class LiveCall:
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
        self.recorder = WavRecorder(
            settings.recordings_dir / rel,
            metadata.sample_rate,
            metadata.channels,
            flush_interval_s=settings.recording.flush_interval_s,
            fsync=settings.recording.fsync,
        )
        self._storage = storage
        self._asr = asr
        self._seq = 0
        self._pending: set[AsrJob] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self._language = None if settings.asr.language == "auto" else settings.asr.language
        self._log_fields = {"call_id": self.call_id, "external_id": metadata.external_id}
        self.peer = peer
        self.protocol = protocol
        self.raw_metadata = raw_metadata
        self.segments = 0
        self.shed = 0
        self.analyzer = analyzer
        self._dnsmos = dnsmos
        self._finding_seq = 0
        self._analysis_done = False
        self._dnsmos_scores: list[DnsmosScore] = []  # one per 9 s window scored
        self.grade: str | None = None

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
            data=data,
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
                    metadata=m.extra,
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

    async def on_app_message(self, payload: Any) -> None:
        """A mid-stream text frame (DTMF, app events) goes into the trace; hold markers and
        IVR prompts also tell the conversation tracker, so music on hold and prompts are not
        counted as dead air (or talk)."""
        event = payload.get("event") or payload.get("type") if isinstance(payload, dict) else None
        if self.analyzer is not None and event in HOLD_STARTED:
            self.analyzer.hold_started(self.session.duration_ms)
            await self.trace("hold_started", event=event)
        elif self.analyzer is not None and event in HOLD_ENDED:
            self.analyzer.hold_ended(self.session.duration_ms)
            await self.trace("hold_ended", event=event)
        elif self.analyzer is not None and event in IVR_STARTED | IVR_ENDED | {"ivr_prompt"}:
            await self._on_ivr_prompt(event, payload)
        else:
            await self.trace("app_message", payload=payload)

    async def _on_ivr_prompt(self, event: str, payload: dict[str, Any]) -> None:
        assert self.analyzer is not None
        analyzer, now = self.analyzer, self.session.duration_ms
        if event in IVR_STARTED:
            analyzer.ivr_prompt_started(now)
            await self.trace("ivr_prompt_started", event=event)
        elif event in IVR_ENDED:
            analyzer.ivr_prompt_ended(now)
            await self.trace("ivr_prompt_ended", event=event)
        else:
            extra = {k: v for k, v in payload.items() if k not in _IVR_OWN}
            if "end_ms" not in payload and "duration_ms" not in payload:
                # A bare marker (e.g. {"event":"ivr_prompt","prompt":"menu"}): traced, but with
                # no span there is nothing to leave out of talk time and dead air.
                await self.trace("ivr_prompt", event=event, **extra)
                return
            try:
                start = int(payload.get("start_ms", now))
                end = (
                    int(payload["end_ms"])
                    if "end_ms" in payload
                    else start + int(payload["duration_ms"])
                )
                analyzer.ivr_prompt(start, end)
            except (TypeError, ValueError) as exc:
                # Kept in the trace as it came: nothing is lost, the span is just not applied.
                await self.trace("app_message", payload=payload, problem=f"ivr_prompt: {exc}")
                return
            await self.trace("ivr_prompt", event=event, start_ms=start, end_ms=end, **extra)

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
        self.recorder.append(pcm)
        for utterance in self.session.feed(pcm):
            self._submit(utterance)
        if self.analyzer is not None:
            speaking = {p.value: leg.segmenter.in_speech for p, leg in self.session.legs.items()}
            records = self._analysis_records(self.analyzer.feed(pcm, speaking))
            if self._dnsmos is not None:
                for window in self.analyzer.take_dnsmos_windows():
                    self._dnsmos.submit(window, self._on_dnsmos)
            if records:
                await self._storage.put_many(records)
        if self.recorder.flush_due:
            await asyncio.to_thread(self.recorder.write, self.recorder.drain())

    def _on_dnsmos(self, score: DnsmosScore) -> None:
        # Scores arriving until the verdict is made count (the call may already be closing).
        if self.analyzer is not None and not self._analysis_done:
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

    def _submit(self, utterance: UtteranceEnded) -> None:
        job = AsrJob(utterance=utterance, language=self._language, on_done=self._on_asr)
        if self.analyzer is not None:
            self.analyzer.utterance_queued(job, utterance.start_ms)
        self._pending.add(job)
        self._drained.clear()
        self._asr.submit(job)

    def _on_asr(self, job: AsrJob, result: AsrResult | None, problem: str | None) -> None:
        # Called on the loop by the ASR consumer; storing may wait on backpressure, and the
        # job only counts as done once its records are queued (so `finish` orders after them).
        task = asyncio.get_running_loop().create_task(self._store_result(job, result, problem))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store_result(
        self, job: AsrJob, result: AsrResult | None, problem: str | None
    ) -> None:
        u = job.utterance
        latency_ms = int((time.monotonic() - job.queued_at) * 1000)
        records: list[Any] = []
        if result is None:
            self.shed += 1
            records.append(
                self._trace(
                    "asr_shed",
                    media_ms=u.start_ms,
                    party=u.party.value,
                    end_ms=u.end_ms,
                    reason=problem,
                )
            )
        else:
            records.append(
                self._trace(
                    "utterance",
                    media_ms=u.start_ms,
                    party=u.party.value,
                    end_ms=u.end_ms,
                    voiced_ms=u.voiced_ms,
                    capped=u.capped,
                    chars=len(result.text),
                    latency_ms=latency_ms,
                )
            )
            if result.text:
                self.segments += 1
                # A transcript that arrives after the verdict (`asr.final_wait_s` ran out) is
                # stored with the call but judged no more: the analysis is finished.
                if self.analyzer is not None and not self._analysis_done:
                    await self.analyzer.prepare_segment(result.text)  # the model, off the loop
                if self.analyzer is not None and not self._analysis_done:
                    records.extend(
                        self._analysis_records(
                            self.analyzer.on_segment(
                                job,
                                u.party.value,
                                u.start_ms,
                                u.end_ms,
                                result.text,
                                result.language,
                            )
                        )
                    )
                records.append(
                    SegmentAdded(
                        call_id=self.call_id,
                        party=u.party.value,
                        start_ms=u.start_ms,
                        end_ms=u.end_ms,
                        text=result.text,
                        language=result.language,
                        confidence=result.confidence,
                        latency_ms=latency_ms,
                    )
                )
        late = self._analysis_done
        if self.analyzer is not None and not late and not (result is not None and result.text):
            self.analyzer.utterance_done(job)
        await self._storage.put_many(records)
        self._pending.discard(job)
        if not self._pending:
            self._drained.set()

    # -- end -------------------------------------------------------------------------------
    async def finish(
        self,
        *,
        status: str,
        reason: str,
        detail: str | None = None,
        asr_wait_s: float,
    ) -> None:
        """Close the call once; safe to call from any exit path."""
        if self._closed:
            return
        self._closed = True
        await self.trace("disconnected", status=status, reason=reason, detail=detail)
        for utterance in self.session.finish():
            self._submit(utterance)
        frames = await asyncio.to_thread(self.recorder.close)
        try:
            await asyncio.wait_for(self._drained.wait(), asr_wait_s)
        except TimeoutError:
            log.warning(
                "closing call before its last transcripts arrived",
                extra=fields(**self._log_fields, pending=len(self._pending)),
            )
        # Transcripts still owed: compliance and speaking rate were judged without them.
        asr_pending = len(self._pending)
        verdict_records: list[Any] = []
        scores: dict[str, Any] = {}
        if self.analyzer is not None:
            verdict_records = self._analysis_records(self.analyzer.flush())
            verdict = self.analyzer.finish()
            self._analysis_done = True
            self.grade = verdict.grade
            scores = {"grade": verdict.grade, "score": verdict.score}
            for rec in findings.verdict_records(self.call_id, verdict, self._finding_seq):
                verdict_records.append(rec)
                if isinstance(rec, FindingAdded):  # end-of-call quality findings: traced too
                    self._finding_seq = rec.seq + 1
                    verdict_records.append(self._finding_trace(rec))
            verdict_records += findings.dnsmos_records(self.call_id, self._dnsmos_scores)
        ended_at = datetime.now(UTC)
        await self._storage.put_many(
            verdict_records
            + [
                self._trace(
                    "finalised",
                    media_ms=self.session.duration_ms,
                    status=status,
                    segments=self.segments,
                    asr_shed=self.shed,
                    asr_pending=asr_pending,
                    **scores,
                ),
                CallClosed(
                    call_id=self.call_id,
                    ended_at=ended_at,
                    status=status,
                    end_reason=reason,
                    duration_ms=self.session.duration_ms,
                    recording_frames=frames,
                    party_samples={p.value: leg.samples for p, leg in self.session.legs.items()},
                ),
            ]
        )
        log.info(
            "call finalised",
            extra=fields(
                **self._log_fields,
                status=status,
                reason=reason,
                duration_ms=self.session.duration_ms,
                segments=self.segments,
            ),
        )
