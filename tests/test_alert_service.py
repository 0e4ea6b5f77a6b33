"""The alert service on a real database (SQLite and PostgreSQL) and a clock the test owns:
a queue's learned baseline from 200 stored calls; a running call passing the upper bound
raises exactly one alert within 1 s of media time (stored, on the bus, in the call's trace);
a normal call raises none; acknowledge / resolve; a restart keeps open alerts and their
de-duplication."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.settings import AlertSettings
from monitor.events import AlertChanged, AlertRaised, CallFinalised, CallStarted, Marked
from monitor.runtime.alert_service import AlertService
from monitor.runtime.bus import EventBus, Subscription
from monitor.runtime.storage_sink import StorageWriter
from storage.errors import AlertNotFound, InvalidAlertTransition
from storage.records import CallClosed, CallOpened
from storage.repository import Repository
from tests.test_storage_alerts import raised

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MEDIAN_MS = 180_000
SETTINGS = AlertSettings(max_duration_s=0, learned_min_samples=30, media_stall_s=5)


@dataclass
class Clock:
    """Wall clock (UTC) and monotonic seconds, advanced only by the test."""

    now: datetime = NOW
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def opened(call_id: str, started: datetime, queue: str = "billing", agent: str = "a1") -> Any:
    return CallOpened(call_id, f"x-{call_id}", started, "audiofork", 8000, 2, f"{call_id}.wav",
                      (("customer", 0), ("agent", 1)), agent_id=agent, queue=queue)  # fmt: skip


def started(call_id: str, at: datetime, queue: str = "billing", agent: str = "a1") -> Any:
    return CallStarted(call_id, 0, 0, at, f"x-{call_id}", "audiofork", 8000, 2,
                       f"{call_id}.wav", (("customer", 0), ("agent", 1)), agent_id=agent,
                       queue=queue)  # fmt: skip


def finalised(call_id: str, at: datetime, duration_ms: int) -> CallFinalised:
    return CallFinalised(call_id, 9, duration_ms, at, at, "completed", "normal", duration_ms, 1)


def history(n: int = 200, seed: int = 7) -> tuple[list[Any], list[int]]:
    rng = random.Random(seed)
    records: list[Any] = []
    durations = []
    for i in range(n):
        ms = round(math.exp(rng.gauss(math.log(MEDIAN_MS), 0.35)))
        started = NOW - timedelta(days=10, minutes=-i * 7)
        agent = f"a{i % 10}"  # 20 calls per agent: below min_samples, queue baseline only
        records += [opened(f"h{i:03}", started, agent=agent),
                    CallClosed(f"h{i:03}", started + timedelta(milliseconds=ms), "completed",
                               "normal", ms, ms * 8)]  # fmt: skip
        durations.append(ms)
    # Other queues and old calls must not count.
    records += [opened("other", NOW - timedelta(days=1), queue="sales"),
                CallClosed("other", NOW, "completed", "normal", 5_000_000, 1),
                opened("old", NOW - timedelta(days=90)),
                CallClosed("old", NOW, "completed", "normal", 9_000_000, 1)]  # fmt: skip
    return records, durations


@dataclass
class Rig:
    repo: Repository
    clock: Clock
    bus: EventBus = field(default_factory=EventBus)
    writer: StorageWriter | None = None
    service: AlertService | None = None
    seen: Subscription | None = None

    async def start(self) -> list[Any]:
        self.writer = StorageWriter(self.repo, batch_size=50, group_commit_s=0, queue_size=1000,
                                    bus=self.bus)  # fmt: skip
        self.writer.start()
        self.seen = self.bus.subscribe(maxsize=100_000)
        self.service = AlertService(repo=self.repo, storage=self.writer, bus=self.bus,
                                    settings=SETTINGS, clock=lambda: self.clock.now,
                                    monotonic=lambda: self.clock.mono, auto_tick=False)  # fmt: skip
        return await self.service.start()

    async def stop(self) -> None:
        assert self.service and self.writer and self.seen is not None
        await self.service.close()
        await self.writer.close()
        self.seen.close()

    async def put(self, *events: Any) -> None:
        """What a live call publishes: storage and the alert service hear it on the bus."""
        assert self.writer and self.service
        for event in events:
            self.bus.publish(event)
        await self.service.settle()

    async def run_call(self, call_id: str, until_ms: int, step_ms: int = 100) -> list[Any]:
        """Tick a running call from 0 to until_ms, media and wall time together; returns
        (media_ms, alert) for each alert raised."""
        assert self.service
        out = []
        for ms in range(0, until_ms + 1, step_ms):
            self.clock.advance(step_ms / 1000)
            out += [(ms, a) for a in await self.service.tick({call_id: ms})]
        return out

    def alerts_on_bus(self) -> list[Any]:
        assert self.seen is not None
        events = []
        while (event := self.seen.get_nowait()) is not None:
            events.append(event)
        return [e for e in events if isinstance(e, AlertRaised | AlertChanged)]


@pytest.fixture
async def rig(repo: Repository) -> AsyncIterator[Rig]:
    records, _ = history()
    repo.apply(records)
    r = Rig(repo, Clock())
    yield r
    if r.service is not None:
        await r.stop()


async def test_learned_baseline_from_200_stored_calls(rig: Rig) -> None:
    assert await rig.start() == []
    assert rig.service is not None
    _, durations = history()
    logs = sorted(math.log(ms) for ms in durations)
    median = statistics.median(logs)
    mad = statistics.median(abs(x - median) for x in logs)
    base = rig.service.engine.baselines.queue("billing")
    assert base is not None
    assert base.samples == 200
    assert base.median_log == pytest.approx(median, abs=1e-12)
    assert base.mad_log == pytest.approx(mad, abs=1e-12)
    assert base.upper_ms(3) == math.ceil(math.exp(median + 3 * 1.4826 * mad))
    assert rig.service.engine.baselines.for_call("sales", "a1") is None  # 1 call only
    assert rig.service.engine.baselines.for_call("billing", "a3") == base  # agents: too few


async def test_running_call_past_the_bound_raises_exactly_one_alert(rig: Rig) -> None:
    await rig.start()
    assert rig.service is not None and rig.writer is not None
    base = rig.service.engine.baselines.queue("billing")
    assert base is not None
    bound = base.upper_ms(3)
    await rig.put(started("live", rig.clock.now),
                  Marked("live", 1, 0, rig.clock.now, "connected"))  # fmt: skip
    # Seconds at a time up to just below the bound, then 100 ms ticks past it.
    raised = await rig.run_call("live", bound - 2000, step_ms=1000)
    assert raised == []
    start = bound - 2000
    raised = []
    for ms in range(start, bound + 5000, 100):
        rig.clock.advance(0.1)
        raised += [(ms, a) for a in await rig.service.tick({"live": ms})]
    assert len(raised) == 1
    at_ms, alert = raised[0]
    assert bound < at_ms <= bound + 1000  # within 1 s of media time
    assert (alert.rule, alert.kind, alert.severity, alert.call_id) == (
        "duration_long:learned",
        "duration_long",
        "warning",
        "live",
    )
    assert alert.evidence["threshold_ms"] == bound and alert.evidence["samples"] == 200
    await rig.put(finalised("live", rig.clock.now, bound + 5000))
    await rig.writer.drain()
    stored = rig.repo.list_alerts(call_id="live")
    assert [(a.id, a.rule, a.state, a.media_start_ms) for a in stored] == [
        (alert.id, "duration_long:learned", "open", bound)
    ]
    on_bus = rig.alerts_on_bus()
    assert [type(e).__name__ for e in on_bus] == ["AlertRaised"]
    call = rig.repo.get_call("live")
    assert call is not None
    alert_trace = [t for t in call.trace if t.kind == "alert"]
    assert len(alert_trace) == 1 and alert_trace[0].data["alert_id"] == alert.id
    seqs = [t.seq for t in call.trace]
    assert seqs == sorted(set(seqs))  # one numbering: unique, in order


async def test_a_normal_call_raises_none(rig: Rig) -> None:
    await rig.start()
    assert rig.writer is not None
    await rig.put(started("calm", rig.clock.now),
                  Marked("calm", 1, 0, rig.clock.now, "connected"))  # fmt: skip
    assert await rig.run_call("calm", MEDIAN_MS, step_ms=500) == []
    await rig.put(finalised("calm", rig.clock.now, MEDIAN_MS))
    await rig.writer.drain()
    assert rig.repo.list_alerts(call_id="calm") == []
    assert rig.alerts_on_bus() == []


async def raise_one(rig: Rig, call_id: str) -> Any:
    """A call that stalls: media_stalled after 5 s of wall time without audio."""
    assert rig.service is not None and rig.writer is not None
    await rig.put(started(call_id, rig.clock.now))
    assert await rig.service.tick({call_id: 3000}) == []
    rig.clock.advance(5)
    [alert] = await rig.service.tick({call_id: 3000})
    await rig.writer.drain()
    return alert


async def test_acknowledge_and_resolve(rig: Rig) -> None:
    await rig.start()
    assert rig.service is not None
    alert = await raise_one(rig, "s1")
    assert alert.kind == "media_stalled"
    acked = await rig.service.acknowledge(alert.id, "sam")
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_at) == (
        "acknowledged",
        "sam",
        rig.clock.now,
    )
    rig.clock.advance(60)
    done = await rig.service.resolve(alert.id, "kim")
    assert (done.state, done.resolved_by, done.resolved_at) == ("resolved", "kim", rig.clock.now)
    with pytest.raises(InvalidAlertTransition):
        await rig.service.acknowledge(alert.id, "sam")
    changes = [e for e in rig.alerts_on_bus() if isinstance(e, AlertChanged)]
    assert [(c.alert_id, c.state, c.by) for c in changes] == [
        (alert.id, "acknowledged", "sam"),
        (alert.id, "resolved", "kim"),
    ]
    stored = rig.repo.get_alert(alert.id)
    assert stored is not None and stored.state == "resolved"
    assert rig.writer is not None
    await rig.writer.drain()
    call = rig.repo.get_call("s1")
    assert call is not None
    assert [t.kind for t in call.trace] == ["alert", "alert_changed", "alert_changed"]


async def test_restart_keeps_open_alerts_and_their_dedup(repo: Repository) -> None:
    first = Rig(repo, Clock())
    await first.start()
    a1 = await raise_one(first, "s1")
    a2 = await raise_one(first, "s2")
    assert first.service is not None
    await first.service.resolve(a2.id, "sam")
    await first.stop()

    second = Rig(repo, first.clock)
    try:
        still_open = await second.start()
        assert [(a.id, a.state, a.rule) for a in still_open] == [(a1.id, "open", "media_stalled")]
        assert second.service is not None
        # The same call and rule seen again (a replayed stream) raises nothing new.
        await second.put(started("s1", second.clock.now))
        await second.service.tick({"s1": 3000})
        second.clock.advance(10)
        assert await second.service.tick({"s1": 3000}) == []
        # A new alert gets the next id; the open one can still be acknowledged.
        a3 = await raise_one(second, "s3")
        assert a3.id > a2.id  # the next reserved block: never an id in use
        assert (await second.service.acknowledge(a1.id, "kim")).state == "acknowledged"
        assert [a.id for a in repo.list_alerts(state="open")] == [a3.id]
    finally:
        await second.stop()


async def test_a_change_waits_for_an_alert_the_stream_has_not_stored_yet(
    repo: Repository,
) -> None:
    """NATS mode: an alert raised on another node (or here, a moment ago) reaches the database
    through the stream; acknowledging it meanwhile waits for it (`settle_s`) instead of
    answering not found; an id that never comes is still not found."""
    repo.apply([opened("n1", NOW)])
    writer = StorageWriter(repo, batch_size=50, group_commit_s=0, queue_size=1000)
    writer.start()
    service = AlertService(repo=repo, storage=writer, bus=EventBus(), settings=SETTINGS,
                           auto_tick=False, settle_s=3.0)  # fmt: skip

    async def stored_later() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(repo.apply, [raised(777, "n1", "dead_air")])

    try:
        later = asyncio.create_task(stored_later())
        assert (await service.acknowledge(777, "kim")).state == "acknowledged"
        await later
        with pytest.raises(AlertNotFound):
            await service.acknowledge(778, "kim")
    finally:
        await writer.close()
