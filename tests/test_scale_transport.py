"""The JetStream event transport with raw payloads on a real nats-server: in order, at least
once with ack after apply, a board-style subscriber seeing everything, a server restart
mid-stream (buffered, then delivered) and the buffer bound (drops counted, never silent)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from config.settings import BusSettings
from monitor.scale.connect import connect_bus
from monitor.scale.transport import DurableConsumer, EventPublisher, EventSubscriber
from tests.fixtures_nats import NatsEndpoint, PrivateNats

pytestmark = pytest.mark.scaleout


def _bus(ep: NatsEndpoint, **extra: object) -> BusSettings:
    return BusSettings(**ep.settings(prefix=f"ev{time.monotonic_ns()}", **extra))  # type: ignore[arg-type]


class Sink:
    """What a storage writer would apply: (subject, payload, msg_id) in arrival order."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, str]] = []

    async def __call__(self, subject: str, payload: bytes, msg_id: str) -> None:
        self.got.append((subject, payload, msg_id))

    def ids(self) -> list[str]:
        return [m for _, _, m in self.got]

    def first_seen(self) -> list[str]:
        """Ids in order of first arrival: at least once means a message whose ack was lost
        (the server stopped under it) may come again; applying is idempotent by id."""
        return list(dict.fromkeys(self.ids()))


async def _until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_in_order_to_a_durable_consumer_and_to_every_subscriber(
    nats_server: NatsEndpoint,
) -> None:
    bus = _bus(nats_server)
    nc_pub, nc_store, nc_board = [await connect_bus(bus, n) for n in ("node-a", "store", "b")]
    pub = EventPublisher(nc_pub, bus)
    await pub.start()
    board = Sink()
    subscriber = EventSubscriber(nc_board, bus, board)
    await subscriber.start()
    store = Sink()
    consumer = DurableConsumer(nc_store, bus, "storage", store)
    await consumer.start()
    try:
        sent = [(f"call{i % 3}", f"event {i}".encode(), f"call{i % 3}:{i}") for i in range(90)]
        for call_id, payload, msg_id in sent:
            assert pub.publish(call_id, payload, msg_id)
        await _until(lambda: len(store.got) == 90 and len(board.got) == 90, 10, "not delivered")
        assert store.ids() == [m for _, _, m in sent]  # in publish order
        assert sorted(board.ids()) == sorted(store.ids())
        assert store.got[0] == (f"{bus.prefix}.events.call0", b"event 0", "call0:0")
        assert pub.dropped == 0 and pub.published == 90
    finally:
        await consumer.close()
        await subscriber.close()
        await pub.close()
        for nc in (nc_pub, nc_store, nc_board):
            await nc.close()


async def test_at_least_once_ack_after_apply(nats_server: NatsEndpoint) -> None:
    bus = _bus(nats_server)
    nc = await connect_bus(bus, "node")
    pub = EventPublisher(nc, bus)
    await pub.start()
    applied: list[str] = []
    fail_once = {"e3"}

    async def flaky(subject: str, payload: bytes, msg_id: str) -> None:
        if msg_id in fail_once:  # e.g. the database was away: not acked, so redelivered
            fail_once.discard(msg_id)
            raise RuntimeError("database unavailable")
        applied.append(msg_id)

    # A long ack wait: e3 comes back by its nak's 1 s delay, and an applied message must not
    # come back at all (a loaded box once took over 2 s to ack e5, which then came twice).
    consumer = DurableConsumer(nc, bus, "storage", flaky, ack_wait_s=10.0)
    await consumer.start()
    try:
        for i in range(6):
            pub.publish("c1", b"x", f"e{i}")
        await _until(lambda: len(applied) == 6, 15, f"applied {applied}")
        assert sorted(applied) == [f"e{i}" for i in range(6)] and consumer.failed == 1
        # A consumer that stops before acking: its successor (same durable) gets the rest.
        await consumer.close()
        gate = asyncio.Event()

        async def stuck(subject: str, payload: bytes, msg_id: str) -> None:
            await gate.wait()

        consumer = DurableConsumer(nc, bus, "storage", stuck, ack_wait_s=1.0)
        await consumer.start()
        pub.publish("c1", b"y", "e6")
        await asyncio.sleep(0.5)
        await consumer.close()  # died holding e6, never acked
        consumer = DurableConsumer(nc, bus, "storage", flaky, ack_wait_s=1.0)
        await consumer.start()
        await _until(lambda: "e6" in applied, 10, "e6 was not redelivered")
    finally:
        await consumer.close()
        await pub.close()
        await nc.close()


async def _restart_run(
    private_nats: PrivateNats, bus: BusSettings, during_outage: Callable[[EventPublisher], None]
) -> tuple[EventPublisher, Sink, Callable[[], Awaitable[None]]]:
    nc_pub = await connect_bus(bus, "node-a")
    nc_store = await connect_bus(bus, "store")
    drops: list[tuple[str, str, bool]] = []
    pub = EventPublisher(nc_pub, bus, on_drop=lambda s, m, e: drops.append((s, m, e)))
    pub.drops = drops  # type: ignore[attr-defined]
    await pub.start()
    store = Sink()
    consumer = DurableConsumer(nc_store, bus, "storage", store)
    await consumer.start()
    for i in range(10):
        pub.publish("c1", f"before {i}".encode(), f"b{i}")
    await _until(lambda: len(store.got) == 10, 10, "not delivered before the restart")
    private_nats.stop()
    await _until(lambda: not nc_pub.is_connected, 10, "the client did not notice")
    during_outage(pub)
    await asyncio.sleep(0.5)
    private_nats.start()

    async def close() -> None:
        await consumer.close()
        await pub.close()
        await nc_pub.close()
        await nc_store.close()

    return pub, store, close


async def test_nats_restart_mid_stream_buffers_then_delivers(private_nats: PrivateNats) -> None:
    bus = _bus(private_nats.endpoint)

    def outage(pub: EventPublisher) -> None:
        for i in range(40):
            assert pub.publish("c1", f"during {i}".encode(), f"d{i}")
        assert pub.buffered == 40

    pub, store, close = await _restart_run(private_nats, bus, outage)
    try:
        await _until(lambda: len(set(store.ids())) == 50, 30, f"got {len(store.got)}")
        assert store.first_seen() == [f"b{i}" for i in range(10)] + [f"d{i}" for i in range(40)]
        # Only a message delivered before the stop can come twice (its ack was in flight).
        assert set(store.ids()[10:]) - set(store.first_seen()[10:]) <= {f"b{i}" for i in range(10)}
        assert len([m for m in store.ids() if m.startswith("d")]) == 40  # buffered ones: once
        assert pub.dropped == 0 and pub.buffered == 0
    finally:
        await close()


async def test_over_the_buffer_bound_drops_are_counted_and_reported(
    private_nats: PrivateNats,
) -> None:
    bus = _bus(private_nats.endpoint, buffer_events=20)
    kept: list[str] = []

    def outage(pub: EventPublisher) -> None:
        # Readings may fill 80 % of the bound (16); essential events keep the rest.
        for i in range(30):
            if pub.publish("c1", b"reading", f"r{i}", essential=False):
                kept.append(f"r{i}")
        for i in range(6):
            if pub.publish("c1", b"segment", f"s{i}"):
                kept.append(f"s{i}")

    pub, store, close = await _restart_run(private_nats, bus, outage)
    try:
        assert kept == [f"r{i}" for i in range(16)] + [f"s{i}" for i in range(4)]
        assert pub.dropped == 14 + 2 and pub.dropped_essential == 2
        drops = pub.drops  # type: ignore[attr-defined]
        assert [m for _, m, _ in drops] == [f"r{i}" for i in range(16, 30)] + ["s4", "s5"]
        assert all(s == f"{bus.prefix}.events.c1" for s, _, _ in drops)
        await _until(
            lambda: len(set(store.ids())) == 30,
            30,
            f"got {len(store.got)} pub {pub.published} buf {pub.buffered} {pub.resent}",
        )
        assert store.first_seen()[10:] == kept  # what was kept arrives, in order
    finally:
        await close()
