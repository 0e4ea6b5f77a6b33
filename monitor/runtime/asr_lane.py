"""One lane of the ASR queue (`monitor.runtime.asr_service`): jobs in deadline order (the
wall time their speech ended, oldest first), with their audio seconds summed so the service
can bound the catch-up lane by audio held in memory, not by count."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.runtime.asr_service import AsrJob


class Lane:
    """Jobs in deadline order, with their audio seconds summed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, AsrJob]] = []
        self._seq = itertools.count()
        self.audio_s = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, job: AsrJob) -> None:
        heapq.heappush(self._heap, (job.deadline, next(self._seq), job))
        self.audio_s += job.audio_s

    def head(self) -> AsrJob | None:
        return self._heap[0][2] if self._heap else None

    def pop(self) -> AsrJob:
        job = heapq.heappop(self._heap)[2]
        self.audio_s -= job.audio_s
        return job

    def take_like(
        self, key: tuple[str, int], count: int, key_of: Callable[[AsrJob], object]
    ) -> list[AsrJob]:
        """Remove up to `count` jobs with bucket `key`, oldest first."""
        if count <= 0:
            return []
        chosen = [e for e in sorted(self._heap) if key_of(e[2]) == key][:count]
        if chosen:
            ids = {id(e[2]) for e in chosen}
            self._heap = [e for e in self._heap if id(e[2]) not in ids]
            heapq.heapify(self._heap)
            self.audio_s -= sum(e[2].audio_s for e in chosen)
        return [e[2] for e in chosen]

    def drain(self) -> list[AsrJob]:
        jobs = [e[2] for e in sorted(self._heap)]
        self._heap.clear()
        self.audio_s = 0.0
        return jobs
