"""The event bus: fan-out in publish order, bounded per subscriber with drop-oldest counted,
close ends iteration, and attached listeners (the storage writer) hear every event in line.
(The writer's own behaviour: tests/test_storage_sink.py.)"""

from __future__ import annotations

import asyncio

import pytest

from monitor.runtime.bus import EventBus


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


async def test_attached_listeners_hear_every_event_first_and_in_order() -> None:
    bus = EventBus()
    heard: list[object] = []
    sub = bus.subscribe()
    bus.attach(lambda e: heard.append((e, len(sub))))  # type: ignore[arg-type,func-returns-value]
    for i in range(3):
        bus.publish(i)  # type: ignore[arg-type]
    assert heard == [(0, 0), (1, 1), (2, 2)]  # before the subscriptions got it
    assert [sub.get_nowait() for _ in range(3)] == [0, 1, 2]
