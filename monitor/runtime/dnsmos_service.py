"""Shared DNSMOS scoring within a CPU budget: windows from every party of every call, batched.

DNSMOS is the most expensive audio measure (about 0.065 CPU-s per audio-second per party, a
worker core's worth at a dozen calls), so it runs on a budget:

- `DnsmosSampler` (one per call) passes at most one window per party per
  `quality.dnsmos.sample_every_s` of media, and holds the latest window it skipped so the end
  of the call is scored too (`finish`). 0 scores every window.
- `DnsmosService` (one per server) scores in one worker thread, never on the event loop, and
  counts the CPU seconds it spends (`cpu_s`, in /api/health). It is the first live work
  degraded under overload (`paused`): windows offered meanwhile are skipped, except each
  call's end-of-call windows. Its queue is bounded; when full the oldest waiting window is
  dropped and counted (a clarity score is a sample of the call, not a record to complete).

Every window submitted is answered exactly once: a score, or None when it was skipped,
dropped or failed, so a call can wait for its outstanding windows before its verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from audio_quality.dnsmos import DnsmosScore, DnsmosScorer, DnsmosWindow

log = logging.getLogger("callwatch.dnsmos")

Callback = Callable[[DnsmosScore | None], None]


class DnsmosSampler:
    """Which of one call's windows are scored (sans-I/O). Windows come in media order."""

    def __init__(self, sample_every_s: float) -> None:
        if sample_every_s < 0:
            raise ValueError(f"sample_every_s must be >= 0, got {sample_every_s}")
        self._every_ms = round(sample_every_s * 1000)
        self._last: dict[str, int] = {}  # party -> start_ms of its last window passed
        self._held: dict[str, DnsmosWindow] = {}  # party -> latest window skipped
        self.offered = 0
        self.passed = 0

    def offer(self, window: DnsmosWindow) -> list[DnsmosWindow]:
        """The windows to score now (this one, or none: it is held for the end)."""
        self.offered += 1
        last = self._last.get(window.party)
        if last is None or window.start_ms - last >= self._every_ms:
            self._last[window.party] = window.start_ms
            self._held.pop(window.party, None)
            self.passed += 1
            return [window]
        self._held[window.party] = window
        return []

    def finish(self) -> list[DnsmosWindow]:
        """End of the call: each party's latest skipped window (the call's end), if any."""
        out = list(self._held.values())
        self._held.clear()
        self.passed += len(out)
        return out


#: Niceness of the scoring thread: DNSMOS is the first thing to give way (docs/architecture.md,
#: "Overload"), so the kernel serves the ASR workers first when both want a core.
DNSMOS_NICE = 10


def _lower_priority() -> None:
    # Linux applies nice per thread (the id of this thread); elsewhere it is a no-op.
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()  # new threads inherit the creator's niceness
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + DNSMOS_NICE)
        )


class DnsmosService:
    def __init__(self, scorer: DnsmosScorer, *, max_batch: int = 16, queue_size: int = 256):
        self._scorer = scorer
        # One thread of its own, at low priority (not the loop's shared default executor).
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="dnsmos", initializer=_lower_priority
        )
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._waiting: deque[tuple[DnsmosWindow, Callback]] = deque()
        self._has_work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Overload degradation step 1 (see monitor.runtime.load): skip live windows.
        self.paused = False
        self.scored = 0
        self.dropped = 0  # queue full: oldest waiting window dropped
        self.skipped = 0  # offered while paused (overload)
        self.failed = 0
        self.cpu_s = 0.0  # CPU seconds of the scoring thread (the model runs)
        self.audio_s = 0.0  # audio seconds scored

    @property
    def backlog(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dnsmos")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        while self._waiting:
            _, on_done = self._waiting.popleft()
            on_done(None)

    def submit(self, window: DnsmosWindow, on_done: Callback, *, final: bool = False) -> None:
        """Queue a window; `final` (a call's end-of-call window) is scored even while paused."""
        if self.paused and not final:
            self.skipped += 1
            on_done(None)
            return
        if len(self._waiting) >= self._queue_size:
            _, dropped = self._waiting.popleft()
            self.dropped += 1
            dropped(None)
        self._waiting.append((window, on_done))
        self._has_work.set()

    def _score(self, windows: list[DnsmosWindow]) -> tuple[list[DnsmosScore], float]:
        start = time.thread_time()  # this worker thread's CPU (onnxruntime runs in it)
        scores = self._scorer.score_batch(windows)
        return scores, time.thread_time() - start

    async def _run(self) -> None:
        while True:
            await self._has_work.wait()
            batch = [
                self._waiting.popleft() for _ in range(min(self._max_batch, len(self._waiting)))
            ]
            if not self._waiting:
                self._has_work.clear()
            if not batch:
                continue
            try:
                scores, cpu_s = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._score, [w for w, _ in batch]
                )
            except Exception as exc:  # onnxruntime failure: lose these windows, keep serving
                log.error("dnsmos batch failed: %s: %s", type(exc).__name__, exc)
                self.failed += len(batch)
                for _, on_done in batch:
                    on_done(None)
                continue
            self.cpu_s += cpu_s
            self.scored += len(scores)
            self.audio_s += sum(w.samples.size for w, _ in batch) / 16_000
            for (_, on_done), score in zip(batch, scores, strict=True):
                on_done(score)
