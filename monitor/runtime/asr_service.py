"""The ASR queue in front of the shared model workers: deadline order, two lanes, no loss.

Which utterance a free worker transcribes next (one consumer task per worker, so none idles
while work waits), and what happens when the box cannot keep up.

* **Live lane**, ordered by deadline: the wall time the speech ended (`AsrJob.ended_at`,
  by default the moment the segmenter emitted it), oldest first across all calls. A worker
  takes the head, and only then adds batch-mates that are already waiting, from the same
  lane, with the same language and a similar encoder window (`asr.window.bucket`): batching
  never delays the head, and a GPU batch never pads a 2 s utterance to a 20 s neighbour.
* **Catch-up lane**: a live job that waited longer than `live_budget_s`, or that the live
  lane (bounded at `queue_size`) had no room for, moves here with `job.late = True`. It is
  served only when no live work waits, so fresh transcripts stay fresh under overload and
  the backlog is worked off when load drops. Its audio is bounded (`catchup_max_s`): a job
  that would go past the bound is *deferred*: its audio is released and
  `on_done(job, None, "deferred")` is called, and the call re-reads that span from its
  recording later and hands it back with `submit_catchup(job)`, which always queues.
* A batch whose worker died is retried once, in the catch-up lane; a second failure is
  `on_done(job, None, "error:<type>")`. A batch no worker could be asked for
  (`AsrUnavailable`: the bus is away) waits in the catch-up lane: delayed, never lost.
* A batch not answered within `utterance_timeout_s` per utterance (a hung model) is given
  up, not retried: `on_done(job, None, "timeout")`, the call marks the range `asr_timeout`,
  and the pool kills and restarts a process worker whose batch is cancelled.

Every job ends in exactly one `on_done` call, on the loop. A job's party `LanguageTracker`
is read when the job is taken and fed every result before `on_done`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from asr.errors import AsrUnavailable
from asr.language import LanguageTracker
from asr.settings import AsrSettings
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from asr.window import bucket
from monitor.core.events import UtteranceEnded
from monitor.runtime.asr_lane import Lane

log = logging.getLogger("callwatch.asr")

_EMPTY = np.zeros(0, dtype=np.int16)
#: A consumer's pause after a batch found no worker reachable (the bus away).
UNAVAILABLE_PAUSE_S = 1.0


class BatchTranscriber(Protocol):
    """What the service needs from the pool (asr.pool.AsrPool provides it)."""

    @property
    def worker_count(self) -> int: ...

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]: ...


@dataclass(slots=True, eq=False)
class AsrJob:
    utterance: UtteranceEnded
    #: A forced language ("zh"/"en"), or None: the tracker's lock, else detection.
    language: str | None
    #: Called on the loop with the result, or with None and a reason: "deferred" (audio
    #: released; re-read it from the recording and `submit_catchup`), "shutdown", "error:...".
    on_done: Callable[[AsrJob, AsrResult | None, str | None], None]
    queued_at: float = field(default_factory=time.monotonic)
    #: Deadline order: when the speech ended (monotonic); None = `queued_at`.
    ended_at: float | None = None
    #: The party's language tracker, fed with every result of this party.
    tracker: LanguageTracker | None = None
    #: Set by the service: the job went through the catch-up lane; its result is late.
    late: bool = False
    attempts: int = 0
    #: Idempotency key (call id, party, utterance sequence), handed to the transcriber as
    #: the request's tag: a remote one sends it along (monitor.scale.asr_remote).
    key: tuple[str, str, int] | None = None

    @property
    def audio_s(self) -> float:
        return len(self.utterance.audio) / SAMPLE_RATE

    @property
    def deadline(self) -> float:
        return self.queued_at if self.ended_at is None else self.ended_at


class AsrService:
    """Create, `start()`, `submit(job)` per utterance, `await close()`.

    Each job gets exactly one `on_done(job, result, problem)` on the loop: a result (late
    when `job.late`), or None and "deferred" (`job.utterance` keeps party/start/end with
    empty audio: re-read the span as 16 kHz int16 and `submit_catchup(job)`), "shutdown",
    "timeout" (the range stays untranscribed) or "error:<type>" after a retry. Read-outs:
    `counters()`, `backlog`, `backlog_s`, `catchup_backlog`, `overloaded`.
    """

    def __init__(
        self,
        pool: BatchTranscriber,
        *,
        queue_size: int,
        batch_size: int,
        live_budget_s: float = 3.0,
        catchup_max_s: float = 1800.0,
        window_margin_s: float = 0.0,
        word_timestamps: bool = False,
        utterance_timeout_s: float = 60.0,
    ) -> None:
        if utterance_timeout_s <= 0:
            raise ValueError(f"utterance_timeout_s must be > 0, not {utterance_timeout_s!r}")
        self._pool = pool
        self._utterance_timeout_s = utterance_timeout_s
        #: Ask for word times (audio redaction needs them: privacy.redact_audio).
        self._word_timestamps = word_timestamps
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._live_budget_s = live_budget_s
        self._catchup_max_s = catchup_max_s
        self._margin_s = window_margin_s
        self._live = Lane()
        self._catchup = Lane()
        # Set while jobs are waiting; consumers clear it when both lanes are empty.
        self._has_work = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.submitted = 0
        self.failed = 0
        #: Jobs given up after `utterance_timeout_s` (a hung model).
        self.timed_out = 0
        self.in_flight = 0
        #: Results delivered from the live lane / flagged late from the catch-up lane.
        self.live = 0
        self.late = 0
        #: Jobs whose audio was released past `catchup_max_s` (the call re-reads them).
        self.deferred = 0
        #: Results whose short-window decode was redone on the full window (asr.window).
        self.fallbacks = 0
        self._logged: tuple[int, ...] = ()
        self._was_overloaded = False
        #: Jobs put back because no worker was reachable (`AsrUnavailable`), ever.
        self.waited_for_workers = 0
        self._workers_away = False

    @classmethod
    def from_settings(
        cls, pool: BatchTranscriber, settings: AsrSettings, *, word_timestamps: bool = False
    ) -> AsrService:
        return cls(
            pool,
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            live_budget_s=settings.live_budget_s,
            catchup_max_s=settings.catchup_max_s,
            window_margin_s=settings.window_margin_s,
            word_timestamps=word_timestamps,
            utterance_timeout_s=settings.utterance_timeout_s,
        )

    # -- what the runtime reads -------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Jobs waiting in both lanes."""
        return len(self._live) + len(self._catchup)

    @property
    def backlog_s(self) -> float:
        """Audio seconds waiting in both lanes."""
        return max(0.0, self._live.audio_s) + max(0.0, self._catchup.audio_s)

    @property
    def catchup_backlog(self) -> int:
        return len(self._catchup)

    @property
    def shed(self) -> int:
        """Kept for older readers: utterances not transcribed live and not yet re-submitted."""
        return self.deferred

    @property
    def overloaded(self) -> bool:
        """Live work waits past its budget, or anything waits in the catch-up lane."""
        head = self._live.head()
        if head is not None and time.monotonic() - head.deadline > self._live_budget_s:
            return True
        return len(self._catchup) > 0

    # -- lifecycle --------------------------------------------------------------------------
    def counters(self) -> dict[str, float]:
        """Everything countable, for health pages and the log."""
        return {
            "submitted": self.submitted,
            "live": self.live,
            "late": self.late,
            "deferred": self.deferred,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "fallbacks": self.fallbacks,
            "backlog": self.backlog,
            "backlog_s": round(self.backlog_s, 1),
        }

    def start(self, report_every_s: float = 5.0) -> None:
        for i in range(max(1, self._pool.worker_count)):
            self._tasks.append(asyncio.create_task(self._consume(), name=f"asr-consumer-{i}"))
        self._tasks.append(asyncio.create_task(self._report(report_every_s), name="asr-report"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._log_counters()
        for job in self._live.drain() + self._catchup.drain():
            job.on_done(job, None, "shutdown")

    def submit(self, job: AsrJob) -> None:
        """Queue live work; never blocks. Over the live bound the oldest moves to catch-up."""
        self.submitted += 1
        self._live.push(job)
        self._rebalance(time.monotonic())
        self._has_work.set()

    def submit_catchup(self, job: AsrJob) -> None:
        """Queue a job straight into the catch-up lane (e.g. a deferred span re-read from the
        recording, `job.utterance.audio` filled again). Always queues: the caller paces itself
        (see `catchup_backlog`). Its result comes back with `job.late = True`."""
        self.submitted += 1
        self._requeue(job)

    def _requeue(self, job: AsrJob) -> None:
        job.late = True
        self._catchup.push(job)
        self._has_work.set()

    # -- reporting --------------------------------------------------------------------------
    async def _report(self, every_s: float) -> None:
        """Log every change of the overloaded state, so an operator sees overload in the log
        too, and the counters when they changed: as soon as the service is idle (scripts/bench
        reads that line after each level), else at most once a minute."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(every_s)
            overloaded = self.overloaded
            if overloaded != self._was_overloaded:
                self._was_overloaded = overloaded
                if overloaded:
                    log.warning(
                        "asr overloaded: live speech waits over %.1f s or %d utterance(s) are "
                        "in the catch-up lane; transcripts come late (add ASR workers or lower "
                        "the call load)",
                        self._live_budget_s,
                        len(self._catchup),
                    )
                else:
                    log.info("asr caught up: no longer overloaded")
            idle = not self.backlog and not self.in_flight
            if idle or time.monotonic() - last >= 60.0:
                if self._log_counters():
                    last = time.monotonic()

    def _log_counters(self) -> bool:
        counters = self.counters()
        key = tuple(int(v) for k, v in counters.items() if k not in ("backlog", "backlog_s"))
        if key == self._logged:
            return False
        self._logged = key
        log.info("asr counters: %s", " ".join(f"{k}={v}" for k, v in counters.items()))
        return True

    # -- scheduling -------------------------------------------------------------------------
    def _rebalance(self, now: float) -> None:
        """Move live jobs past their budget, or beyond the live bound, to the catch-up lane."""
        while (head := self._live.head()) is not None and (
            now - head.deadline > self._live_budget_s or len(self._live) > self._queue_size
        ):
            self._to_catchup(self._live.pop())

    def _to_catchup(self, job: AsrJob) -> None:
        job.late = True
        if self._catchup.audio_s + job.audio_s > self._catchup_max_s:
            self.deferred += 1
            log.warning(
                "asr catch-up lane full (%.0f s of audio): deferring an utterance to the "
                "recording; raise asr.catchup_max_s or add ASR workers",
                self._catchup.audio_s,
            )
            job.utterance = replace(job.utterance, audio=_EMPTY)
            job.on_done(job, None, "deferred")
            return
        self._catchup.push(job)

    def _unavailable(self, batch: list[AsrJob], exc: Exception) -> None:
        self.waited_for_workers += len(batch)
        if not self._workers_away:
            self._workers_away = True
            log.warning("asr workers unreachable (%s): utterances wait in the catch-up lane "
                        "until they are back", exc)  # fmt: skip
        for job in batch:
            self._to_catchup(job)
        self._has_work.set()

    def _bucket(self, job: AsrJob) -> tuple[str, int]:
        lang = job.language or (job.tracker.locked if job.tracker else None) or "?"
        return lang, bucket(job.audio_s, self._margin_s)

    def _take(self) -> list[AsrJob]:
        lane = self._live if len(self._live) else self._catchup
        if not len(lane):
            return []
        head = lane.pop()
        # Share the backlog across workers before batching: two waiting utterances and two
        # idle workers means one each, not a batch of two and an idle worker.
        workers = max(1, self._pool.worker_count)
        take = min(self._batch_size, -(-(len(lane) + 1) // workers))
        if take <= 1:
            return [head]
        return [head, *lane.take_like(self._bucket(head), take - 1, self._bucket)]

    async def _consume(self) -> None:
        while True:
            await self._has_work.wait()
            self._rebalance(time.monotonic())
            batch = self._take()
            if not len(self._live) and not len(self._catchup):
                self._has_work.clear()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[AsrJob]) -> None:
        requests = []
        for job in batch:
            locked = None
            if job.language is None and job.tracker is not None:
                locked = job.tracker.locked
            requests.append(
                AsrRequest(
                    audio=(job.utterance.audio.astype(np.float32) / 32768.0),
                    language=job.language,
                    locked_language=locked,
                    word_timestamps=self._word_timestamps,
                    tag=job.key,
                )
            )
        self.in_flight += len(batch)
        limit_s = self._utterance_timeout_s * len(batch)
        results: list[AsrResult] | None
        try:
            async with asyncio.timeout(limit_s):
                results = await self._pool.transcribe_batch(requests)
        except TimeoutError:
            self.timed_out += len(batch)
            log.error(
                "asr gave up a batch of %d utterance(s) after %.0f s (asr.utterance_timeout_s): "
                "their transcripts are marked missing; the calls go on",
                len(batch), limit_s,
            )  # fmt: skip
            for job in batch:
                job.on_done(job, None, "timeout")
            return
        except asyncio.CancelledError:
            for job in batch:
                job.on_done(job, None, "shutdown")
            raise
        except AsrUnavailable as exc:  # no worker reachable: the jobs wait (module doc)
            self._unavailable(batch, exc)
            results = None
        except Exception as exc:  # a worker died or the model failed: retry these once
            log.error("asr batch failed: %s: %s", type(exc).__name__, exc)
            for job in batch:
                job.attempts += 1
                if job.attempts < 2:
                    self._requeue(job)
                else:
                    self.failed += 1
                    job.on_done(job, None, f"error:{type(exc).__name__}")
            return
        finally:
            self.in_flight -= len(batch)
        if results is None:
            await asyncio.sleep(UNAVAILABLE_PAUSE_S)  # no busy loop while the bus is away
            return
        if self._workers_away:
            self._workers_away = False
            log.info("asr workers answering again; catch-up backlog %d", len(self._catchup))
        for job, result in zip(batch, results, strict=True):
            if job.tracker is not None and job.language is None:
                job.tracker.observe_result(result)
            if result.fallback is not None:
                self.fallbacks += 1
            if job.late:
                self.late += 1
            else:
                self.live += 1
            job.on_done(job, result, None)
