"""The event bus: fan-out in publish order, bounded per subscriber with drop-oldest counted,
close ends iteration, and the storage writer publishes every record it accepts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.runtime.bus import EventBus
from monitor.runtime.storage_sink import StorageWriter
from storage.records import TraceAdded
from storage.repository import Repository
from tests.test_storage_repository import opened


async def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    for i in range(5):
        bus.publish(i)
    assert [await a.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert [await b.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert a.dropped == b.dropped == 0


async def test_a_slow_subscriber_loses_the_oldest_and_counts_them() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=3)
    fast = bus.subscribe(maxsize=100)
    for i in range(10):
        bus.publish(i)
    assert slow.dropped == 7
    assert [slow.get_nowait() for _ in range(3)] == [7, 8, 9]
    assert slow.get_nowait() is None
    assert len(fast) == 10 and fast.dropped == 0


async def test_waiting_iterator_wakes_on_publish_and_ends_on_close() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    got: list[object] = []

    async def consume() -> None:
        async for event in sub:
            got.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    bus.publish("x")
    await asyncio.sleep(0)
    assert got == ["x"]
    bus.publish("y")
    sub.close()  # the waiting event is still delivered, then iteration ends
    await asyncio.wait_for(task, 1)
    assert got == ["x", "y"]
    assert bus.subscribers == 0
    bus.publish("z")  # no one listens: nothing queued anywhere
    assert sub.get_nowait() is None


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        EventBus().subscribe(maxsize=0)


async def test_storage_writer_publishes_each_accepted_record(tmp_path: Path) -> None:
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'cw.db'}")
    repo.upgrade()
    bus = EventBus()
    sub = bus.subscribe()
    writer = StorageWriter(repo, batch_size=10, group_commit_s=0, queue_size=10, bus=bus)
    writer.start()
    try:
        now = datetime.now(UTC)
        records = [opened("c1"), TraceAdded("c1", 0, "connected", now, 0)]
        await writer.put_many(records)
        await writer.drain()
        assert [sub.get_nowait() for _ in range(2)] == records
        call = repo.get_call("c1")
        assert call is not None and [t.kind for t in call.trace] == ["connected"]
    finally:
        await writer.close()
        repo.close()
