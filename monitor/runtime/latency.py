"""Latency the server measures about itself: how late it takes each call's media, and how late
its event loop runs. Both are what a real-time service is judged by (RELIABILITY.md N9, B1, L1,
L3) and both show in `/api/health`; each call's own figure is stored with its media counts.

- `LatencyHistogram`: a fixed-bin histogram in milliseconds (1 ms bins under 100 ms, 10 ms
  bins to 1 s, 100 ms bins to 10 s, then one overflow bin), cheap to add to on every message
  and to subtract (a window is the difference of two cumulative snapshots). Percentiles
  answer the upper edge of their bin: never lower than the truth.
- `MediaLateness` (sans-I/O, one per call): *ingest latency* of each audio message, measured
  as a jitter buffer does, without any timestamp from the client: the transit offset
  `wall time - media time` of each message, less the smallest offset seen so far on the call.
  A client streaming in real time to a server that keeps up gives ~0 ms; every millisecond the
  message waited (in the socket, behind other calls on the loop, in the server's own work)
  shows. A client that runs ahead of real time sets a new minimum with each message: 0 ms.
- `LoopLagProbe` (asyncio shell): a task that sleeps `interval_s` and records how much later
  than asked it woke: the event loop's lag, which every call and every board client shares.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

#: (first edge, step, bins) of each bin range, in ms; past the last: the overflow bin.
_RANGES = ((0, 1, 100), (100, 10, 90), (1000, 100, 90))
_EDGES: tuple[int, ...] = tuple(
    first + i * step for first, step, count in _RANGES for i in range(count)
) + (10_000,)
OVERFLOW_MS = _EDGES[-1]
LOOP_LAG_INTERVAL_S = 0.025


def _bin(ms: float) -> int:
    if ms < 100:
        return max(0, int(ms))
    if ms < 1000:
        return 100 + int((ms - 100) // 10)
    if ms < OVERFLOW_MS:
        return 190 + int((ms - 1000) // 100)
    return len(_EDGES) - 1


class LatencyHistogram:
    """Counts of latencies (ms) in fixed bins; `counts` is cumulative."""

    __slots__ = ("counts", "max_ms")

    def __init__(self, counts: list[int] | None = None, max_ms: float = 0.0) -> None:
        self.counts = counts if counts is not None else [0] * len(_EDGES)
        self.max_ms = max_ms

    def add(self, ms: float) -> None:
        self.counts[_bin(ms)] += 1
        if ms > self.max_ms:
            self.max_ms = ms

    @property
    def total(self) -> int:
        return sum(self.counts)

    def copy(self) -> LatencyHistogram:
        return LatencyHistogram(list(self.counts), self.max_ms)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.max_ms = max(self.max_ms, other.max_ms)

    def since(self, earlier: LatencyHistogram) -> LatencyHistogram:
        """What was added after `earlier` (a copy of this one taken before); its `max_ms` is
        the upper edge of the highest bin used meanwhile."""
        diff = [a - b for a, b in zip(self.counts, earlier.counts, strict=True)]
        used = [i for i, n in enumerate(diff) if n]
        return LatencyHistogram(diff, float(_upper(used[-1])) if used else 0.0)

    def percentile(self, q: float) -> float:
        """The upper edge (ms) of the bin holding the q-th percentile; 0 when empty."""
        total = self.total
        if not total:
            return 0.0
        rank = q / 100 * total
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if n and seen >= rank:
                return float(self.max_ms) if i == len(_EDGES) - 1 else _upper(i)
        return float(self.max_ms)

    def to_doc(self) -> dict[str, Any]:
        """For /api/health and the stored media counts: a summary, and the used bins
        {lower edge ms: count} (from which `from_doc` rebuilds it)."""
        return {
            "count": self.total,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "max_ms": round(self.max_ms, 1),
            "bins": {str(_EDGES[i]): n for i, n in enumerate(self.counts) if n},
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> LatencyHistogram:
        hist = cls(max_ms=float(doc.get("max_ms", 0.0)))
        index = {edge: i for i, edge in enumerate(_EDGES)}
        for edge, n in doc.get("bins", {}).items():
            hist.counts[index[int(edge)]] += int(n)
        return hist


def _upper(i: int) -> float:
    return float(_EDGES[i + 1]) if i + 1 < len(_EDGES) else float(OVERFLOW_MS)


class MediaLateness:
    """A call's ingest latency per audio message (see the module docstring). Each message is
    added to the call's own histogram and to `shared` (the gateway's, all calls)."""

    __slots__ = ("hist", "_shared", "_min_offset")

    def __init__(self, shared: LatencyHistogram | None = None) -> None:
        self.hist = LatencyHistogram()
        self._shared = shared
        self._min_offset: float | None = None

    def observe(self, now: float, media_s: float) -> float:
        """`now`: when the message was taken (monotonic s); `media_s`: the call's media time
        at the end of the message. Returns the message's lateness in ms."""
        offset = now - media_s
        if self._min_offset is None or offset < self._min_offset:
            self._min_offset = offset
        ms = (offset - self._min_offset) * 1000
        self.hist.add(ms)
        if self._shared is not None:
            self._shared.add(ms)
        return ms


class LoopLagProbe:
    """Wakes every `interval_s` and records the lateness of each wake-up (ms)."""

    def __init__(self, interval_s: float = LOOP_LAG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.hist = LatencyHistogram()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag-probe")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            asked = time.monotonic() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.hist.add(max(0.0, time.monotonic() - asked) * 1000)
