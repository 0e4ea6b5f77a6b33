"""A node's typed events through NATS (scale-out): the bridge on the node's bus publishes
every event of its calls, the shared durable storage consumer stores them in PostgreSQL,
and over the buffer bound (NATS away) the sheddable ones are dropped first, counted and
traced per call, while the essential ones are kept and stored after reconnection. Real
nats-server (a private one, stopped and started), real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text

from config.settings import BusSettings
from monitor.events import CallEvent
from monitor.runtime.bus import EventBus
from monitor.scale.connect import connect_bus
from monitor.scale.node_events import EventBridge, FloorFeed, StorageConsumer
from monitor.scale.transport import EventPublisher
from storage.repository import Repository
from tests.call_events import ended, finalised, reading, segment, started
from tests.fixtures_nats import NatsEndpoint, PrivateNats

pytestmark = pytest.mark.scaleout


async def _until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def _count(repo: Repository, table: str, call_id: str) -> int:
    with repo.engine.connect() as conn:
        q = text(f"SELECT count(*) FROM {table} WHERE call_id = :c")
        return int(conn.execute(q, {"c": call_id}).scalar_one())


def _status(repo: Repository, call_id: str) -> str | None:
    with repo.engine.connect() as conn:
        q = text("SELECT status FROM calls WHERE id = :c")
        return conn.execute(q, {"c": call_id}).scalar()


async def test_over_the_bound_readings_go_first_counted_and_traced_per_call(
    private_nats: PrivateNats, pg_repo: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    bus = BusSettings(**private_nats.endpoint.settings(prefix=f"ne{time.monotonic_ns()}",
                                                        buffer_events=30))  # type: ignore[arg-type]  # fmt: skip
    nc_node, nc_store, nc_board = [await connect_bus(bus, n) for n in ("node", "store", "b")]
    local = EventBus()
    bridge = EventBridge(EventPublisher(nc_node, bus, on_drop=lambda *a: bridge.dropped(*a)), "a")
    await bridge.publisher.start()
    local.attach(bridge.accept)
    store = StorageConsumer(nc_store, bus, pg_repo)
    await store.start()
    # Node a's board hears its own events from its bus, and not again through NATS; node
    # b's board hears them through NATS.
    floor_a, floor_b = EventBus(), EventBus()
    local.attach(floor_a.publish)
    board_a, board_b = floor_a.subscribe(), floor_b.subscribe()
    other = EventBridge(EventPublisher(nc_board, bus), "b")
    feeds = [FloorFeed(nc_node, bus, floor_a, bridge), FloorFeed(nc_board, bus, floor_b, other)]
    for feed in feeds:
        await feed.start()
    try:
        local.publish(started("c1"))
        await _until(lambda: pg_repo.get_call("x-c1") is not None, 20, "call not stored")
        await _until(lambda: len(board_b) == 1, 10, "node b's board did not hear the call")
        await asyncio.sleep(0.3)
        assert len(board_a) == 1 and feeds[0].applied == 0  # its own: once, not from NATS

        private_nats.stop()
        await _until(lambda: not nc_node.is_connected, 10, "the client did not notice")
        caplog.set_level(logging.WARNING, logger="callwatch.bus.events")
        events: list[CallEvent] = [reading("c1", "agent", i) for i in range(30)]
        events += [segment("c1", "agent", i * 1000, i * 1000 + 500, f"s{i}", seq=200 + i)
                   for i in range(4)]  # fmt: skip
        events += [ended("c1", seq=300), finalised("c1", seq=301)]
        for e in events:
            local.publish(e)
        pub = bridge.publisher
        # Readings may fill 80 % of the bound (24 of 30); the rest stays for essentials.
        assert pub.dropped == 6 and pub.dropped_essential == 0
        assert bridge.dropped_by_call == {"c1": 6}
        traced = [r for r in caplog.records if "of call c1 dropped" in r.getMessage()]
        assert traced and traced[0].levelno == logging.WARNING
        private_nats.start()

        await _until(lambda: pub.buffered == 0, 30, "buffer not sent after reconnection")
        await _until(lambda: _count(pg_repo, "segments", "c1") == 4, 30, "segments not stored")
        await _until(lambda: _status(pg_repo, "c1") == "completed", 30, "call not closed")
        assert _count(pg_repo, "quality_readings", "c1") == 24  # what was kept, stored once
    finally:
        for feed in feeds:
            await feed.close()
        await store.close()
        await bridge.publisher.close(timeout_s=1)
        for nc in (nc_node, nc_store, nc_board):
            await nc.close()


async def test_caught_up_means_every_event_in_the_stream_is_stored(
    nats_server: NatsEndpoint, pg_repo: Repository
) -> None:
    """What a restarting node waits for before it recovers its calls from the database: the
    events its last run sent (still in the stream) are stored first."""
    bus = BusSettings(**nats_server.settings(prefix=f"cu{time.monotonic_ns()}"))  # type: ignore[arg-type]
    nc_node, nc_store = [await connect_bus(bus, n) for n in ("node", "store")]
    bridge = EventBridge(EventPublisher(nc_node, bus), "a")
    await bridge.publisher.start()
    for e in [started("c9"), segment("c9", "agent", 0, 900, "hi", seq=1),
              ended("c9", seq=2), finalised("c9", seq=3)]:  # fmt: skip
        bridge.accept(e)
    await bridge.publisher.close()  # sent, and nobody has stored them yet
    assert bridge.publisher.dropped == 0 and _status(pg_repo, "c9") is None
    store = StorageConsumer(nc_store, bus, pg_repo)
    await store.start()
    try:
        assert await store.caught_up(20)
        assert _status(pg_repo, "c9") == "completed"  # at once, no waiting in the test
        assert _count(pg_repo, "segments", "c9") == 1
    finally:
        await store.close()
        for nc in (nc_node, nc_store):
            await nc.close()
