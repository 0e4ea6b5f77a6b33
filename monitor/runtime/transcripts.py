"""A call's side of ASR: its utterances in flight, deferred, caught up, and their events.

`CallTranscripts` is the part of `LiveCall` that talks to the shared `AsrService`: it submits
each utterance the call's session cuts, turns each result into the `utterance` mark, the
`SegmentTranscribed` and the compliance findings (published on the bus), and keeps what is
still owed a transcript (`asr_outstanding`), which the call's verdict waits for. Under
overload the service may let an utterance go (`deferred`, or `queue_full` from a service
without a catch-up lane): its span is kept (`monitor.runtime.catchup`) and, after hang-up,
re-read from the recording and submitted again, at most `CATCH_UP_IN_FLIGHT` at a time;
those segments are stored `late`.
An utterance's analyzer key is (party, first sample), the same for its live and catch-up job,
so the compliance watermark holds until either is transcribed.

Every transcript goes through the call's `CallRedactor` (`privacy.redact_transcripts`) before
it becomes a `SegmentTranscribed` or reaches the analysis, caught-up (`late`) ones too: a segment
whose digits may continue in the next words is held (media time, see
`monitor.privacy.redactor`) and released redacted; what is still held is released before the
verdict. Only the masks' types and spans are traced (`redacted`), never the masked text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from asr.language import LanguageTracker
from asr.types import AsrResult, WordTiming
from config.settings import Settings
from monitor.core.analysis import CallAnalyzer
from monitor.core.call_core import utterance_key
from monitor.core.events import UtteranceEnded, samples_to_ms
from monitor.core.metadata import CallMetadata
from monitor.core.session import CallSession
from monitor.events import CallEvent, CallSequencer, Marked, SegmentTranscribed, TraceKind
from monitor.privacy.audio_redact import CallAudioRedactor
from monitor.privacy.redactor import CallRedactor, HeardSegment, SegmentRedacted
from monitor.runtime.asr_service import AsrJob, AsrService
from monitor.runtime.catchup import (
    CATCH_UP_IN_FLIGHT,
    CATCH_UP_REASONS,
    DeferredSpans,
    read_utterances,
)
from monitor.runtime.logs import fields
from monitor.runtime.storage_sink import StorageWriter

log = logging.getLogger("callwatch.call")


class CallTranscripts:
    # Provided by LiveCall.
    call_id: str
    settings: Settings
    metadata: CallMetadata
    recording_rel: str
    analyzer: CallAnalyzer | None
    session: CallSession
    _asr: AsrService
    _storage: StorageWriter
    _language: str | None
    _analysis_done: bool
    _log_fields: dict[str, Any]
    _tasks: set[asyncio.Task[None]]
    events: CallSequencer
    _trace: Callable[..., Marked]
    trace: Callable[..., Coroutine[Any, Any, None]]
    publish: Callable[[list[CallEvent]], None]
    _analysis_records: Callable[[list[Any]], list[CallEvent]]
    _audio_redactor: CallAudioRedactor | None

    def _confirm_audio(self) -> None:
        """[hook: audio redaction] Tell the recording how far it is checked: up to the
        earliest utterance still in ASR or deferred, segment held by the redactor, or
        utterance a party may be speaking (monitor.privacy.audio_redact)."""
        if self._audio_redactor is None:
            return
        open_from = [j.utterance.start_ms for j in self._pending]
        open_from += [samples_to_ms(s.start_sample) for s in self._deferred.spans]
        open_from += [samples_to_ms(leg.segmenter.open_from_sample)
                      for leg in self.session.legs.values()]  # fmt: skip
        if self._redactor is not None and (held := self._redactor.held_from_ms) is not None:
            open_from.append(held)
        self._audio_redactor.progress(self.session.duration_ms, open_from)

    def _init_transcripts(self) -> None:
        self._pending: set[AsrJob] = set()
        self._deferred = DeferredSpans()  # released by ASR under overload: caught up later
        self._late: set[tuple[str, int]] = set()  # keys of catch-up jobs (stored `late`)
        #: Keys whose transcript was applied: a result for one of them again (a retried
        #: remote request answered twice, a live and a catch-up job both transcribed) is
        #: dropped, so no segment is applied twice. One entry per utterance of this call.
        self._applied: set[tuple[str, int]] = set()
        self.duplicates = 0
        #: Set when an outstanding transcript (or DNSMOS score) lands or is deferred.
        self._changed = asyncio.Event()
        self.segments = 0
        self.late_segments = 0
        self.catchup_lost = 0  # deferred spans that could not be re-read
        self.shed = 0
        self.timed_out = 0  # utterances the ASR never answered (asr.utterance_timeout_s)
        # Each party's language, locked after confident detections (asr.language).
        self._trackers: dict[str, LanguageTracker] = {}
        p = self.settings.privacy
        self._redactor = (
            CallRedactor(classes=p.classes, hold_ms=p.hold_ms, max_held=p.max_held)
            if p.redact_transcripts
            else None
        )

    @property
    def asr_outstanding(self) -> int:
        """Utterances of this call still owed a transcript (in ASR, or deferred)."""
        return len(self._pending) + len(self._deferred)

    @property
    def oldest_pending_at(self) -> float | None:
        """`time.monotonic()` when the oldest utterance still in live ASR was queued."""
        # Catch-up work (ours, or moved there by the service) waits by design: not lag.
        live = [
            j.queued_at
            for j in self._pending
            if _key(j) not in self._late and not getattr(j, "late", False)
        ]
        return min(live, default=None)

    def _submit(self, utterance: UtteranceEnded, *, late: bool = False) -> None:
        a = self.settings.asr
        tracker = self._trackers.setdefault(
            utterance.party.value,
            LanguageTracker(lock_p=a.language_lock_p, lock_after=a.language_lock_after),
        )
        job = AsrJob(
            utterance=utterance, language=self._language, on_done=self._on_asr, tracker=tracker
        )
        key = _key(job)  # the call core queued it with the analysis when it was cut
        job.key = (self.call_id, *key)  # idempotency across ASR workers and retries
        self._pending.add(job)
        if late:
            self._late.add(key)
            self._asr.submit_catchup(job)
        else:
            self._asr.submit(job)

    def _on_asr(self, job: AsrJob, result: AsrResult | None, problem: str | None) -> None:
        # Called on the loop by the ASR consumer; storing may wait on backpressure, and the
        # job only counts as done once its events are published (so the verdict orders after).
        task = asyncio.get_running_loop().create_task(self._store_result(job, result, problem))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store_result(
        self, job: AsrJob, result: AsrResult | None, problem: str | None
    ) -> None:
        u, key = job.utterance, _key(job)
        latency_ms = int((time.monotonic() - job.queued_at) * 1000)
        late = key in self._late or bool(getattr(job, "late", False))
        await self._storage.room()  # back-pressure here, on this call's ASR results only
        records: list[CallEvent] = []
        if result is not None:
            if key in self._applied:
                self.duplicates += 1
                log.info("duplicate transcript dropped", extra=fields(**self._log_fields,
                         party=u.party.value, start_ms=u.start_ms))  # fmt: skip
                self._pending.discard(job)
                self._changed.set()
                return
            self._applied.add(key)
        if result is None and problem in CATCH_UP_REASONS and not self._deferred.add(u):
            problem = "deferred_list_full"
        if result is None and problem in CATCH_UP_REASONS:
            # The audio was released, not lost: re-read from the recording after hang-up.
            records.append(
                self._trace(TraceKind.ASR_DEFERRED, media_ms=u.start_ms, party=u.party.value,
                            end_ms=u.end_ms, reason=problem)
            )  # fmt: skip
        elif result is None:
            # Not transcribed, and never will be: a hung model (`timeout`, its range stated as
            # missing from the transcript) or a failure; the analysis stops waiting for it.
            timeout = problem == "timeout"
            self.timed_out += timeout
            self.shed += not timeout
            if self.analyzer is not None and not self._analysis_done:
                self.analyzer.utterance_done(key)
            kind = TraceKind.ASR_TIMEOUT if timeout else TraceKind.ASR_SHED
            records.append(
                self._trace(kind, media_ms=u.start_ms, party=u.party.value, end_ms=u.end_ms,
                            reason=problem)
            )  # fmt: skip
        else:
            if self.analyzer is not None and not self._analysis_done and result.text:
                # The sentence model encodes its clauses in its own thread, not on the loop.
                await self.analyzer.prepare_segment(result.text)
            records.extend(self._result_records(job, result, latency_ms, late))
        self.publish(records)
        self._pending.discard(job)
        self._late.discard(key)
        self._changed.set()

    def _result_records(
        self, job: AsrJob, result: AsrResult, latency_ms: int, late: bool
    ) -> list[CallEvent]:
        u, key = job.utterance, _key(job)
        extra = {"late": True} if late else {}
        records: list[CallEvent] = [
            self._trace(TraceKind.UTTERANCE, media_ms=u.start_ms, party=u.party.value,
                        end_ms=u.end_ms, voiced_ms=u.voiced_ms, capped=u.capped,
                        chars=len(result.text), latency_ms=latency_ms, **extra)
        ]  # fmt: skip
        if not result.text:
            if self.analyzer is not None and not self._analysis_done:
                self.analyzer.utterance_done(key)
            return records
        self.segments += 1
        self.late_segments += late
        heard = HeardSegment(
            u.party.value, u.start_ms, u.end_ms, result.text, (key, result, latency_ms, late)
        )
        records.extend(self._segment_records(self._redact(heard, job)))
        return records

    def _asr_state(self, but: AsrJob | None = None) -> dict[str, Any]:
        """What the redactor waits on: utterances still in ASR (but `but`), speech under way."""
        pending = [j.utterance.start_ms for j in self._pending if j is not but]
        speaking = any(leg.segmenter.in_speech for leg in self.session.legs.values())
        return {"pending": pending, "speaking": speaking}

    def _redact(self, heard: HeardSegment, job: AsrJob) -> list[SegmentRedacted]:
        if self._redactor is None:
            return [SegmentRedacted(heard.party, heard.start_ms, heard.end_ms, heard.text, (),
                                    0, heard.tag)]  # fmt: skip
        out = self._redactor.add(heard, self.session.duration_ms, **self._asr_state(job))
        # After the verdict nothing more is held: there is no later segment to wait for.
        return out + self._redactor.flush() if self._analysis_done else out

    def _tick_redactor(self) -> None:
        """Media time moved on: publish the held segments whose wait is over."""
        if self._redactor is not None and self._redactor.holding:
            due = self._redactor.tick(self.session.duration_ms, **self._asr_state())
            if due:
                self.publish(self._segment_records(due))

    def _flush_redactor(self) -> list[CallEvent]:
        """Events of every segment still held (the verdict is next: none can wait more)."""
        return self._segment_records(self._redactor.flush()) if self._redactor else []

    def _segment_records(self, released: list[SegmentRedacted]) -> list[CallEvent]:
        """Analysis, segment and redaction-mark events of segments the redactor released."""
        if self._audio_redactor is not None:  # [hook: audio redaction] mask their audio
            released = self._audio_redactor.released(released, _words)
        records: list[CallEvent] = []
        for seg in released:
            tag: tuple[tuple[str, int], AsrResult, int, bool] = seg.tag  # type: ignore[assignment]
            key, result, latency_ms, late = tag
            # A transcript that arrives after the verdict (`asr.final_wait_s` ran out) is
            # stored with the call but judged no more: the analysis is finished.
            if self.analyzer is not None and not self._analysis_done:
                records.extend(
                    self._analysis_records(
                        self.analyzer.on_segment(
                            key, seg.party, seg.start_ms, seg.end_ms, seg.text, result.language
                        )
                    )
                )
            records.append(
                self.events.make(
                    SegmentTranscribed,
                    media_ms=seg.start_ms,
                    party=seg.party,
                    start_ms=seg.start_ms,
                    end_ms=seg.end_ms,
                    text=seg.text,
                    language=result.language,
                    confidence=result.confidence,
                    latency_ms=latency_ms,
                    late=late,
                )
            )
            if seg.entities:  # what was masked, where and when: never the masked text
                records.append(self._trace(
                    TraceKind.REDACTED, media_ms=seg.start_ms, party=seg.party, held_ms=seg.held_ms,
                    entities=[{"type": e.kind, "mask": e.mask, "chars": [e.start, e.end],
                               "start_ms": e.start_ms, "end_ms": e.end_ms} for e in seg.entities],
                ))  # fmt: skip
        return records

    async def _catch_up(self) -> None:
        """Re-read deferred utterances from the recording (in a thread) and submit them to the
        ASR's catch-up lane, at most `CATCH_UP_IN_FLIGHT` at a time (bounded memory, and a
        service without that lane is not flooded)."""
        room = CATCH_UP_IN_FLIGHT - len(self._late)
        if room <= 0:
            return  # the next round starts when one of them lands
        spans = self._deferred.take(room)
        path = self.settings.recordings_dir / self.recording_rel
        try:
            found = await asyncio.to_thread(read_utterances, path, spans, self.metadata.channel_of)
        except (OSError, ValueError, EOFError) as exc:  # wave.Error is an Exception too
            self.catchup_lost += len(spans)
            log.error(
                "cannot re-read deferred utterances: %s: %s (they stay untranscribed)",
                type(exc).__name__, exc, extra=fields(**self._log_fields, spans=len(spans)),
            )  # fmt: skip
            return
        for utterance in found:
            self._submit(utterance, late=True)
        await self.trace(TraceKind.ASR_CATCH_UP, utterances=len(found))


def _words(seg: SegmentRedacted) -> tuple[WordTiming, ...]:
    """The word times of a released segment (its tag is `_result_records`' tuple)."""
    return seg.tag[1].words  # type: ignore[index,no-any-return]


def _key(job: AsrJob) -> tuple[str, int]:
    return utterance_key(job.utterance)
