"""The end of one live call: `finish` when the switch hangs up, then the verdict once the
last transcript is in.

`CallEnding` is the part of `LiveCall` (monitor/runtime/call.py) that winds a call down. At
hang-up the last utterance is cut, the recording closed and the call published as ended
(`CallEnded`: completed or interrupted) at once; the `completion` task then waits for the
transcripts still owed (`CallTranscripts`: in ASR, or deferred under overload and re-read from
the recording) and the DNSMOS scores, at most until the deadline `finish` was given (`hurry`
shortens it when the server stops), and makes the verdict: the analysis's last findings, the
grade, the redactor's last segments and audio masks, `CallFinalised` and the `finalised`
trace entry. A failure while winding down never leaves the call `active`: it is logged with
its traceback and the call closed with what is known (`finalisation_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from audio_quality.dnsmos import DnsmosScore
from monitor.core.call_core import CallCore
from monitor.events import CallEnded, CallEvent, CallFinalised, TraceKind
from monitor.runtime import findings
from monitor.runtime.audio_redaction import finish_audio_redaction
from monitor.runtime.logs import fields
from monitor.runtime.recording import CallRecording, RecordingFailure
from monitor.runtime.transcripts import CallTranscripts

log = logging.getLogger("callwatch.call")


class CallEnding(CallTranscripts):
    # Provided by LiveCall.
    core: CallCore
    recorder: CallRecording
    completion: asyncio.Task[None] | None
    grade: str | None
    _closed: bool
    _failure: str | None
    _end: dict[str, Any]
    _deadline: float
    _dnsmos_out: int
    _dnsmos_scores: list[DnsmosScore]
    _offer_dnsmos: Callable[..., None]
    _recording_failed: Callable[[RecordingFailure], Awaitable[None]]

    async def _verdict_records(self) -> tuple[list[CallEvent], dict[str, Any]]:
        """The end-of-call analysis: its last findings, the verdict and the DNSMOS documents."""
        analyzer = self.analyzer
        assert analyzer is not None
        self._analysis_done = True  # a score arriving from now on is not fed to it
        # The last batch and the summaries cost 0.1-0.2 s of CPU: in a thread, so the event
        # loop (every other call) never waits for them (issue 17 item 1); the events, and so
        # their sequence numbers, are made back on the loop.
        flushed, verdict = await asyncio.to_thread(lambda: (analyzer.flush(), analyzer.finish()))
        records = self._analysis_records(flushed)
        self.grade = verdict.grade
        now = self.session.duration_ms
        records += findings.verdict_events(self.events, verdict, now)
        records += findings.dnsmos_events(self.events, self._dnsmos_scores, now)
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
        verdict (compliance, grade, quality, the `finalised` trace entry and `CallFinalised`,
        which triggers end-of-call alerts) follows in `self.completion` as soon as its last
        transcript is in, deferred utterances included, or after `asr_wait_s` at most.
        Never leaves the call `active`: a failure while winding down (the recorder, the
        analysis) is logged with its traceback and the call is closed with what is known,
        marked `finalisation_error` in its trace."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.trace(TraceKind.DISCONNECTED, status=status, reason=reason, detail=detail)
            for utterance in self.core.finish():
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
        end = {k: v for k, v in self._end.items() if k not in ("call_id", "ended_at")}
        self.publish([self.events.make(CallEnded, media_ms=self.session.duration_ms,
                                       at=self._end["ended_at"], **end,
                                       transcripts_pending=pending)])  # fmt: skip
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
        verdict_records: list[CallEvent] = []
        scores: dict[str, Any] = {}
        try:
            # Segments the redactor still holds are released (redacted) and judged first.
            verdict_records = self._flush_redactor()
            if self.analyzer is not None and self._failure is None:
                records, scores = await self._verdict_records()
                verdict_records += records
        except Exception as exc:
            log.exception("call verdict failed", extra=fields(**self._log_fields))
            self._failure = type(exc).__name__
        if self._failure is not None:
            self._analysis_done = True
            verdict_records.append(self._trace(TraceKind.FINALISATION_ERROR, error=self._failure))
        # [hook: audio redaction] the last masks (and unchecked audio) before CallFinalised,
        # which seals the recording.
        verdict_records += await finish_audio_redaction(self)
        await self._storage.room()
        end = {k: v for k, v in self._end.items() if k != "call_id"}
        now = self.session.duration_ms
        # The `finalised` mark is the call's last own event: its seq is then the highest
        # stored one, and numbering resumes after it (CallRegistry.sequencer) without reuse.
        self.publish(
            verdict_records
            + [
                self.events.make(CallFinalised, media_ms=now, **end),
                self._trace(TraceKind.FINALISED, media_ms=now,
                            status=self._end["status"], segments=self.segments,
                            asr_shed=self.shed, asr_timeout=self.timed_out,
                            asr_pending=asr_pending,
                            asr_late=self.late_segments,
                            asr_lost=self._deferred.lost + self.catchup_lost, **scores),
            ]
        )  # fmt: skip
        log.info(
            "call finalised",
            extra=fields(**self._log_fields, status=self._end["status"],
                         duration_ms=self.session.duration_ms, segments=self.segments,
                         late=self.late_segments),
        )  # fmt: skip
