"""BoardState: cards, KPIs, coalesced deltas and snapshots, driven with plain clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.board.state import BoardState
from monitor.events import CallEvent, CallStarted
from monitor.qa.events import PhraseMatched, PhraseMissed
from tests.call_events import (
    alert_changed,
    alert_raised,
    dead_air,
    ended,
    finalised,
    finding,
    mark,
    reading,
    scored,
)
from tests.call_events import segment as _segment

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def opened(call_id: str = "c1", agent: str = "1031", queue: str = "billing") -> CallStarted:
    return CallStarted(call_id, 0, 0, T0, f"ext-{call_id}", "audiofork", 8000, 2,
                       f"{call_id}.wav", (("customer", 0), ("agent", 1)), agent_id=agent,
                       queue=queue, caller="+1415")  # fmt: skip


def segment(
    call_id: str,
    party: str,
    start: int,
    end: int,
    text: str,
    lang: str = "en",
    conf: float = 0.9,
    latency_ms: int | None = None,
    late: bool = False,
) -> CallEvent:
    return _segment(call_id, party, start, end, text, latency_ms=latency_ms, late=late)


def missed(call_id: str, seq: int, stage: str) -> CallEvent:
    return finding(call_id, seq, PhraseMissed(stage, "first 10 s", "major", 10.0, 10_000))


def board(**kw: object) -> BoardState:
    return BoardState(today=T0.date(), **kw)  # type: ignore[arg-type]


def kinds(msgs: list[dict]) -> list[str]:
    return [m["type"] for m in msgs]


def test_card_collects_transcript_meters_and_checklist() -> None:
    b = board(lines_per_party=2)
    b.apply(opened(), 0.0)
    for i, text in enumerate(["hello", "", "how can I help", "bye now"]):
        b.apply(segment("c1", "agent", i * 1000, i * 1000 + 800, text, "en", 0.9), 0.1)
    b.apply(segment("c1", "customer", 500, 900, "hi", "en", 0.9), 0.1)
    b.apply(reading("c1", "agent", 0, speech_level_dbov=-21.27, snr_db=30.04, speech_ms=1800,
                    talk_ms=1500), 0.1)  # fmt: skip
    b.apply(reading("c1", "customer", 0, speech_level_dbov=None, rms_dbov=-50.0, snr_db=None,
                    talk_ms=500), 0.1)  # fmt: skip
    b.apply(finding("c1", 0, PhraseMatched("greeting", "hi", "hi", 99.0, 0, 800, "agent")), 0.1)
    b.apply(missed("c1", 1, "verification"), 0.1)
    b.apply(missed("c1", 2, "greeting"), 0.1)
    card = b.snapshot()["calls"][0]
    agent = card["parties"]["agent"]
    assert [ln["text"] for ln in agent["lines"]] == ["how can I help", "bye now"]  # empty skipped
    assert card["parties"]["customer"]["lines"][0]["text"] == "hi"
    assert agent["level_dbov"] == -21.3 and agent["snr_db"] == 30.0
    assert agent["talk_ratio"] == 0.75 and card["parties"]["customer"]["talk_ratio"] == 0.25
    assert card["parties"]["customer"]["level_dbov"] == -50.0  # no speech: the overall level
    states = {c["stage"]: c["state"] for c in card["checklist"]}
    # a later miss never undoes a match
    assert states == {"greeting": "ok", "verification": "missed", "closing": "pending"}
    assert (card["agent"], card["queue"], card["caller"]) == ("1031", "billing", "+1415")


def test_dead_air_live_flag_and_total() -> None:
    b = board()
    b.apply(opened(), 0.0)
    b.apply(mark("c1", 3, "dead_air_started", 4000), 0.0)
    assert b.snapshot()["calls"][0]["dead_air"]["now"] is True
    b.apply(dead_air("c1", 0, 4000, 9500), 0.0)
    da = b.snapshot()["calls"][0]["dead_air"]
    assert da == {"total_ms": 5500, "count": 1, "now": False}


def test_deltas_are_coalesced_per_call_and_never_lost() -> None:
    b = board(interval_s=0.3)
    b.apply(opened("c1"), 0.0)
    b.apply(opened("c2"), 0.0)
    first = b.flush(0.0)
    assert sorted(m["call"]["call_id"] for m in first if m["type"] == "call") == ["c1", "c2"]
    # 50 events for c1 within 0.1 s: nothing goes out before the interval, then one card
    for i in range(50):
        b.apply(segment("c1", "agent", i, i + 1, f"w{i}", "en", 1.0), 0.05)
    assert [m for m in b.flush(0.1) if m["type"] == "call"] == []
    due = [m for m in b.flush(0.31) if m["type"] == "call"]
    assert len(due) == 1 and due[0]["call"]["parties"]["agent"]["lines"][-1]["text"] == "w49"
    assert b.flush(0.7) == []  # nothing changed: nothing sent
    seqs = [m["seq"] for m in first + due]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_an_alert_and_its_card_badge_go_out_in_the_same_frame() -> None:
    # The card was sent a moment ago, so the rate limit would hold it back a whole interval;
    # the alert must not show in the feed while the card still lacks its badge.
    b = board(interval_s=10.0)
    b.apply(opened(), 0.0)
    b.flush(0.0)
    b.apply(alert_raised(7, "c1", "dead_air", "dead_air", "warning", T0, 4000, None, "gap"), 0.1)
    msgs = b.flush(0.1)
    assert kinds(msgs)[:2] == ["alert", "call"]
    assert [a["id"] for a in msgs[1]["call"]["alerts"]] == [7]
    # ... and only the alert jumps the limit: a plain change still waits its turn.
    b.apply(segment("c1", "agent", 0, 500, "hello"), 0.2)
    assert [m for m in b.flush(0.2) if m["type"] == "call"] == []
    assert [m for m in b.flush(10.2) if m["type"] == "call"] != []


def test_hundred_calls_cost_one_message_per_call_per_interval() -> None:
    b = board(interval_s=0.25)
    for i in range(100):
        b.apply(opened(f"c{i}"), 0.0)
    b.flush(0.0)
    sent = 0
    t = 0.0
    for step in range(40):  # 4 s of 10 events per call per 100 ms
        t = step * 0.1
        for i in range(100):
            for k in range(10):
                b.apply(reading(f"c{i}", "agent", k, snr_db=20.0 + k, span_ms=100), t)
        sent += sum(1 for m in b.flush(t) if m["type"] == "call")
    # at most one card per call per 250 ms (4 s -> 16 or 17 rounds), instead of 40 000 events
    assert 100 * 13 <= sent <= 100 * 17


def test_alerts_feed_badges_and_kpis() -> None:
    b = board()
    b.apply(opened(), 0.0)
    b.flush(0.0)
    raised = alert_raised(7, "c1", "dead_air", "dead_air", "warning", T0, 4000, None, "gap")
    b.apply(raised, 1.0)
    msgs = b.flush(1.0)
    assert kinds(msgs) == ["alert", "call", "kpis"]
    assert msgs[0]["alert"]["id"] == 7 and msgs[2]["kpis"]["open_alerts"] == 1
    assert msgs[1]["call"]["alerts"] == [
        {
            "id": 7,
            "kind": "dead_air",
            "severity": "warning",
            "state": "open",
            "media_start_ms": 4000,
        }
    ]
    b.apply(alert_changed(7, "c1", "acknowledged", "sue", T0), 2.0)
    msgs = b.flush(2.0)
    assert (msgs[0]["alert"]["state"], msgs[0]["alert"]["by"]) == ("acknowledged", "sue")
    assert msgs[0]["alert"]["kind"] == "dead_air"  # the change keeps what was raised
    assert b.kpis()["open_alerts"] == 0
    assert [a["state"] for a in b.snapshot()["alerts"]] == ["acknowledged"]
    # an alert of a call the board does not know still reaches the feed
    b.apply(
        alert_raised(8, "zz", "duration_long", "duration_long", "critical", T0, 0, None, ""), 3.0
    )
    assert [a["id"] for a in b.snapshot()["alerts"]] == [7, 8]


def test_ended_call_shows_grade_then_leaves_and_kpis_count_it() -> None:
    b = board(linger_s=5.0)
    b.apply(opened("c1"), 0.0)
    b.apply(opened("c2"), 0.0)
    b.flush(0.0)
    b.apply(scored("c1", 58.0, "needs_improvement", 40.0), 10.0)
    b.apply(finalised("c1", T0 + timedelta(seconds=90), "completed", 90_000), 10.0)
    msgs = b.flush(10.0)
    card = next(m["call"] for m in msgs if m["type"] == "call")
    assert (card["grade"], card["status"], card["duration_ms"]) == (
        "needs_improvement",
        "completed",
        90_000,
    )
    k = next(m["kpis"] for m in msgs if m["type"] == "kpis")
    assert k["active_calls"] == 1 and k["avg_handle_ms"] == 90_000
    assert k["compliance_rate"] == 40.0 and k["needs_improvement"] == 1
    assert b.flush(14.9) == []
    gone = b.flush(15.0)
    assert {"type": "remove", "call_id": "c1"} in [
        {k: v for k, v in m.items() if k != "seq"} for m in gone
    ]
    assert [c["call_id"] for c in b.snapshot()["calls"]] == ["c2"]
    b.apply(segment("c1", "agent", 0, 1, "late", "en", 1.0), 16.0)  # ignored, no error
    assert all(m["type"] != "call" for m in b.flush(16.0))


def test_hang_up_leaves_the_active_list_at_once_pending_transcripts_keep_the_card() -> None:
    b = board(linger_s=5.0)
    b.apply(opened("c1"), 0.0)
    b.flush(0.0)
    end = T0 + timedelta(seconds=30)
    b.apply(ended("c1", end, "completed", 30_000, 3), 1.0)
    msgs = b.flush(1.0)
    card = next(m["call"] for m in msgs if m["type"] == "call")
    assert (card["status"], card["transcripts_pending"], card["duration_ms"]) == (
        "completed", True, 30_000,
    )  # fmt: skip
    k = next(m["kpis"] for m in msgs if m["type"] == "kpis")
    assert k["active_calls"] == 0 and k["handled_today"] == 1
    assert b.flush(60.0) == []  # still pending: the card stays (no linger yet)
    # A late transcript shows as such; the verdict ends the wait and starts the linger.
    b.apply(segment("c1", "agent", 0, 900, "hello", "en", 0.9, 40_000, late=True), 61.0)
    b.apply(scored("c1", 80.0, "good"), 61.0)
    b.apply(finalised("c1", end, "completed", 30_000), 61.0)
    card = next(m["call"] for m in b.flush(61.0) if m["type"] == "call")
    assert card["transcripts_pending"] is False and card["grade"] == "good"
    assert card["parties"]["agent"]["lines"] == [
        {"start_ms": 0, "end_ms": 900, "text": "hello", "late": True}
    ]
    assert b.kpis()["handled_today"] == 1  # counted once, at hang-up
    assert "remove" in kinds(b.flush(66.0))
    # Hung up with nothing pending: still waits for the verdict (its score counts) ...
    b.apply(opened("c2"), 70.0)
    b.apply(ended("c2", end, "completed", 30_000), 71.0)
    assert "remove" not in kinds(b.flush(100.0))
    # ... though not forever, when it never comes.
    assert "remove" in kinds(b.flush(71.0 + b.verdict_wait_s + b.linger_s))


def test_kpis_roll_over_at_midnight_and_seed() -> None:
    b = board()
    b.seed_today(
        handled=2,
        handle_ms=100_000,
        compliance_sum=180.0,
        compliance_n=2,
        needs_improvement=1,
        scored=2,
    )
    assert b.kpis()["avg_handle_ms"] == 50_000 and b.kpis()["compliance_rate"] == 90.0
    b.apply(opened("c1"), 0.0)
    b.apply(finalised("c1", T0 + timedelta(days=1), "completed", 30_000), 1.0)
    k = b.kpis()
    assert k["handled_today"] == 1 and k["avg_handle_ms"] == 30_000 and k["needs_improvement"] == 0


def test_snapshot_after_reconnect_matches_applied_deltas() -> None:
    b = board(interval_s=0.0)
    b.apply(opened(), 0.0)
    b.apply(segment("c1", "customer", 0, 900, "我想查一下账单", "zh", 0.9), 0.0)
    last = [m for m in b.flush(0.0) if m["type"] == "call"][-1]["call"]
    snap = b.snapshot()
    assert snap["calls"] == [last] and snap["seq"] == b.seq
