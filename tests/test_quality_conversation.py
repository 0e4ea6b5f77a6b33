"""ConversationTracker: exact behaviour on hand-made activity, then validation on constructed
two-party calls built from real clips with planned gaps, overlaps and a hold.

Validation truth: each party's clean track (before noise and codec) segmented by
`oracle_spans` (10 ms frames within 35 dB of the track's P.56 level, pauses < 250 ms
bridged), fed through the same ConversationTracker with the same hold hints. The measured
side sees only the noisy, codec-processed audio through `PartyQualityTracker`.
"""

from __future__ import annotations

import numpy as np
import pytest

from audio_quality.conversation import ConversationTracker, count_units
from audio_quality.errors import TrackerFinishedError
from audio_quality.records import ActivitySpan, DeadAirDetected, DeadAirStarted, OvertalkDetected
from audio_quality.settings import QualitySettings
from tests.quality_support import (
    build_call,
    call_plan,
    match_events,
    oracle_activity,
    run_call,
    run_conversation,
)

SETTINGS = QualitySettings(dnsmos={"enabled": False})


def spans(party: str, speech: list[tuple[int, int]], end_ms: int) -> list[ActivitySpan]:
    """Tile [0, end_ms) with silence around the given speech spans."""
    out, t = [], 0
    for a, b in speech:
        if a > t:
            out.append(ActivitySpan(party, t, a, False))
        out.append(ActivitySpan(party, a, b, True))
        t = b
    if t < end_ms:
        out.append(ActivitySpan(party, t, end_ms, False))
    return out


def run(agent: list[tuple[int, int]], customer: list[tuple[int, int]], end_ms: int,
        conv: ConversationTracker | None = None):  # fmt: skip
    conv = conv or ConversationTracker(SETTINGS)
    events = conv.add_activity(spans("agent", agent, end_ms))
    events += conv.add_activity(spans("customer", customer, end_ms))
    events += conv.flush()
    return events, conv.finish()


def test_talk_time_ratio_and_non_talk() -> None:
    events, s = run([(0, 4000), (10_000, 12_000)], [(4500, 9000)], 12_000)
    assert (s.agent_talk_ms, s.customer_talk_ms) == (6000, 4500)
    assert s.agent_talk_ratio == pytest.approx(6000 / 10_500)
    assert s.non_talk_ms == 500 + 1000
    assert s.agent_talk_share == pytest.approx(0.5)
    assert events == []


def test_dead_air_needs_speech_on_both_sides_and_min_length() -> None:
    events, s = run([(2000, 3000), (9000, 10_000), (14_900, 15_000)], [], 30_000)
    dead = [e for e in events if isinstance(e, DeadAirDetected)]
    # 3 s → 9 s is dead air; 10 s → 14.9 s is 4.9 s (< 5 s); leading and trailing silence
    # (before anyone spoke, after the last word) are not dead air.
    assert dead == [DeadAirDetected(3000, 9000)]
    assert DeadAirStarted(3000, 8000) in events
    assert (s.dead_air_count, s.dead_air_total_ms, s.dead_air_max_ms) == (1, 6000, 6000)
    assert (s.dead_air_longest_start_ms, s.dead_air_longest_end_ms) == (3000, 9000)
    assert s.dead_air_min_ms == 5000


def test_overtalk_interrupter_is_who_started_later() -> None:
    events, s = run([(0, 5000), (8000, 12_000)], [(4000, 7000), (11_000, 11_400)], 13_000)
    over = [e for e in events if isinstance(e, OvertalkDetected)]
    # 4.0–5.0 s: the customer cut in on the agent; 11.0–11.4 s is shorter than 500 ms.
    assert over == [OvertalkDetected(4000, 5000, "customer", "agent")]
    assert (s.overtalk_count, s.overtalk_total_ms, s.customer_interruptions) == (1, 1000, 1)
    assert s.agent_interruptions == 0


def test_events_come_as_soon_as_both_parties_decided() -> None:
    conv = ConversationTracker(SETTINGS)
    assert conv.add_activity(spans("agent", [(0, 1000), (7000, 8000)], 9000)) == []
    # The customer's side is known only up to 7.5 s: the dead air 1 s → 7 s is already known.
    events = conv.add_activity([ActivitySpan("customer", 0, 7500, False)])
    assert DeadAirDetected(1000, 7000) in events


def test_hold_and_ivr_are_excluded() -> None:
    conv = ConversationTracker(SETTINGS)
    conv.hold_started(2000)
    conv.hold_ended(22_000)
    conv.ivr_prompt(25_000, 28_000)
    # Music on hold is "speech" on the agent leg; the prompt plays into the customer leg.
    events, s = run([(0, 2000), (2000, 22_000), (33_000, 34_000)],
                    [(22_500, 24_000), (25_000, 28_000)], 35_000, conv)  # fmt: skip
    assert [e for e in events if isinstance(e, DeadAirDetected)] == [
        DeadAirDetected(28_000, 33_000)
    ]
    assert s.hold_ms == 20_000 and s.ivr_ms == 3000
    assert (s.agent_talk_ms, s.customer_talk_ms) == (3000, 1500)
    assert s.overtalk_count == 0


def test_ivr_prompt_markers_start_and_end_like_hold() -> None:
    # As the runtime feeds them from the switch's text frames: a start, later an end.
    conv = ConversationTracker(SETTINGS)
    conv.add_activity(spans("agent", [(0, 2000)], 3000))
    conv.add_activity(spans("customer", [], 3000))
    conv.ivr_prompt_started(3000)
    conv.add_activity([ActivitySpan("agent", 3000, 12_000, False)])
    conv.add_activity([ActivitySpan("customer", 3000, 10_000, True)])  # the prompt plays
    conv.ivr_prompt_ended(10_000)
    events = conv.add_activity([ActivitySpan("customer", 10_000, 12_000, False)])
    events += conv.add_activity([ActivitySpan("agent", 12_000, 13_000, True)])
    events += conv.add_activity([ActivitySpan("customer", 12_000, 13_000, False)])
    events += conv.flush()
    s = conv.finish()
    # 2 s → 3 s and 10 s → 12 s are silence but no stretch reaches 5 s outside the prompt.
    assert [e for e in events if isinstance(e, (DeadAirDetected, DeadAirStarted))] == []
    assert s.ivr_ms == 7000 and s.customer_talk_ms == 0


def test_response_gaps_and_first_response() -> None:
    _, s = run([(3000, 5000), (6500, 8000), (12_000, 13_000)], [(500, 2500), (8500, 11_000)],
               14_000)  # fmt: skip
    # Gaps: 2.5 → 3.0 s and 11.0 → 12.0 s; the agent's first word at 3.0 s.
    assert s.response_gap_count == 2
    assert s.response_gap_mean_ms == pytest.approx(750)
    assert s.response_gap_max_ms == 1000
    assert s.first_response_ms == 3000


def test_speaking_rate_words_and_han_characters() -> None:
    conv = ConversationTracker(SETTINGS)
    conv.add_transcript("agent", 0, 6000, "Thank you for calling, how can I help you today?", "en")
    conv.add_transcript("customer", 6000, 12_000, "我想查询一下我的账户余额谢谢", "zh")
    _, s = run([(0, 3000), (3500, 6000)], [(6000, 10_000)], 12_000, conv)
    # 10 words over 5.5 s of agent speech; 14 characters over 4 s of customer speech.
    assert s.agent_words_per_min == pytest.approx(10 / 5.5 * 60)
    assert s.customer_chars_per_min == pytest.approx(14 / 4 * 60)
    assert s.agent_chars_per_min is None and s.customer_words_per_min is None
    assert count_units("I'm fine, thanks", None) == (3, "words")
    assert count_units("好的 OK", "auto") == (2, "chars")


def test_misuse_raises() -> None:
    conv = ConversationTracker(SETTINGS)
    with pytest.raises(ValueError, match="party"):
        conv.add_transcript("supervisor", 0, 1, "hi", "en")
    with pytest.raises(ValueError, match="end_ms"):
        conv.ivr_prompt(10, 5)
    conv.finish()
    with pytest.raises(TrackerFinishedError):
        conv.add_activity([])
    with pytest.raises(ValueError, match="differ"):
        ConversationTracker(SETTINGS, agent="x", customer="x")


# ---- validation on constructed calls ------------------------------------------------------

#: (rate, codec, noise, SNR dB, talk-time error bounds). Talk time is held to ±2 % from clean
#: lines down to 20 dB SNR and to ±3 % at 10 dB: the metric VAD bridges pauses and extends
#: turn ends by as much of the speech's faint range as the noise hides (without that, 20 dB
#: read 5–10 % low and 10 dB 11–16 % low). Clinking dishes, and the music on hold running
#: into the agent's next turn, are sometimes loud and tonal enough to count as talk: a known
#: over-count of up to 4–5 % on the agent leg.
CONDITIONS = [
    (16000, "L16", None, 0.0, (-0.02, 0.02)),
    (8000, "PCMU", None, 0.0, (-0.02, 0.02)),
    (16000, "L16", "bike", 30.0, (-0.02, 0.02)),
    (8000, "PCMU", "bike", 20.0, (-0.02, 0.02)),
    (16000, "L16", "bike", 10.0, (-0.03, 0.03)),
    (8000, "PCMU", "babble", 20.0, (-0.02, 0.02)),
    (16000, "L16", "dishes", 30.0, (-0.02, 0.05)),
]
IDS = [f"{r // 1000}k-{c}-{n or 'clean'}-{int(s)}dB" for r, c, n, s, _ in CONDITIONS]


@pytest.mark.parametrize(("rate", "codec", "noise", "snr", "talk_bounds"), CONDITIONS, ids=IDS)
def test_constructed_call(
    rate: int, codec: str, noise: str | None, snr: float, talk_bounds: tuple[float, float]
) -> None:
    res = run_call(rate, codec, noise, snr, seed=1, settings=SETTINGS, variant=rate // 8000)
    for kind in (DeadAirDetected, OvertalkDetected):
        m = match_events(res.truth_events, res.events, kind)
        precision = m.hits / m.measured if m.measured else 1.0
        recall = m.hits / m.truth
        worst = max(map(abs, m.boundary_errors_ms), default=0)
        print(f"{kind.__name__}: truth {m.truth} measured {m.measured} hits {m.hits}, "
              f"boundary error max {worst} ms")  # fmt: skip
        assert m.truth == 3
        assert precision >= 0.95 and recall >= 0.95
        assert worst <= 300
    t, s = res.truth, res.measured
    agent_err = s.agent_talk_ms / t.agent_talk_ms - 1
    customer_err = s.customer_talk_ms / t.customer_talk_ms - 1
    print(f"talk time error: agent {agent_err:+.1%}, customer {customer_err:+.1%}")
    lo, hi = talk_bounds
    assert lo <= agent_err <= hi and lo <= customer_err <= hi
    # The 20 s hold has music on the agent leg: no dead air, no talk, no overtalk in it.
    (h0, h1), = res.holds_ms  # fmt: skip
    assert s.hold_ms == h1 - h0
    for e in res.events:
        if isinstance(e, (DeadAirDetected, OvertalkDetected)):
            assert e.end_ms <= h0 or e.start_ms >= h1


def test_background_talkers_do_not_stretch_turns() -> None:
    # 8-talker babble 20 dB under each party: its voicing used to keep a turn going after the
    # party stopped (overtalk boundaries 410 ms late on this call; 630 ms for dead air on
    # others). With voicing near a speech-like floor discounted, boundaries stay in 0.3 s.
    res = run_call(16000, "L16", "babble", 20.0, seed=1, settings=SETTINGS, variant=1)
    for kind in (DeadAirDetected, OvertalkDetected):
        m = match_events(res.truth_events, res.events, kind)
        worst = max(map(abs, m.boundary_errors_ms), default=0)
        print(f"{kind.__name__}: hits {m.hits}/{m.truth}, measured {m.measured}, "
              f"boundary error max {worst} ms")  # fmt: skip
        assert m.hits == m.truth == m.measured == 3
        assert worst <= 300
    t, s = res.truth, res.measured
    for measured, truth in (
        (s.agent_talk_ms, t.agent_talk_ms),
        (s.customer_talk_ms, t.customer_talk_ms),
    ):
        assert abs(measured / truth - 1) <= 0.03


@pytest.mark.parametrize("kind", ["hold", "ivr_prompt"])
def test_switch_markers_reach_the_party_trackers_through_the_analyzer(kind: str) -> None:
    # The runtime path: the switch's hold and prompt markers go to `CallAnalyzer`, which
    # tells the conversation tracker and each party's metric VAD (no speech stretch runs
    # across a marker). The 20 s of music on the agent leg is marked; told to the
    # conversation tracker alone, the stretch that carries the music also swallows the
    # clatter before it and the silence after it, up to the agent's next turn.
    from config.settings import load_settings
    from monitor.core.analysis import CallAnalyzer
    from monitor.core.metadata import parse_metadata

    call = build_call(call_plan(0), 16000, "L16", "dishes", 30.0, seed=1)
    ((h0, h1),) = call.holds_ms
    meta = parse_metadata('{"callId": "c1", "channels": 2, "sampleRate": 16000}')
    pcm = np.zeros((call.audio["agent"].size, 2), dtype="<i2")
    for party, channel in meta.channel_of.items():
        pcm[:, channel] = call.audio[party.value]
    truth_act = {p: oracle_activity(call, p, SETTINGS.vad.min_silence_ms) for p in call.clean}
    _, truth = run_conversation(truth_act, call.holds_ms, SETTINGS)

    def agent_talk_error(through_analyzer: bool) -> float:
        analyzer = CallAnalyzer(meta, SETTINGS, load_settings().grading, None, "en")
        marker = analyzer if through_analyzer else analyzer.conversation
        start, end = getattr(marker, f"{kind}_started"), getattr(marker, f"{kind}_ended")
        for i in range(0, pcm.shape[0], 320):  # 20 ms packets; a marker comes with its own
            if i <= h0 * 16 < i + 320:
                start(h0)
            if i <= h1 * 16 < i + 320:
                end(h1)
            analyzer.feed(pcm[i : i + 320].tobytes())
        analyzer.flush()
        return analyzer.finish().conversation.agent_talk_ms / truth.agent_talk_ms - 1

    before, after = agent_talk_error(False), agent_talk_error(True)
    print(f"{kind}: agent talk time error, conversation only {before:+.1%}, analyzer {after:+.1%}")
    assert before > 0.05 and abs(after) <= 0.03
