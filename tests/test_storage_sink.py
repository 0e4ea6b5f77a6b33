"""The storage writer as a bus subscriber, on a real SQLite database: it stores what the bus
carries; only "database unavailable" is retried; any other failure is isolated to the bad row
(the rest of its batch is stored, the bad one logged with its traceback); under pressure
readings and trace rows are shed and counted while lifecycle rows, segments and findings are
kept; and a stalled database never stalls a call's recorder (the recording stays
sample-exact), not even for a call that starts during the stall."""

from __future__ import annotations

import asyncio
import logging
import threading
import wave
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audio_quality.records import QualityReading
from ivr_sim import stream_call
from ivr_sim.stream import call_metadata
from monitor.events import CallSequencer, CallStarted, Marked, ReadingTaken, SegmentTranscribed
from monitor.runtime.bus import EventBus
from monitor.runtime.storage_sink import StorageWriter
from storage.errors import StorageUnavailable
from storage.records import Record, SegmentAdded
from storage.repository import Repository
from tests.runtime_support import Rig, rig_factory, script, until

__all__ = ["rig_factory"]  # the fixture

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository.from_url(f"sqlite:///{tmp_path / 'cw.db'}")
    r.upgrade()
    return r


def started(seq: CallSequencer) -> CallStarted:
    return seq.make(CallStarted, media_ms=0, at=NOW, external_id=f"x-{seq.call_id}",
                    protocol="audiofork", sample_rate=8000, channels=2,
                    recording_path=f"{seq.call_id}.wav",
                    parties=(("customer", 0), ("agent", 1)))  # fmt: skip


def segment(seq: CallSequencer, i: int, text: str = "hello") -> SegmentTranscribed:
    return seq.make(SegmentTranscribed, media_ms=i * 1000, party="agent", start_ms=i * 1000,
                    end_ms=i * 1000 + 500, text=text, language="en", confidence=0.9)  # fmt: skip


def reading(seq: CallSequencer, i: int) -> ReadingTaken:
    r = QualityReading("agent", i, i * 2000, i * 2000 + 2000, 0, 900, -20.0, -18.0, -60.0,
                       40.0, 0, 0.0, 0, 0, 0)  # fmt: skip
    return seq.make(ReadingTaken, media_ms=r.end_ms, reading=r)


async def test_the_writer_stores_what_the_bus_carries(repo: Repository) -> None:
    bus = EventBus()
    writer = StorageWriter(repo, batch_size=10, group_commit_s=0, queue_size=10, bus=bus)
    writer.start()
    try:
        seq = CallSequencer("c1")
        for event in (started(seq), seq.make(Marked, media_ms=0, kind="connected"),
                      segment(seq, 1)):  # fmt: skip
            bus.publish(event)
        await writer.drain()
        call = repo.get_call("c1")
        assert call is not None and [(t.seq, t.kind) for t in call.trace] == [(1, "connected")]
        assert [s.text for s in call.segments] == ["hello"]
    finally:
        await writer.close()
        repo.close()


class FlakyRepo:
    """The real repository behind a fault injector."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.unavailable = 0  # fail this many next calls as "database unavailable"
        self.poison = "POISON"  # a segment with this text raises a programming error
        self.calls = 0

    def apply(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.unavailable:
            self.unavailable -= 1
            raise StorageUnavailable("database is restarting")
        if any(isinstance(r, SegmentAdded) and r.text == self.poison for r in records):
            raise TypeError("a bug in the repository")
        self.repo.apply(records)


async def test_a_poisoned_record_is_isolated_and_logged_the_rest_stored(
    repo: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyRepo(repo)
    writer = StorageWriter(flaky, batch_size=100, group_commit_s=0, queue_size=100)  # type: ignore[arg-type]
    seq = CallSequencer("c1")
    for event in [started(seq)] + [segment(seq, i) for i in range(9)]:
        writer.accept(event)
    writer.accept(segment(seq, 9, flaky.poison))
    writer.accept(segment(seq, 10))
    writer.start()  # one batch of 12 rows, one of them bad
    try:
        with caplog.at_level(logging.ERROR, "callwatch.storage"):
            await asyncio.wait_for(writer.drain(), 10)
        call = repo.get_call("c1")
        assert call is not None
        assert [s.start_ms for s in call.segments] == [i * 1000 for i in range(9)] + [10_000]
        assert writer.records_rejected == 1 and writer.records_written == 11
        [bad] = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert "SegmentAdded" in bad.getMessage() and bad.exc_info is not None
        assert isinstance(bad.exc_info[1], TypeError)  # with its traceback
    finally:
        await writer.close()
        repo.close()


async def test_only_unavailability_is_retried(repo: Repository) -> None:
    flaky = FlakyRepo(repo)
    flaky.unavailable = 2
    writer = StorageWriter(flaky, batch_size=100, group_commit_s=0, queue_size=100)  # type: ignore[arg-type]
    seq = CallSequencer("c1")
    writer.accept(started(seq))
    writer.accept(segment(seq, 0))
    writer.start()
    try:
        await asyncio.wait_for(writer.drain(), 10)
        call = repo.get_call("c1")
        assert call is not None and len(call.segments) == 1  # the same batch, once back
        assert flaky.calls == 3 and writer.records_rejected == 0
    finally:
        await writer.close()
        repo.close()


async def test_under_pressure_readings_and_trace_are_shed_and_counted_the_rest_kept(
    repo: Repository,
) -> None:
    writer = StorageWriter(repo, batch_size=500, group_commit_s=0, queue_size=5)
    seq = CallSequencer("c1")
    writer.accept(started(seq))
    for i in range(20):  # the writer is not running: everything waits
        writer.accept(reading(seq, i))
        writer.accept(seq.make(Marked, media_ms=i, kind="dtmf", data={"digit": "1"}))
        writer.accept(segment(seq, i))
    assert writer.shed == {"ReadingAdded": 18, "TraceAdded": 19} and writer.shed_total == 37
    room = asyncio.create_task(writer.room())
    await asyncio.sleep(0.05)
    assert not room.done()  # 21 kept rows wait: a producer that can wait, waits
    writer.start()
    try:
        await asyncio.wait_for(room, 10)
        await asyncio.wait_for(writer.drain(), 10)
        call = repo.get_call("c1")
        assert call is not None and len(call.segments) == 20  # nothing kept was lost
    finally:
        await writer.close()
        repo.close()


async def test_a_stalled_database_does_not_stall_any_calls_recorder(
    rig_factory,  # type: ignore[no-untyped-def]
) -> None:
    rig: Rig = await rig_factory(storage_queue=20)
    stalled = threading.Event()
    apply = rig.repo.apply

    def stuck(records: Sequence[Record]) -> None:
        stalled.wait(30)  # the database hangs (a lock, a dead server) until released
        apply(records)

    rig.repo.apply = stuck  # type: ignore[method-assign]
    call = script("en_billing_8k.toml")
    metas = [call_metadata(call), call_metadata(call)]  # two calls at once
    frames = call.audio.shape[0]
    try:
        # 24 s of audio at 8x real time: 3 s if nothing waits for the database.
        t0 = asyncio.get_running_loop().time()
        streams = [stream_call(rig.gateway.url, call, pace=8.0, metadata=m) for m in metas]
        await asyncio.wait_for(asyncio.gather(*streams), 15)
        assert asyncio.get_running_loop().time() - t0 < 10
        paths = list(rig.settings.recordings_dir.rglob("*.wav"))
        assert len(paths) == 2

        async def recorded() -> bool:  # every sample, closed, while storage is stuck
            return all(_frames(p) == frames for p in paths)

        await until(recorded, 5.0)
        assert not stalled.is_set() and rig.storage.backlog > 0
        assert rig.storage.shed_total > 0  # readings / trace under pressure, counted
    finally:
        stalled.set()

    for meta in metas:
        ext = str(meta["callid"])

        async def finalised() -> bool:
            got = await rig.call(ext)  # noqa: B023 - awaited within the iteration
            return got is not None and any(t.kind == "finalised" for t in got.trace)

        await until(finalised, 30.0)
        stored = await rig.call(ext)
        assert stored is not None and stored.recording_frames == frames
        assert stored.status == "completed" and stored.segments  # kept rows all arrived


def _frames(path: Path) -> int:
    try:
        with wave.open(str(path)) as w:
            return w.getnframes()
    except (wave.Error, EOFError):
        return -1
