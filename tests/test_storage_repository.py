"""Repository tests on real SQLite files and a real PostgreSQL database: what `apply` writes,
how retried batches behave, and what the read queries return."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from storage.errors import BatchRejected
from storage.records import CallClosed, CallOpened, Record, SegmentAdded, TraceAdded
from storage.repository import (
    CallDetail,
    PartyInfo,
    Repository,
    SegmentInfo,
    TraceInfo,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def opened(call_id: str, *, minutes: int = 0, **kw: Any) -> CallOpened:
    values: dict[str, Any] = {
        "external_id": f"ext-{call_id}",
        "started_at": T0 + timedelta(minutes=minutes),
        "protocol": "audiofork",
        "sample_rate": 8000,
        "channels": 2,
        "recording_path": f"2026/03/01/{call_id}.wav",
        "parties": (("customer", 0), ("agent", 1)),
    }
    values.update(kw)
    return CallOpened(call_id=call_id, **values)


def segment(call_id: str, party: str, start_ms: int, text: str, **kw: Any) -> SegmentAdded:
    values: dict[str, Any] = {"end_ms": start_ms + 900, "language": "en", "confidence": 0.9}
    values.update(kw)
    return SegmentAdded(call_id=call_id, party=party, start_ms=start_ms, text=text, **values)


def trace(call_id: str, seq: int, kind: str, **kw: Any) -> TraceAdded:
    return TraceAdded(call_id=call_id, seq=seq, kind=kind, at=T0 + timedelta(seconds=seq), **kw)


def closed(call_id: str, status: str = "completed", **kw: Any) -> CallClosed:
    values: dict[str, Any] = {
        "ended_at": T0 + timedelta(minutes=5),
        "end_reason": "normal",
        "duration_ms": 300_000,
        "recording_frames": 2_400_000,
    }
    values.update(kw)
    return CallClosed(call_id=call_id, status=status, **values)


def full_call(call_id: str = "c1") -> list[Record]:
    return [
        opened(call_id, agent_id="a7", queue="billing", caller="+4915700001", callee="800",
               metadata={"switch": "fs-1", "tags": ["vip"], "note": "客户"}),
        trace(call_id, 0, "connected", data={"peer": "10.0.0.1"}),
        trace(call_id, 1, "metadata", media_ms=0),
        # Out of order on purpose: the detail view sorts by (start_ms, party).
        segment(call_id, "customer", 4000, "I want a refund", latency_ms=420),
        segment(call_id, "agent", 1000, "Hello, how can I help?"),
        segment(call_id, "customer", 1000, "Hi"),
        trace(call_id, 2, "utterance", media_ms=4900, party="customer", data={"chars": 15}),
        trace(call_id, 3, "disconnected", media_ms=300_000),
        trace(call_id, 4, "finalised"),
        closed(call_id, party_samples={"customer": 2_400_000, "agent": 2_399_840}),
    ]  # fmt: skip


def test_a_whole_call_round_trips(repo: Repository) -> None:
    repo.apply(full_call("c1"))
    call = repo.get_call("c1")
    assert isinstance(call, CallDetail)
    assert (call.call_id, call.external_id, call.protocol) == ("c1", "ext-c1", "audiofork")
    assert (call.status, call.end_reason, call.duration_ms) == ("completed", "normal", 300_000)
    assert (call.sample_rate, call.channels, call.recording_frames) == (8000, 2, 2_400_000)
    parties = (call.agent_id, call.queue, call.caller, call.callee)
    assert parties == ("a7", "billing", "+4915700001", "800")
    assert call.recording_path == "2026/03/01/c1.wav"
    assert (call.score, call.grade) == (None, None)
    assert call.metadata == {"switch": "fs-1", "tags": ["vip"], "note": "客户"}
    assert call.started_at == T0 and call.started_at.tzinfo is UTC
    assert call.ended_at == T0 + timedelta(minutes=5)
    assert call.parties == (PartyInfo("customer", 0, 2_400_000), PartyInfo("agent", 1, 2_399_840))
    assert [(s.start_ms, s.party, s.text) for s in call.segments] == [
        (1000, "agent", "Hello, how can I help?"),
        (1000, "customer", "Hi"),
        (4000, "customer", "I want a refund"),
    ]
    refund = call.segments[2]
    assert isinstance(refund, SegmentInfo)
    assert (refund.end_ms, refund.language, refund.latency_ms) == (4900, "en", 420)
    assert refund.confidence == pytest.approx(0.9)
    assert [t.seq for t in call.trace] == [0, 1, 2, 3, 4]
    assert call.trace[2] == TraceInfo(
        2, "utterance", T0 + timedelta(seconds=2), 4900, "customer", {"chars": 15}
    )
    assert repo.next_trace_seq("c1") == 5


def test_times_come_back_as_the_same_instant_in_utc(repo: Repository) -> None:
    shanghai = timezone(timedelta(hours=8))
    local = datetime(2026, 3, 1, 17, 30, 15, 123456, tzinfo=shanghai)
    repo.apply([opened("tz", started_at=local)])
    call = repo.get_call("tz")
    assert call is not None
    assert call.started_at == local
    assert call.started_at.utcoffset() == timedelta(0)
    assert call.started_at.hour == 9 and call.started_at.microsecond == 123456


def test_new_call_is_active_until_closed(repo: Repository) -> None:
    repo.apply([opened("old", minutes=0), opened("new", minutes=1), opened("done", minutes=2)])
    repo.apply([closed("done", status="interrupted", end_reason="server_crash")])
    assert [c.call_id for c in repo.active_calls()] == ["old", "new"]
    active = repo.active_calls()[0]
    assert (active.status, active.ended_at, active.recording_frames) == ("active", None, None)
    assert active.recording_path == "2026/03/01/old.wav"
    done = repo.get_call("done")
    assert done is not None and (done.status, done.end_reason) == ("interrupted", "server_crash")
    assert [p.samples for p in done.parties] == [None, None]  # no party_samples given


def test_retried_batch_changes_nothing(repo: Repository) -> None:
    # A commit whose acknowledgement was lost: the writer retries the same batch.
    batch = full_call("c1")
    repo.apply(batch)
    first = repo.get_call("c1")
    repo.apply(batch)
    repo.apply(batch[:4])  # and a retried prefix, after the call was closed
    again = repo.get_call("c1")
    assert again == first
    assert again is not None and len(again.segments) == 3 and len(again.trace) == 5


def test_next_trace_seq_starts_at_zero(repo: Repository) -> None:
    repo.apply([opened("c1")])
    assert repo.next_trace_seq("c1") == 0
    assert repo.next_trace_seq("no-such-call") == 0
    repo.apply([trace("c1", 0, "connected"), trace("c1", 1, "metadata")])
    assert repo.next_trace_seq("c1") == 2


def test_a_rejected_batch_writes_nothing_at_all(repo: Repository) -> None:
    batch: list[Record] = [
        opened("c1"),
        trace("c1", 0, "connected"),
        segment("never-opened", "agent", 0, "hello"),  # foreign key violation
    ]
    with pytest.raises(BatchRejected, match="refused"):
        repo.apply(batch)
    assert repo.get_call("c1") is None  # one transaction: the call insert was rolled back
    assert repo.list_calls() == []


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (closed("c1", status="active"), r"records\[1\].status"),
        (closed("ghost"), "unknown call 'ghost'"),
        (closed("c1", party_samples={"supervisor": 1}), "unknown party 'supervisor'"),
        (TraceAdded("c1", 0, "connected", at=datetime(2026, 1, 1)), r"\[1\].at must be .*-aware"),
        (segment("c1", "agent", 500, "x", end_ms=100), "start_ms <= end_ms"),
        (opened("c2", parties=(("agent", 2),)), "channel 2"),
        (trace("c1", 0, "metadata", data={"at": T0}), r"\[1\].data cannot be stored as JSON"),
    ],
    ids=["status", "unknown-call", "unknown-party", "naive-time", "span", "channel", "json"],
)
def test_invalid_records_are_rejected_before_anything_is_stored(
    repo: Repository, bad: Record, match: str
) -> None:
    with pytest.raises(BatchRejected, match=match):
        repo.apply([opened("c1"), bad])
    assert repo.get_call("c1") is None


def test_list_calls_filters_and_orders_newest_first(repo: Repository) -> None:
    repo.apply([
        opened("c1", minutes=1, agent_id="a1", queue="sales", caller="111"),
        opened("c2", minutes=2, agent_id="a2", queue="sales", caller="222"),
        opened("c3", minutes=3, agent_id="a1", queue="billing", caller="111"),
        opened("c4", minutes=4, agent_id="a1", queue="sales", caller="333"),
        closed("c2"),
        closed("c3", status="interrupted"),
    ])  # fmt: skip

    def ids(**filters: Any) -> list[str]:
        return [c.call_id for c in repo.list_calls(**filters)]

    assert ids() == ["c4", "c3", "c2", "c1"]
    assert ids(agent="a1") == ["c4", "c3", "c1"]
    assert ids(queue="sales") == ["c4", "c2", "c1"]
    assert ids(caller="111") == ["c3", "c1"]
    assert ids(status="active") == ["c4", "c1"]
    assert ids(status="interrupted") == ["c3"]
    assert ids(agent="a1", queue="sales") == ["c4", "c1"]
    assert ids(since=T0 + timedelta(minutes=2)) == ["c4", "c3", "c2"]  # inclusive
    assert ids(until=T0 + timedelta(minutes=2)) == ["c1"]  # exclusive
    assert ids(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)) == ["c3", "c2"]
    assert ids(limit=2) == ["c4", "c3"]
    assert ids(agent="nobody") == []


def test_list_calls_rejects_bad_arguments(repo: Repository) -> None:
    with pytest.raises(ValueError, match="limit"):
        repo.list_calls(limit=0)
    with pytest.raises(ValueError, match="status"):
        repo.list_calls(status="finished")
    with pytest.raises(ValueError, match="since"):
        repo.list_calls(since=datetime(2026, 1, 1))


SEARCH_CORPUS = {
    "zh": "您好，我想申请退款可以吗",
    "en": "I would like a REFUND for my order",
    "pct": "we are 100% sure",
    "num": "we are 1000 sure",
    "under": "file_name is wrong",
    "nounder": "filename is wrong",
    "slash": r"path C:\temp\x",
}


SEARCH_QUERIES = ["退款", "申请退", "refund", "Refund", "100%", "%", "00", "_", "file_name", "e_n",
                  "\\", r"C:\temp", "sure", "可以吗", "nothing like this"]  # fmt: skip


def test_transcript_search_is_a_literal_case_insensitive_substring(repo: Repository) -> None:
    records: list[Record] = []
    for minute, (call_id, text) in enumerate(SEARCH_CORPUS.items()):
        records.append(opened(call_id, minutes=minute))
        # Both parties say it: a call with several matching segments must be listed once.
        records += [segment(call_id, "customer", 0, text), segment(call_id, "agent", 2000, text)]
    repo.apply(records)
    for query in SEARCH_QUERIES:
        expected = {cid for cid, text in SEARCH_CORPUS.items() if query.lower() in text.lower()}
        found = [c.call_id for c in repo.list_calls(text=query)]
        assert sorted(found) == sorted(expected), query


def test_search_combines_with_other_filters(repo: Repository) -> None:
    repo.apply([
        opened("c1", minutes=1, agent_id="a1"), segment("c1", "agent", 0, "退款已经处理"),
        opened("c2", minutes=2, agent_id="a2"), segment("c2", "agent", 0, "退款申请"),
        opened("c3", minutes=3, agent_id="a1"), segment("c3", "agent", 0, "你好"),
    ])  # fmt: skip
    assert [c.call_id for c in repo.list_calls(text="退款", agent="a1")] == ["c1"]
    assert [c.call_id for c in repo.list_calls(text="退款")] == ["c2", "c1"]


def test_get_call_by_id_external_id_or_unique_prefix(repo: Repository) -> None:
    repo.apply([
        opened("01HQ7AAAA", minutes=1, external_id="fs-uuid-1"),
        opened("01HQ7BBBB", minutes=2, external_id="fs-uuid-1"),  # the switch reused its id
        opened("01HQ8CCCC", minutes=3, external_id="01HQ7"),
    ])  # fmt: skip

    def found(key: str) -> str | None:
        call = repo.get_call(key)
        return None if call is None else call.call_id

    assert found("01HQ7AAAA") == "01HQ7AAAA"
    assert found("fs-uuid-1") == "01HQ7BBBB"  # newest call with that external id
    assert found("01HQ7A") == "01HQ7AAAA"  # unique prefix
    assert found("01HQ8") == "01HQ8CCCC"
    assert found("01HQ7") == "01HQ8CCCC"  # an external id wins over a prefix
    assert found("01HQ") is None  # ambiguous prefix
    assert found("01hq7a") is None  # ids are case-sensitive, also on SQLite
    assert found("01HQ7A%") is None  # LIKE wildcards mean nothing here
    assert found("nope") is None
    assert found("") is None


def test_day_totals_are_summed_in_sql_on_both_backends(repo: Repository) -> None:
    """The board's KPI seed: closed calls started since a moment, graded ones apart."""
    from storage.records import CallScored

    repo.apply(
        [
            opened("early", minutes=-1),  # before `since`: not counted
            closed("early"),
            opened("a"),
            closed("a", duration_ms=100_000),
            CallScored("a", 90.0, "excellent", 90.0, 100.0),
            opened("b", minutes=1),
            closed("b", status="interrupted", duration_ms=50_000),
            CallScored("b", 40.0, "needs_improvement", 50.0, 30.0),
            opened("c", minutes=2),
            closed("c", duration_ms=20_000),  # closed, not graded
            opened("live", minutes=3),  # still active
        ]
    )
    t = repo.day_totals(T0)
    assert (t.handled, t.handle_ms, t.scored) == (3, 170_000, 2)
    assert (t.compliance_sum, t.compliance_n, t.needs_improvement) == (130.0, 2, 1)
    assert repo.day_totals(T0 + timedelta(days=1)).handled == 0
