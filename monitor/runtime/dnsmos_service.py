"""Shared DNSMOS scoring: windows from every party of every call, batched into one model run.

One onnxruntime session (loaded once) scores in a worker thread, never on the event loop. The
queue is bounded; when full, the oldest waiting window is dropped and counted (a clarity score
is a sample of the call, not a record that must be complete).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from audio_quality.dnsmos import DnsmosScore, DnsmosScorer, DnsmosWindow

log = logging.getLogger("callwatch.dnsmos")

Callback = Callable[[DnsmosScore], None]


class DnsmosService:
    def __init__(self, scorer: DnsmosScorer, *, max_batch: int = 16, queue_size: int = 256):
        self._scorer = scorer
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._waiting: deque[tuple[DnsmosWindow, Callback]] = deque()
        self._has_work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.scored = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dnsmos")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def submit(self, window: DnsmosWindow, on_done: Callback) -> None:
        if len(self._waiting) >= self._queue_size:
            self._waiting.popleft()
            self.dropped += 1
        self._waiting.append((window, on_done))
        self._has_work.set()

    async def _run(self) -> None:
        while True:
            await self._has_work.wait()
            batch = [
                self._waiting.popleft()
                for _ in range(min(self._max_batch, len(self._waiting)))
            ]
            if not self._waiting:
                self._has_work.clear()
            if not batch:
                continue
            try:
                scores = await asyncio.to_thread(self._scorer.score_batch, [w for w, _ in batch])
            except Exception as exc:  # onnxruntime failure: lose these windows, keep serving
                log.error("dnsmos batch failed: %s: %s", type(exc).__name__, exc)
                continue
            self.scored += len(scores)
            for (_, on_done), score in zip(batch, scores, strict=True):
                on_done(score)
