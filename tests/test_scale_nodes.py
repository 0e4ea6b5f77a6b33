"""Node heartbeats and node loss on a real NATS (KV with TTL) and a real PostgreSQL: a dead
node's active calls become interrupted / node_lost once its heartbeat expires, the living
nodes' calls are untouched, each call is closed once however many survivors sweep, and a
restarting node recovers only its own calls."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.settings import BusSettings, load_settings
from monitor.events import CallFinalised
from monitor.runtime.bus import EventBus
from monitor.runtime.recovery import recover_interrupted
from monitor.scale.connect import connect_bus
from monitor.scale.heartbeat import NodeHeartbeat
from monitor.scale.node_events import EventBridge, FloorFeed
from storage.nodes import close_lost_calls
from storage.records import CallEnded, CallOpened
from storage.repository import Repository
from tests.fixtures_nats import NatsEndpoint

pytestmark = pytest.mark.scaleout


def _open(repo: Repository, call_id: str, node: str | None) -> None:
    parties = (("customer", 0), ("agent", 1))
    repo.apply([CallOpened(call_id, f"ext-{call_id}", datetime.now(UTC), "audiofork", 8000, 2,
                           f"{call_id}.wav", parties, node=node)])  # fmt: skip


def _status(repo: Repository, call_id: str) -> tuple[str, str | None]:
    call = repo.get_call(call_id)
    assert call is not None
    return call.status, call.end_reason


async def test_a_dead_nodes_calls_end_node_lost(
    nats_server: NatsEndpoint, pg_repo: Repository
) -> None:
    bus = BusSettings(**nats_server.settings(prefix=f"hb{time.monotonic_ns()}",  # type: ignore[arg-type]
                                             heartbeat_s=0.2, node_ttl_s=1.5))  # fmt: skip
    for call_id, node in (("a1", "gw-a"), ("b1", "gw-b"), ("b2", "gw-b")):
        _open(pg_repo, call_id, node)
    nc_a, nc_b = await connect_bus(bus, "gw-a"), await connect_bus(bus, "gw-b")
    lost: list[tuple[str, list[str]]] = []
    a = NodeHeartbeat(
        nc_a, bus, "gw-a", pg_repo.engine, on_lost=lambda n, ids: lost.append((n, ids))
    )
    b = NodeHeartbeat(nc_b, bus, "gw-b", pg_repo.engine)
    await a.start()
    await b.start()
    try:
        await asyncio.sleep(1.0)
        assert await a.sweep() == {} and await b.sweep() == {}  # both alive: nothing closed
        assert _status(pg_repo, "b1") == ("active", None)
        # gw-b dies without a word: its heartbeat task and connection just stop.
        assert b._task is not None
        b._task.cancel()
        await nc_b.close()
        died = time.monotonic()
        while not lost:
            assert time.monotonic() - died < 1.5 + 6.0, "gw-b's calls were not closed in time"
            await asyncio.sleep(0.1)
        assert time.monotonic() - died >= 1.0  # not before the heartbeat expired
        assert _status(pg_repo, "b1") == _status(pg_repo, "b2") == ("interrupted", "node_lost")
        assert _status(pg_repo, "a1") == ("active", None)  # the survivor's own call goes on
        assert lost == [("gw-b", ["b1", "b2"])]
        trace = pg_repo.get_call("b1").trace  # type: ignore[union-attr]
        assert trace[-1].kind == "finalised" and trace[-1].data["reason"] == "node_lost"
    finally:
        await a.close()
        await nc_a.close()


def test_each_lost_call_is_closed_once(pg_repo: Repository) -> None:
    _open(pg_repo, "c1", "gw-x")
    now = datetime.now(UTC)
    assert close_lost_calls(pg_repo.engine, "gw-x", now) == ["c1"]
    assert close_lost_calls(pg_repo.engine, "gw-x", now) == []  # a second survivor: no-op
    trace = pg_repo.get_call("c1").trace  # type: ignore[union-attr]
    assert [t.kind for t in trace].count("finalised") == 1


def test_a_restarting_node_recovers_only_its_own_calls(
    pg_repo: Repository, pg_database_url: str, tmp_path: Path
) -> None:
    _open(pg_repo, "mine", "gw-a")
    _open(pg_repo, "theirs", "gw-b")
    # gw-b's other call has hung up and waits for its last transcripts (no verdict yet).
    _open(pg_repo, "theirs-ending", "gw-b")
    pg_repo.apply([CallEnded(call_id="theirs-ending", ended_at=datetime.now(UTC),
                             status="completed", end_reason="hangup", duration_ms=1000,
                             recording_frames=8000, transcripts_pending=1)])  # fmt: skip
    settings = load_settings(env={}, data_dir=tmp_path, storage={"url": pg_database_url},
                             node={"name": "gw-a"}, bus={"url": "nats://127.0.0.1:1",
                             "credentials": {"user": "u", "password": "p"}})  # fmt: skip
    assert recover_interrupted(pg_repo, settings) == ["mine"]
    assert _status(pg_repo, "mine") == ("interrupted", "server_crash")
    assert _status(pg_repo, "theirs") == ("active", None)
    ending = pg_repo.get_call("theirs-ending")
    assert ending is not None and not any(t.kind == "finalised" for t in ending.trace)


async def test_a_lost_nodes_calls_reach_a_board_whose_notice_never_came(
    nats_server: NatsEndpoint, pg_repo: Repository
) -> None:
    """gw-a closes dead gw-b's call, and its NATS notice is lost (gw-a's announce failed, or
    gw-a died right after its commit). gw-c's board still drops the call: gw-c's heartbeat
    finds it in the database (`reconcile`, also while the bus is down) and its floor feed
    publishes the node_lost end once, however often it is told."""
    bus = BusSettings(**nats_server.settings(prefix=f"rc{time.monotonic_ns()}"))  # type: ignore[arg-type]
    _open(pg_repo, "b9", "gw-b")
    nc_a, nc_c = await connect_bus(bus, "gw-a"), await connect_bus(bus, "gw-c")
    floor = EventBus()
    board = floor.subscribe()
    # gw-c's floor feed, never subscribed to the notices: only its heartbeat can tell it.
    feed = FloorFeed(nc_c, bus, floor, EventBridge(None, "gw-c"))  # type: ignore[arg-type]
    a = NodeHeartbeat(nc_a, bus, "gw-a", pg_repo.engine, on_lost=lambda n, ids: None)

    def tell_board(node: str, ids: list[str]) -> None:
        feed.tell_lost(ids)

    c = NodeHeartbeat(nc_c, bus, "gw-c", pg_repo.engine, on_lost=tell_board)
    await a.start()
    await c.start()
    try:
        assert await a.sweep() == {"gw-b": ["b9"]}  # gw-b never beat: lost; no notice sent
        assert await c.sweep() == {}  # already closed: nothing for gw-c to close
        assert await c.reconcile() == ["b9"]
        end = board.get_nowait()
        assert isinstance(end, CallFinalised) and end.call_id == "b9"
        assert (end.status, end.end_reason) == ("interrupted", "node_lost")
        assert await c.reconcile() == []  # told once
        assert feed.tell_lost(["b9"]) == []  # the late notice too: the board hears it once
        assert board.get_nowait() is None
    finally:
        await a.close()
        await c.close()
        await nc_a.close()
        await nc_c.close()
