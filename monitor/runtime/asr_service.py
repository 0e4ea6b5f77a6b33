"""The ASR queue in front of the shared model workers.

Utterances from every call go into one bounded queue. One consumer task per worker takes up
to `batch_size` waiting utterances at once (from any calls) and hands them to the pool as one
batch, so workers stay busy and a later packing of several utterances into one Whisper window
needs no change here. Policy when the queue is full: the *oldest waiting* utterance is shed
(its call is told, it is counted), because a live monitor values fresh transcripts over old
ones and audio is never lost: it is in the recording.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from asr.types import AsrRequest, AsrResult
from monitor.core.events import UtteranceEnded

log = logging.getLogger("callwatch.asr")


class BatchTranscriber(Protocol):
    """What the service needs from the pool (asr.pool.AsrPool provides it)."""

    @property
    def worker_count(self) -> int: ...

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]: ...


@dataclass(slots=True, eq=False)
class AsrJob:
    utterance: UtteranceEnded
    language: str | None
    #: Called on the loop with the result, or with None and a reason when shed or failed.
    on_done: Callable[[AsrJob, AsrResult | None, str | None], None]
    queued_at: float = field(default_factory=time.monotonic)


class AsrService:
    def __init__(self, pool: BatchTranscriber, *, queue_size: int, batch_size: int) -> None:
        self._pool = pool
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._waiting: deque[AsrJob] = deque()
        # Set while jobs are waiting; consumers clear it when they empty the queue.
        self._has_work = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.submitted = 0
        self.shed = 0
        self.failed = 0
        self.in_flight = 0

    @property
    def backlog(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        for i in range(max(1, self._pool.worker_count)):
            self._tasks.append(asyncio.create_task(self._consume(), name=f"asr-consumer-{i}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._waiting:
            job = self._waiting.popleft()
            job.on_done(job, None, "shutdown")

    def submit(self, job: AsrJob) -> None:
        """Never blocks: a full queue sheds its oldest waiting job instead."""
        self.submitted += 1
        if len(self._waiting) >= self._queue_size:
            oldest = self._waiting.popleft()
            self.shed += 1
            log.warning("asr queue full (%d): shedding oldest utterance", self._queue_size)
            oldest.on_done(oldest, None, "queue_full")
        self._waiting.append(job)
        self._has_work.set()

    async def _consume(self) -> None:
        while True:
            await self._has_work.wait()
            # Share the backlog across workers before batching: two waiting utterances and two
            # idle workers means one each, not a batch of two and an idle worker.
            workers = max(1, self._pool.worker_count)
            take = min(self._batch_size, -(-len(self._waiting) // workers))
            batch: list[AsrJob] = []
            while self._waiting and len(batch) < take:
                batch.append(self._waiting.popleft())
            if not self._waiting:
                self._has_work.clear()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[AsrJob]) -> None:
        requests = [
            AsrRequest(
                audio=(job.utterance.audio.astype(np.float32) / 32768.0),
                language=job.language,
            )
            for job in batch
        ]
        self.in_flight += len(batch)
        try:
            results = await self._pool.transcribe_batch(requests)
        except asyncio.CancelledError:
            for job in batch:
                job.on_done(job, None, "shutdown")
            raise
        except Exception as exc:  # a worker died or the model failed: fail these jobs only
            self.failed += len(batch)
            log.error("asr batch failed: %s: %s", type(exc).__name__, exc)
            for job in batch:
                job.on_done(job, None, f"error:{type(exc).__name__}")
            return
        finally:
            self.in_flight -= len(batch)
        for job, result in zip(batch, results, strict=True):
            job.on_done(job, result, None)
