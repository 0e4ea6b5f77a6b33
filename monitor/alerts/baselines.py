"""Learned call-duration baselines per queue and per agent in a queue (sans-I/O).

Call durations are heavy-tailed and roughly log-normal, so the baseline is robust statistics
of the *log* duration: the median and the MAD (median absolute deviation), scaled by 1.4826
to estimate the standard deviation of a normal. A call is abnormally long once its duration
passes `exp(median + k * sigma)` and abnormally short below `exp(median - k * sigma)`. A few
extreme calls (a 6-hour call left open) barely move the median or the MAD, unlike a mean
and standard deviation.

A scope needs `min_samples` calls before its baseline is used; an agent's own baseline
(within the queue) wins over the queue's when it has enough calls. The shell loads the
history from the database off the event loop and hands it to `Baselines.from_history`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median
from typing import Any

#: MAD -> standard deviation of a normal distribution.
MAD_TO_SIGMA = 1.4826
#: Floor on sigma (log units): a queue whose calls all last exactly the same still gets a
#: bound a little above its median, not one equal to it.
MIN_SIGMA = 0.05
#: Calls shorter than this are not durations of a conversation (misdials, instant hang-ups)
#: and would drag the log median down; they are left out of the history.
MIN_HISTORY_MS = 1000


@dataclass(frozen=True, slots=True)
class DurationBaseline:
    scope: str  # "queue" | "agent"
    key: str  # the queue, or "queue/agent"
    samples: int
    median_log: float  # median of ln(duration in ms)
    mad_log: float  # median absolute deviation of ln(duration)

    @property
    def sigma(self) -> float:
        return max(self.mad_log * MAD_TO_SIGMA, MIN_SIGMA)

    @property
    def median_ms(self) -> float:
        return math.exp(self.median_log)

    def upper_ms(self, k: float) -> int:
        return math.ceil(math.exp(self.median_log + k * self.sigma))

    def lower_ms(self, k: float) -> int:
        return math.floor(math.exp(self.median_log - k * self.sigma))

    def evidence(self, k: float) -> dict[str, Any]:
        return {
            "baseline": self.scope,
            "baseline_key": self.key,
            "samples": self.samples,
            "median_ms": round(self.median_ms),
            "mad_log": round(self.mad_log, 4),
            "k": k,
        }


def baseline(scope: str, key: str, durations_ms: Iterable[int]) -> DurationBaseline | None:
    logs = [math.log(d) for d in durations_ms if d >= MIN_HISTORY_MS]
    if not logs:
        return None
    mid = median(logs)
    mad = median(abs(x - mid) for x in logs)
    return DurationBaseline(scope, key, len(logs), mid, mad)


class Baselines:
    """The baselines of every queue and agent with enough history."""

    def __init__(self, by_key: dict[tuple[str, str | None], DurationBaseline]) -> None:
        self._by_key = by_key

    @classmethod
    def from_history(
        cls, history: Iterable[tuple[str | None, str | None, int]], min_samples: int
    ) -> Baselines:
        """`history`: (queue, agent_id, duration_ms) of stored completed calls."""
        queues: dict[str, list[int]] = {}
        agents: dict[tuple[str, str], list[int]] = {}
        for queue, agent, duration_ms in history:
            if queue is None:
                continue
            queues.setdefault(queue, []).append(duration_ms)
            if agent is not None:
                agents.setdefault((queue, agent), []).append(duration_ms)
        by_key: dict[tuple[str, str | None], DurationBaseline] = {}
        for queue, durations in queues.items():
            found = baseline("queue", queue, durations)
            if found is not None and found.samples >= min_samples:
                by_key[(queue, None)] = found
        for (queue, agent), durations in agents.items():
            found = baseline("agent", f"{queue}/{agent}", durations)
            if found is not None and found.samples >= min_samples:
                by_key[(queue, agent)] = found
        return cls(by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def for_call(self, queue: str | None, agent: str | None) -> DurationBaseline | None:
        """The agent's own baseline in the queue if it has one, else the queue's."""
        if queue is None:
            return None
        return self._by_key.get((queue, agent)) or self._by_key.get((queue, None))

    def queue(self, queue: str) -> DurationBaseline | None:
        return self._by_key.get((queue, None))
