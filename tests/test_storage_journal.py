"""The storage writer's on-disk journal (RELIABILITY.md S2, unit level): every row class
survives the round trip; the journal never exceeds its cap, sheds metrics first (at half the
cap) and keeps the call's index (open, segments, end) to the last byte; a writer whose
database never answers journals everything it holds, stops within its close timeout and the
import at the next start writes it all once, even when part of it was already stored.

The end-to-end proof (a real server, the database locked for the whole call, a restart) is
tests/test_storage_never_returns.py.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from monitor.events import CallEnded, CallEvent, CallSequencer, Marked
from monitor.runtime.storage_journal import METRICS_SHARE, StorageJournal, decode, encode
from monitor.runtime.storage_journal import import_journal as import_rows
from monitor.runtime.storage_rows import rows_for
from monitor.runtime.storage_sink import StorageWriter
from storage import records as rec
from storage.errors import StorageUnavailable
from storage.repository import Repository
from tests.test_storage_sink import NOW, reading, repo, segment, started

__all__ = ["repo"]  # the fixture


def every_row_class() -> list[rec.Record]:
    return [
        rec.CallOpened("c1", "x1", NOW, "twilio", 8000, 2, "2026/12/07/c1.wav",
                       (("customer", 0), ("agent", 1)), "a7", "q", "+1", "+2", {"k": [1, 2]}),
        rec.SegmentAdded("c1", "agent", 0, 900, "héllo 你好", "en", 0.9, 120, True),
        rec.TraceAdded("c1", 3, "connected", NOW, 0, None, {"peer": "x"}),
        rec.CallEnded("c1", NOW, "completed", "normal", 1000, 8000, {"agent": 8000}, 2),
        rec.CallClosed("c1", NOW, "completed", "normal", 1000, 8000, {"agent": 8000}),
        rec.ReadingAdded("c1", "agent", 0, 0, 2000, {"snr_db": 31.5, "nan": None}),
        rec.FindingAdded("c1", 1, "quality", "dead_air", "minor", "agent", 10, 20, {"s": 1}),
        rec.ResultSaved("c1", "quality", "", {"score": 90}),
        rec.CallScored("c1", 88.0, "good", 90.0, None),
        rec.AlertRaised(4, "c1", "dead_air", "dead_air", "warning", NOW, 0, 10, "m", "agent",
                        {"e": 1}, "a7", "q", ("ops",)),
        rec.AlertChanged(4, "c1", "resolved", "system", NOW, ("ops",)),
    ]  # fmt: skip


def test_every_row_class_round_trips() -> None:
    for row in every_row_class():
        line = encode(row)
        assert line.endswith("\n") and line.count("\n") == 1
        assert decode(line) == row


def test_the_cap_sheds_metrics_first_and_never_the_index(tmp_path: Path) -> None:
    journal = StorageJournal(tmp_path / "journal", max_bytes=64 * 1024)
    seq = CallSequencer("c1")
    opened = rows_for(started(seq))
    journal.append(opened)
    # Metrics until they reach half the cap, then only the index: segments, the end.
    n_readings = 0
    while not journal.shed:
        journal.append(rows_for(reading(seq, n_readings)))
        n_readings += 1
    assert journal.size <= journal.max_bytes * METRICS_SHARE
    metrics_bytes = journal.size
    segments = [row for i in range(100) for row in rows_for(segment(seq, i, "word " * 8))]
    journal.append(segments)
    journal.append([reading_row for reading_row in rows_for(reading(seq, 10_000))])
    ended = rows_for(seq.make(CallEnded, media_ms=1, at=NOW, status="completed",
                              end_reason="normal", duration_ms=1, recording_frames=8))  # fmt: skip
    journal.append(ended)
    assert journal.size > metrics_bytes  # the index went on past the metrics' half
    assert journal.overflow == 0 and journal.shed == {"ReadingAdded": 2}
    journal.close()
    [path] = (tmp_path / "journal").iterdir()
    assert path.name == "c1.jsonl" and path.stat().st_size == journal.size
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    rows = [decode(line) for line in path.read_text().splitlines()]
    assert rows[0] == opened[0] and rows[-1] == ended[0]
    assert [r for r in rows if isinstance(r, rec.SegmentAdded)] == segments  # every one
    # Full: even a kept row beyond the cap is refused (counted; the writer still holds it).
    for i in range(2000):
        journal.append(rows_for(segment(seq, 1000 + i, "word " * 8)))
        assert journal.size <= journal.max_bytes
    journal.close()
    assert journal.overflow > 0 and path.stat().st_size == journal.size <= journal.max_bytes


class DeadRepo:
    """A database that never answers (and counts what it was asked)."""

    def __init__(self) -> None:
        self.calls = 0

    def apply(self, records: Sequence[rec.Record]) -> None:
        self.calls += 1
        raise StorageUnavailable("database is locked")


async def test_a_database_that_never_returns_leaves_everything_in_the_journal(
    tmp_path: Path, repo: Repository
) -> None:
    journal = StorageJournal(tmp_path / "journal", max_bytes=1024 * 1024)
    dead = DeadRepo()
    writer = StorageWriter(dead, batch_size=4, group_commit_s=0, queue_size=1000,  # type: ignore[arg-type]
                           journal=journal, close_timeout_s=1.0)  # fmt: skip
    writer.start()
    seq = CallSequencer("c1")
    events: list[CallEvent] = [started(seq), seq.make(Marked, media_ms=0, kind="connected")]
    events += [e for i in range(10) for e in (segment(seq, i), reading(seq, i))]
    end = dict(status="completed", end_reason="normal", duration_ms=10_000, recording_frames=8)
    events.append(seq.make(CallEnded, media_ms=10_000, at=NOW, **end))
    for e in events[:3]:
        writer.accept(e)
    await asyncio.sleep(0.3)  # the first write failed: the journal took over
    assert writer.health()["journal"]["active"]
    for e in events[3:]:
        writer.accept(e)
    t0 = asyncio.get_running_loop().time()
    await writer.close()
    assert asyncio.get_running_loop().time() - t0 < 3.0  # a stop is not held up for ever
    assert dead.calls >= 1
    expected = [row for e in events for row in rows_for(e)]
    path = tmp_path / "journal" / "c1.jsonl"
    assert [decode(line) for line in path.read_text().splitlines()] == expected

    # The next start, the database up, part of the call already stored before the outage:
    # everything lands once, and the journal is gone.
    repo.apply(expected[:5])
    assert import_rows(repo, tmp_path / "journal") == len(expected)
    assert not path.exists()
    call = repo.get_call("x-c1")
    assert call is not None and call.status == "completed"
    assert [s.start_ms for s in call.segments] == [i * 1000 for i in range(10)]
    assert len(repo.get_analysis("c1").readings) == 10
    assert import_rows(repo, tmp_path / "journal") == 0
    repo.close()


async def test_the_journal_is_cleared_once_the_database_has_every_row(
    tmp_path: Path, repo: Repository
) -> None:
    class Flaky:
        down = True

        def apply(self, records: Sequence[rec.Record]) -> None:
            if self.down:
                raise StorageUnavailable("database is restarting")
            repo.apply(records)

    flaky = Flaky()
    journal = StorageJournal(tmp_path / "journal", max_bytes=1024 * 1024)
    writer = StorageWriter(flaky, batch_size=50, group_commit_s=0, queue_size=1000,  # type: ignore[arg-type]
                           journal=journal)  # fmt: skip
    writer.start()
    seq = CallSequencer("c2")
    writer.accept(started(seq))
    await asyncio.sleep(0.3)
    writer.accept(segment(seq, 1))
    assert (tmp_path / "journal" / "c2.jsonl").exists()
    flaky.down = False
    await asyncio.wait_for(writer.drain(), 10)
    assert not list((tmp_path / "journal").glob("*.jsonl"))
    assert not writer.health()["journal"]["active"] and journal.size == 0
    await writer.close()
    call = repo.get_call("x-c2")
    assert call is not None and len(call.segments) == 1
    repo.close()


def test_a_torn_last_line_is_ignored(tmp_path: Path, repo: Repository) -> None:
    d = tmp_path / "journal"
    d.mkdir()
    seq = CallSequencer("c3")
    good = rows_for(started(seq)) + rows_for(segment(seq, 1))
    text = "".join(encode(r) for r in good) + encode(rows_for(segment(seq, 2))[0])[:30]
    (d / "c3.jsonl").write_text(text)
    os.chmod(d / "c3.jsonl", 0o600)
    assert import_rows(repo, d) == 2
    call = repo.get_call("x-c3")
    assert call is not None and [s.start_ms for s in call.segments] == [1000]
    repo.close()
