"""The ASR queue's scheduling and overload contract (monitor/runtime/asr_service.py).

The pool is a scripted stand-in that holds each batch until the test releases it, so the
order in which the service hands out work is deterministic; the decoding itself is covered
by the engine tests and tests/test_e2e_call.py.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from asr.language import LanguageTracker
from asr.types import AsrRequest, AsrResult
from monitor.core.events import Party, UtteranceEnded
from monitor.runtime.asr_service import AsrJob, AsrService

RATE = 16_000


class HeldPool:
    """Runs `workers` batches at once; each waits until `release()`; replies per request."""

    def __init__(self, workers: int = 1, language: str = "zh", p: float = 0.97) -> None:
        self.worker_count = workers
        self.batches: list[list[AsrRequest]] = []
        self.fail_next = 0
        self._language, self._p = language, p
        self._gates: list[asyncio.Event] = []
        self.started = asyncio.Event()

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        self.batches.append(requests)
        gate = asyncio.Event()
        self._gates.append(gate)
        self.started.set()
        await gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("worker died")
        return [
            AsrResult(
                f"text {len(r.audio)}",
                r.language or r.locked_language or self._language,
                0.9,
                len(r.audio) / RATE,
                0.1,
                language_p=None if (r.language or r.locked_language) else self._p,
            )
            for r in requests
        ]

    def release(self) -> None:
        for gate in self._gates:
            gate.set()


def utterance(seconds: float, party: Party = Party.CUSTOMER) -> UtteranceEnded:
    n = int(seconds * RATE)
    return UtteranceEnded(party, 0, n, np.full(n, 1000, dtype=np.int16), int(seconds * 1000), False)


class Done:
    def __init__(self) -> None:
        self.calls: list[tuple[AsrJob, AsrResult | None, str | None]] = []

    def __call__(self, job: AsrJob, result: AsrResult | None, problem: str | None) -> None:
        self.calls.append((job, result, problem))


def job(done: Done, seconds: float, age_s: float = 0.0, **kw: object) -> AsrJob:
    return AsrJob(
        utterance(seconds),
        kw.pop("language", None),  # type: ignore[arg-type]
        done,
        ended_at=time.monotonic() - age_s,
        **kw,  # type: ignore[arg-type]
    )


async def settle(pool: HeldPool, done: Done, count: int) -> None:
    """Release batches until `count` jobs are done."""
    async with asyncio.timeout(5):
        while len(done.calls) < count:
            pool.release()
            await asyncio.sleep(0.01)


@pytest.fixture
def done() -> Done:
    return Done()


async def test_oldest_speech_first_across_calls(done: Done) -> None:
    pool = HeldPool()
    service = AsrService(pool, queue_size=10, batch_size=1)
    service.start()
    service.submit(job(done, 1.0, age_s=0.0))  # taken at once: the worker is idle
    await pool.started.wait()
    newer, older, oldest = job(done, 2.0, 0.1), job(done, 3.0, 0.5), job(done, 4.0, 0.9)
    for j in (newer, older, oldest):
        service.submit(j)
    await settle(pool, done, 4)
    assert [c[0] for c in done.calls[1:]] == [oldest, older, newer]
    assert service.live == 4 and service.late == 0 and not service.overloaded
    await service.close()


async def test_no_worker_idles_while_work_waits(done: Done) -> None:
    pool = HeldPool(workers=2)
    service = AsrService(pool, queue_size=10, batch_size=8)
    service.start()
    service.submit(job(done, 1.0))
    service.submit(job(done, 1.0))
    await asyncio.sleep(0.05)
    # Two waiting jobs and two idle workers: one each, not a batch of two.
    assert [len(b) for b in pool.batches] == [1, 1]
    await settle(pool, done, 2)
    await service.close()


async def test_batch_takes_head_then_similar_windows_of_its_language(done: Done) -> None:
    pool = HeldPool()
    service = AsrService(pool, queue_size=10, batch_size=4, window_margin_s=3.0)
    service.start()
    service.submit(job(done, 1.0))  # occupies the worker
    await pool.started.wait()
    head = job(done, 2.0, 0.9, language="zh")
    long_zh = job(done, 20.0, 0.8, language="zh")
    en = job(done, 2.0, 0.7, language="en")
    near_zh = job(done, 2.5, 0.6, language="zh")
    for j in (long_zh, en, near_zh, head):
        service.submit(j)
    await settle(pool, done, 5)
    second = pool.batches[1]
    assert [len(r.audio) for r in second] == [len(head.utterance.audio), 40_000]
    assert all(r.language == "zh" for r in second)
    await service.close()


async def test_live_work_past_its_budget_is_served_after_fresh_work_and_flagged_late(
    done: Done,
) -> None:
    pool = HeldPool()
    service = AsrService(pool, queue_size=10, batch_size=1, live_budget_s=2.0)
    service.start()
    service.submit(job(done, 1.0))
    await pool.started.wait()
    stale, fresh = job(done, 1.0, age_s=5.0), job(done, 1.0, age_s=0.1)
    service.submit(stale)
    service.submit(fresh)
    assert service.overloaded and service.catchup_backlog == 1
    assert service.backlog_s == pytest.approx(2.0)
    await settle(pool, done, 3)
    assert [c[0] for c in done.calls[1:]] == [fresh, stale]
    assert stale.late and not fresh.late and done.calls[2][1] is not None
    assert (service.live, service.late, service.deferred) == (2, 1, 0)
    assert not service.overloaded
    await service.close()


async def test_live_lane_over_its_bound_moves_the_oldest_to_catch_up(done: Done) -> None:
    pool = HeldPool()
    service = AsrService(pool, queue_size=2, batch_size=1)
    service.start()
    service.submit(job(done, 1.0))
    await pool.started.wait()
    jobs = [job(done, 1.0, age_s=1.0 - i * 0.1) for i in range(4)]
    for j in jobs:
        service.submit(j)
    assert [j.late for j in jobs] == [True, True, False, False]
    await settle(pool, done, 5)
    assert [c[0] for c in done.calls[1:]] == [jobs[2], jobs[3], jobs[0], jobs[1]]
    assert all(c[1] is not None for c in done.calls)
    await service.close()


async def test_catch_up_past_its_audio_bound_defers_and_takes_the_span_back(done: Done) -> None:
    pool = HeldPool()
    service = AsrService(pool, queue_size=10, batch_size=1, live_budget_s=1.0, catchup_max_s=5.0)
    service.start()
    service.submit(job(done, 1.0))
    await pool.started.wait()
    kept, over = job(done, 4.0, age_s=3.0), job(done, 2.0, age_s=2.0)
    service.submit(kept)
    service.submit(over)
    # `over` would take the catch-up lane to 6 s: its audio is released, the call is told.
    assert done.calls == [(over, None, "deferred")]
    assert over.utterance.audio.size == 0 and over.utterance.end_sample == 32_000
    assert service.deferred == 1 and service.catchup_backlog == 1
    # The call re-reads the span from its recording and hands it back.
    over.utterance = utterance(2.0)
    service.submit_catchup(over)
    await settle(pool, done, 4)
    results = {id(c[0]): c for c in done.calls if c[1] is not None}
    assert results[id(over)][0].late and results[id(kept)][0].late
    assert service.late == 2 and service.backlog == 0
    await service.close()


async def test_a_dead_worker_costs_a_retry_not_the_utterance(done: Done) -> None:
    pool = HeldPool()
    pool.fail_next = 1
    service = AsrService(pool, queue_size=10, batch_size=1)
    service.start()
    j = job(done, 1.0)
    service.submit(j)
    await settle(pool, done, 1)
    assert done.calls[0][1] is not None and j.late and len(pool.batches) == 2
    pool.fail_next = 2
    k = job(done, 1.0)
    service.submit(k)
    await settle(pool, done, 2)
    assert done.calls[1] == (k, None, "error:OSError") and service.failed == 1
    await service.close()


async def test_a_hung_batch_times_out_per_utterance_and_the_next_is_served(done: Done) -> None:
    """B3: a model that never answers costs each utterance of its batch one timeout (not a
    retry: the same audio would hang again), and the queue moves on."""
    pool = HeldPool()  # holds every batch until released: hung, as long as we do not
    service = AsrService(pool, queue_size=10, batch_size=1, utterance_timeout_s=0.2)
    service.start()
    hung, after = job(done, 1.0), job(done, 1.0, age_s=-1)
    service.submit(hung)
    service.submit(after)
    started = time.monotonic()
    await settle(HeldPool(), done, 2)  # releases nothing of `pool`: it stays hung
    # Each in its own batch, each given up after 0.2 s: the first never blocks the second.
    assert [(j, r, p) for j, r, p in done.calls] == [(hung, None, "timeout"),
                                                     (after, None, "timeout")]  # fmt: skip
    assert 0.4 <= time.monotonic() - started < 2.0 and len(pool.batches) == 2
    assert service.timed_out == 2 and service.failed == 0 and service.in_flight == 0
    assert service.counters()["timed_out"] == 2
    third = job(done, 1.0)
    service.submit(third)
    await settle(pool, done, 3)  # a model that answers again: transcribed as usual
    assert done.calls[2][0] is third and done.calls[2][1] is not None
    await service.close()


async def test_the_party_language_locks_after_two_confident_detections(done: Done) -> None:
    pool = HeldPool(language="zh", p=0.95)
    service = AsrService(pool, queue_size=10, batch_size=1)
    service.start()
    tracker = LanguageTracker(lock_p=0.9, lock_after=2)
    for n in range(3):
        service.submit(job(done, 1.0, tracker=tracker))
        await settle(pool, done, n + 1)
    assert [r.locked_language for b in pool.batches for r in b] == [None, None, "zh"]
    assert tracker.locked == "zh"
    await service.close()


async def test_close_reports_every_waiting_job(done: Done) -> None:
    pool = HeldPool()
    service = AsrService(pool, queue_size=10, batch_size=1, live_budget_s=1.0)
    service.start()
    service.submit(job(done, 1.0))
    await pool.started.wait()
    service.submit(job(done, 1.0, age_s=5.0))  # catch-up
    service.submit(job(done, 1.0))  # live
    await service.close()
    assert sorted(c[2] or "" for c in done.calls) == ["shutdown"] * 3


async def test_overload_and_recovery_are_logged_with_what_to_do(
    done: Done, caplog: pytest.LogCaptureFixture
) -> None:
    pool = HeldPool()
    service = AsrService(pool, queue_size=10, batch_size=1, live_budget_s=1.0)
    service.start(report_every_s=0.02)
    service.submit(job(done, 1.0))
    await pool.started.wait()
    service.submit(job(done, 1.0, age_s=5.0))
    with caplog.at_level("INFO", logger="callwatch.asr"):
        await asyncio.sleep(0.1)
        assert "asr overloaded" in caplog.text and "add ASR workers" in caplog.text
        await settle(pool, done, 2)
        await asyncio.sleep(0.1)
    assert "no longer overloaded" in caplog.text
    assert "asr counters: submitted=2 live=1 late=1" in caplog.text
    await service.close()
