"""BoardHub: the real event bus and a real SQLite database (through the repository's
`BoardReader`) feeding browsers' queues."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.board.hub import FAN_OUT_SLICE, SNAPSHOT, BoardHub, Client, frame_messages
from monitor.runtime.bus import EventBus
from monitor.web.api.board_reader import RepositoryBoardReader
from storage.records import AlertRaised, CallClosed, CallOpened, CallScored, SegmentAdded
from storage.repository import Repository
from tests.call_events import alert_raised, segment, started

NOW = datetime.now(UTC)


def opened(call_id: str) -> CallOpened:
    return CallOpened(
        call_id=call_id, external_id=f"x-{call_id}", started_at=NOW, protocol="audiofork",
        sample_rate=8000, channels=2, recording_path=f"{call_id}.wav",
        parties=(("customer", 0), ("agent", 1)), agent_id="1031", queue="billing",
    )  # fmt: skip


@pytest.fixture
def sqlite_repo(tmp_path: Path) -> Iterator[Repository]:
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'cw.db'}")
    repo.upgrade()
    yield repo
    repo.close()


async def drain(client: Client, until: float = 1.0) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []  # decoded messages; None = snapshot requested
    deadline = asyncio.get_running_loop().time() + until
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        frame = await client.next(left)
        if frame == SNAPSHOT:
            out.append(None)
        elif frame is not None:
            out.extend(frame_messages(frame))
    return out


async def test_seeds_from_database_then_follows_the_bus(sqlite_repo: Repository) -> None:
    # a call already live (and one finished today) before the board starts
    sqlite_repo.apply([opened("old"), SegmentAdded("old", "agent", 0, 900, "hello", "en", 0.9)])
    sqlite_repo.apply([opened("done"), CallScored("done", 90.0, "excellent", 90.0, 100.0),
                       CallClosed("done", NOW, "completed", "normal", 60_000, 1)])  # fmt: skip
    sqlite_repo.apply(
        [AlertRaised(5, "old", "dead_air", "dead_air", "warning", NOW, 0, None, "gap")]
    )
    bus = EventBus()
    hub = BoardHub(bus, RepositoryBoardReader(sqlite_repo), interval_s=0.05, tick_s=0.02)
    await hub.ensure_started()
    try:
        snap = hub.state.snapshot()
        assert [c["call_id"] for c in snap["calls"]] == ["old"]
        assert snap["calls"][0]["parties"]["agent"]["lines"][0]["text"] == "hello"
        assert snap["kpis"]["avg_handle_ms"] == 60_000 and snap["kpis"]["compliance_rate"] == 100
        assert [(a["id"], a["state"]) for a in snap["alerts"]] == [(5, "open")]
        assert (
            snap["calls"][0]["alerts"][0]["kind"] == "dead_air" and snap["kpis"]["open_alerts"] == 1
        )
        client = hub.join()
        t0 = asyncio.get_running_loop().time()
        bus.publish(started("new"))
        frame = await client.next(1.0)
        assert frame is not None and frame_messages(frame)[0]["call"]["call_id"] == "new"
        assert asyncio.get_running_loop().time() - t0 < 1.0  # within 1 s of the event
        bus.publish(segment("new", "customer", 0, 800, "我想查账单"))
        bus.publish(alert_raised(1, "new", "dead_air", "dead_air", "warning", NOW, 0, None, "gap"))
        msgs = [m for m in await drain(client, 0.5) if m is not None]
        cards = [m["call"] for m in msgs if m["type"] == "call" and m["call"]["call_id"] == "new"]
        assert cards[-1]["parties"]["customer"]["lines"][0]["text"] == "我想查账单"
        assert cards[-1]["alerts"][0]["kind"] == "dead_air"
        assert any(m["type"] == "alert" for m in msgs)
        seqs = [m["seq"] for m in msgs]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gapless for a live client
    finally:
        await hub.close()


async def test_slow_browser_gets_a_snapshot_instead_of_a_backlog(sqlite_repo: Repository) -> None:
    bus = EventBus()
    hub = BoardHub(
        bus, RepositoryBoardReader(sqlite_repo), interval_s=0.0, tick_s=0.01, max_backlog=5
    )
    await hub.ensure_started()
    try:
        client = hub.join()
        for i in range(20):
            bus.publish(started(f"c{i}"))
        await asyncio.sleep(0.2)
        assert client.backlog <= 5 and client.resyncs >= 1
        assert client.take() == SNAPSHOT and client.take() is None  # not the backlog too
    finally:
        await hub.close()


async def test_bus_overflow_reseeds_from_the_database(sqlite_repo: Repository) -> None:
    bus = EventBus()
    hub = BoardHub(
        bus, RepositoryBoardReader(sqlite_repo), interval_s=0.0, tick_s=0.01, bus_maxsize=5
    )
    await hub.ensure_started()
    try:
        client = hub.join()
        sqlite_repo.apply([opened("db-only")])  # stored; its bus event is among those lost
        for i in range(10):  # more than the subscription holds, before the hub runs again
            bus.publish(started("db-only") if i == 0 else segment("x", "agent", 0, 1, ""))
        await asyncio.sleep(0.2)
        assert "db-only" in hub.state.calls and client.resyncs == 1
    finally:
        await hub.close()


async def test_today_kpis_count_every_call_of_the_day(sqlite_repo: Repository) -> None:
    """After a restart the KPI strip starts from all of today's calls, totalled in SQL: more
    than the 1,000 a call listing returns."""
    n = 1_200
    records: list[object] = []
    for i in range(n):
        grade = "needs_improvement" if i % 4 == 0 else "good"
        records += [
            opened(f"c{i}"),
            CallScored(f"c{i}", 70.0, grade, 70.0, 60.0 if i % 2 else 80.0),
            CallClosed(f"c{i}", NOW, "completed", "normal", 10_000 + i, 1),
        ]
    sqlite_repo.apply(records)  # type: ignore[arg-type]
    sqlite_repo.apply([opened("live")])  # still active: not handled yet
    hub = BoardHub(EventBus(), RepositoryBoardReader(sqlite_repo), interval_s=0.05, tick_s=0.02)
    await hub.ensure_started()
    try:
        k = hub.state.snapshot()["kpis"]
        assert k["handled_today"] == n
        assert k["needs_improvement"] == n // 4
        assert k["avg_handle_ms"] == pytest.approx(10_000 + (n - 1) / 2, abs=1)
        assert k["compliance_rate"] == pytest.approx(70.0)
    finally:
        await hub.close()


async def test_a_tick_is_one_frame_encoded_once_for_every_browser(
    sqlite_repo: Repository,
) -> None:
    """30 calls appearing at once reach each browser as one frame (a JSON array of their
    cards, in seq order), the same encoded text for every browser: the fan-out costs one
    send per browser per tick, not one per message (RELIABILITY.md L3)."""
    bus = EventBus()
    hub = BoardHub(bus, RepositoryBoardReader(sqlite_repo), interval_s=10.0, tick_s=0.05)
    await hub.ensure_started()
    try:
        browsers = [hub.join() for _ in range(3)]
        for i in range(30):
            bus.publish(started(f"c{i}"))
        frames = [await b.next(1.0) for b in browsers]
        assert frames[0] is not None and frames[0] != SNAPSHOT
        assert frames[0] is frames[1] is frames[2]  # encoded once, shared
        msgs = frame_messages(frames[0])
        assert [m["call"]["call_id"] for m in msgs if m["type"] == "call"] == [
            f"c{i}" for i in sorted(range(30), key=str)
        ]
        seqs = [m["seq"] for m in msgs]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        await hub.close()


async def test_a_slow_browser_gets_the_waiting_ticks_as_one_frame(sqlite_repo: Repository) -> None:
    bus = EventBus()
    hub = BoardHub(bus, RepositoryBoardReader(sqlite_repo), interval_s=0.0, tick_s=0.02)
    await hub.ensure_started()
    try:
        client = hub.join()
        for i in range(4):  # four ticks' worth, not read in between
            bus.publish(started(f"c{i}"))
            await asyncio.sleep(0.08)
        assert client.backlog >= 4
        frame = client.take()
        assert frame is not None and frame != SNAPSHOT
        msgs = frame_messages(frame)
        seqs = [m["seq"] for m in msgs]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, none lost
        assert {m["call"]["call_id"] for m in msgs if m["type"] == "call"} == {
            "c0", "c1", "c2", "c3"
        }  # fmt: skip
        assert client.backlog == 0 and client.take() is None
    finally:
        await hub.close()


async def test_the_fan_out_wakes_a_slice_of_browsers_per_loop_turn(
    sqlite_repo: Repository,
) -> None:
    """200 browsers are not all woken in one event-loop turn (their sends would hold the loop,
    and the calls' audio, for the whole fan-out): at most `FAN_OUT_SLICE` per turn."""
    bus = EventBus()
    hub = BoardHub(bus, RepositoryBoardReader(sqlite_repo), tick_s=0.05)
    await hub.ensure_started()
    try:
        browsers = [hub.join() for _ in range(200)]
        bus.publish(started("c1"))
        woken: list[int] = []
        deadline = asyncio.get_running_loop().time() + 2.0
        while (n := sum(b.backlog > 0 for b in browsers)) < len(browsers):
            assert asyncio.get_running_loop().time() < deadline, woken
            if n:
                woken.append(n)
            await asyncio.sleep(0)  # one loop turn
        steps = [b - a for a, b in zip([0, *woken], [*woken, len(browsers)], strict=True)]
        assert max(steps) <= FAN_OUT_SLICE and len(steps) >= len(browsers) // FAN_OUT_SLICE
    finally:
        await hub.close()
