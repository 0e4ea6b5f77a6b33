"""The alert rules (sans-I/O), driven with call events and media ticks on a clock the test owns:
each rule fires once per call at its threshold and not below it; per-queue overrides apply;
learned baselines are robust statistics of log duration."""

from __future__ import annotations

import math
from typing import Any

import pytest

from config.settings import AlertSettings, ConfigError, load_settings
from monitor.alerts import AlertEngine, Baselines, MediaTick
from monitor.alerts.baselines import MIN_SIGMA, baseline
from monitor.events import CallFinalised, CallStarted
from monitor.qa.events import ForbiddenPhraseSaid, PhraseMatched, PhraseMissed
from tests.call_events import T0, dead_air, finalised, finding, mark, segment
from tests.call_events import reading as reading_event


def opened(call_id: str = "c1", queue: str | None = "billing", agent: str | None = "a1") -> Any:
    return CallStarted(call_id, 0, 0, T0, f"x-{call_id}", "audiofork", 8000, 2, "r.wav",
                       (("customer", 0), ("agent", 1)), agent_id=agent, queue=queue)  # fmt: skip


def closed(call_id: str = "c1", ms: int = 60_000, status: str = "completed") -> CallFinalised:
    return finalised(call_id, T0, status, ms)


def engine(**settings: Any) -> AlertEngine:
    return AlertEngine(AlertSettings(**settings))


def run_ticks(eng: AlertEngine, call_id: str, until_ms: int, step_ms: int = 100) -> list[Any]:
    """Media and wall time advance together (a healthy stream), one tick per step."""
    out = []
    for ms in range(0, until_ms + 1, step_ms):
        for alert in eng.tick(MediaTick(call_id, ms, ms / 1000)):
            out.append((ms, alert))
    return out


def test_fixed_limits_long_while_running_and_short_after() -> None:
    eng = engine(max_duration_s=120, min_duration_s=20, learned=False)
    eng.feed(opened())
    fired = run_ticks(eng, "c1", 125_000)
    assert [(ms, a.rule) for ms, a in fired] == [(120_100, "duration_long:limit")]
    assert fired[0][1].evidence == {"duration_ms": 120_100, "threshold_ms": 120_000}
    assert eng.feed(closed(ms=125_000)) == []  # already raised: de-duplicated
    eng.feed(opened("c2"))
    short = eng.feed(closed("c2", ms=19_000))
    assert [(a.rule, a.kind, a.media_end_ms) for a in short] == [
        ("duration_short:limit", "duration_short", 19_000)
    ]
    eng.feed(opened("c3"))
    assert eng.feed(closed("c3", ms=19_000, status="interrupted")) == []  # a dropped line


def test_per_queue_override() -> None:
    eng = engine(max_duration_s=3600, learned=False, queues={"vip": {"max_duration_s": 60}})
    eng.feed(opened("v", queue="vip"))
    eng.feed(opened("b", queue="billing"))
    assert [a.rule for _, a in run_ticks(eng, "v", 61_000, 1000)] == ["duration_long:limit"]
    assert run_ticks(eng, "b", 61_000, 1000) == []
    with pytest.raises(ConfigError, match="alerts.queues.vip"):
        load_settings(env={}, alerts={"queues": {"vip": {"max_duration": 60}}})


def test_learned_bounds_use_the_agent_when_it_has_enough_calls() -> None:
    history = [("billing", f"a{i % 5}", 100_000 + 1000 * (i % 21)) for i in range(100)]
    history += [("billing", "a9", 400_000)] * 40  # a slow agent with its own baseline
    history += [("sales", "a1", 50_000)] * 10  # too few calls for a baseline
    b = Baselines.from_history(history, min_samples=30)
    assert b.for_call("sales", "a1") is None
    queue = b.for_call("billing", "a1")
    assert queue is not None and queue.scope == "queue" and queue.samples == 140
    agent = b.for_call("billing", "a9")
    assert agent is not None and agent.scope == "agent"
    assert agent.mad_log == 0 and agent.sigma == MIN_SIGMA
    assert agent.upper_ms(3) == math.ceil(400_000 * math.exp(3 * MIN_SIGMA))
    eng = AlertEngine(AlertSettings(max_duration_s=0), b)
    eng.feed(opened("slow", agent="a9"))
    eng.feed(opened("norm", agent="a1"))
    bound = queue.upper_ms(3)
    norm = run_ticks(eng, "norm", bound + 1000)
    assert [a.rule for _, a in norm] == ["duration_long:learned"]
    assert bound < norm[0][0] <= bound + 100  # within one tick of passing the bound
    assert norm[0][1].evidence["baseline"] == "queue"
    assert run_ticks(eng, "slow", bound + 1000) == []  # normal for that agent


def test_baseline_ignores_instant_hangups_and_outliers() -> None:
    values = [60_000] * 50 + [61_000] * 50 + [500] * 30 + [20_000_000] * 3
    b = baseline("queue", "q", values)
    assert b is not None and b.samples == 103
    assert round(b.median_ms) in (60_000, 61_000)


def test_dead_air_while_it_lasts_and_from_the_finding() -> None:
    eng = engine(dead_air_s=10, learned=False)
    eng.feed(opened())
    eng.tick(MediaTick("c1", 20_000, 20))
    eng.feed(mark("c1", 5, "dead_air_started", 20_000))  # silence since 20 s
    assert eng.tick(MediaTick("c1", 29_000, 29)) == []
    [alert] = eng.tick(MediaTick("c1", 30_000, 30))
    assert (alert.rule, alert.media_start_ms) == ("dead_air", 20_000)
    assert alert.evidence["ongoing"] is True
    eng.feed(opened("c2"))
    short = dead_air("c2", 0, 1000, 9000)
    long = dead_air("c2", 1, 20_000, 31_000)
    assert eng.feed(short) == []
    [alert] = eng.feed(long)
    assert alert.evidence["duration_ms"] == 11_000 and alert.evidence["ongoing"] is False


def reading(seq: int, snr: float | None, party: str = "agent", **values: Any) -> Any:
    return reading_event("c1", party, seq, snr_db=snr, **values)


def test_poor_audio_must_be_sustained() -> None:
    eng = engine(poor_audio_s=10, poor_snr_db=10, learned=False)
    eng.feed(opened())
    alerts = []
    for seq in range(4):  # 8 s poor, then one good reading resets the streak
        alerts += eng.feed(reading(seq, 4.0))
    alerts += eng.feed(reading(4, 25.0))
    assert alerts == []
    for seq in range(5, 9):  # 8 s of dropouts, still below 10 s
        alerts += eng.feed(reading(seq, 30.0, dropout_ms=400))
    assert alerts == []
    [alert] = eng.feed(reading(9, 30.0, dropout_ms=400))  # 10 s
    assert (alert.rule, alert.party, alert.media_start_ms, alert.media_end_ms) == (
        "poor_audio:agent",
        "agent",
        10_000,
        20_000,
    )
    assert alert.evidence["reasons"] == ["dropouts"]
    assert eng.feed(reading(10, 2.0)) == []  # same rule, same call: once


def test_compliance_misses_and_forbidden_phrases_by_severity() -> None:
    eng = engine(compliance_min_severity="major", learned=False)
    eng.feed(opened())
    minor = finding("c1", 0, PhraseMissed("thanks", "last 10 s", "minor", 0.0, 9000))
    major = finding(
        "c1", 1, PhraseMissed("greeting", "first 10 s of agent speech", "major", 10.0, 10_000)
    )
    forbidden = finding(
        "c1",
        2,
        ForbiddenPhraseSaid(
            "guarantee", "guaranteed returns", "guaranteed return", 0.93, 4000, 5000, "agent",
            "critical",
        ),
    )  # fmt: skip
    assert eng.feed(minor) == []
    [miss] = eng.feed(major)
    assert (miss.rule, miss.kind, miss.severity) == (
        "compliance_miss:greeting",
        "compliance_miss",
        "warning",
    )
    [said] = eng.feed(forbidden)
    assert (said.rule, said.severity) == ("forbidden_phrase:guarantee", "critical")
    assert said.party == "agent"
    assert said.evidence["score"] == 0.93
    matched = finding("c1", 3, PhraseMatched("greeting", "hello", "hello", 99.0, 0, 1, "agent"))
    assert eng.feed(matched) == []


def test_asr_falling_behind() -> None:
    eng = engine(asr_latency_s=10, asr_shed=2, learned=False)
    eng.feed(opened())
    seg = segment("c1", "agent", 1000, 3000, "hi", latency_ms=9000)
    assert eng.feed(seg) == []
    [late] = eng.feed(segment("c1", "agent", 4000, 6000, "x", latency_ms=12_500))
    assert late.rule == "asr_lag:latency" and late.evidence["latency_ms"] == 12_500
    assert eng.feed(mark("c1", 3, "asr_shed", 7000, "agent")) == []
    [shed] = eng.feed(mark("c1", 4, "asr_shed", 9000, "customer"))
    assert shed.rule == "asr_lag:shed" and shed.evidence["shed"] == 2


def test_media_stalled_on_wall_time() -> None:
    eng = engine(media_stall_s=5, learned=False)
    eng.feed(opened())
    assert eng.tick(MediaTick("c1", 10_000, 100.0)) == []
    assert eng.tick(MediaTick("c1", 10_000, 104.9)) == []  # no audio for 4.9 s
    [stall] = eng.tick(MediaTick("c1", 10_000, 105.0))
    assert (stall.rule, stall.severity, stall.evidence["stalled_s"]) == (
        "media_stalled",
        "critical",
        5.0,
    )
    assert eng.tick(MediaTick("c1", 10_000, 110.0)) == []
    # A call that hung up and waits for its last transcripts is not stalled.
    eng.feed(opened("c2"))
    assert eng.tick(MediaTick("c2", 10_000, 100.0)) == []
    eng.feed(mark("c2", 9, "disconnected", 10_000))
    assert eng.tick(MediaTick("c2", 10_000, 200.0)) == []


def test_media_falling_behind_wall_time_is_a_stall_too() -> None:
    eng = engine(media_stall_s=5, learned=False)
    eng.feed(opened())
    alerts = []
    for i in range(700):  # audio arrives at 90 % of real time, never stopping
        alerts += [(i, a) for a in eng.tick(MediaTick("c1", i * 90, i / 10))]
    [(i, stall)] = alerts
    assert i == 500 and stall.evidence["lag_s"] == pytest.approx(5.0)
    assert stall.message.startswith("audio 5.0 s behind")


def test_hold_ends_dead_air() -> None:
    eng = engine(dead_air_s=10, learned=False)
    eng.feed(opened())
    eng.feed(mark("c1", 5, "dead_air_started", 20_000))
    eng.feed(mark("c1", 6, "hold_started", 24_000))
    assert eng.tick(MediaTick("c1", 60_000, 60)) == []


def test_unknown_calls_and_closed_calls_are_ignored_and_seeded_rules_do_not_refire() -> None:
    eng = AlertEngine(AlertSettings(max_duration_s=10, learned=False),
                      fired=[("c1", "duration_long:limit")])  # fmt: skip
    assert eng.tick(MediaTick("ghost", 99_000, 1)) == []
    eng.feed(opened())
    assert run_ticks(eng, "c1", 20_000, 1000) == []  # raised before a restart
    eng.feed(closed(ms=20_000))
    assert eng.calls == []
    assert eng.tick(MediaTick("c1", 30_000, 30)) == []
