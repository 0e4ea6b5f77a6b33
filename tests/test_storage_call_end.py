"""Storage of the two-step call end, on SQLite and PostgreSQL: `CallEnded` stores the end at
hang-up (status, time, length), the later `CallClosed` writes the same values; segments keep
their `late` flag; calls ended without a `finalised` trace entry are found for recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.records import CallClosed, CallEnded, CallOpened, SegmentAdded, TraceAdded
from storage.repository import Repository

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _opened(call_id: str) -> CallOpened:
    return CallOpened(call_id, f"ext-{call_id}", T0, "audiofork", 8000, 2, f"{call_id}.wav",
                      (("customer", 0), ("agent", 1)))  # fmt: skip


def test_ended_then_closed_late_segments_and_unfinalised(repo: Repository) -> None:
    end = T0 + timedelta(seconds=30)
    values = ("completed", "normal", 30_000, 240_000, {"customer": 240_000, "agent": 240_000})
    repo.apply([_opened("a"), _opened("b"), CallEnded("a", end, *values, transcripts_pending=2)])
    a = repo.get_call("a")
    assert a is not None and (a.status, a.ended_at, a.duration_ms) == ("completed", end, 30_000)
    assert [(p.party, p.samples) for p in a.parties] == [("customer", 240_000), ("agent", 240_000)]
    since = T0 - timedelta(days=1)
    assert [c.call_id for c in repo.unfinalised_calls(since)] == ["a"]  # b: still active
    assert repo.unfinalised_calls(end + timedelta(seconds=1)) == []  # bounded look-back
    repo.apply([
        SegmentAdded("a", "agent", 0, 900, "hello", "en", 0.9, 40_000, late=True),
        SegmentAdded("a", "customer", 1000, 1900, "hi", "en", 0.9, 300),
        TraceAdded("a", 0, "finalised", end, 30_000, None, {"status": "completed"}),
        CallClosed("a", end, *values),
    ])  # fmt: skip
    a = repo.get_call("a")
    assert a is not None and a.status == "completed" and a.duration_ms == 30_000
    assert [(s.text, s.late) for s in a.segments] == [("hello", True), ("hi", False)]
    assert repo.unfinalised_calls(since) == []
