"""One-sided calls (issue 19 item 6): a party whose audio is not streamed is absent, not
silent. Real customer speech on a customer-only stream (Twilio inbound track, mono fork)."""

from __future__ import annotations

from audio_quality.impair import to_int16
from audio_quality.settings import QualitySettings
from config.settings import GradingSettings
from monitor.board.state import BoardState
from monitor.core.analysis import NO_AGENT_LEG, CallAnalyzer
from monitor.core.metadata import parse_metadata
from monitor.qa import PhraseMissed, load_compliance_scripts
from tests.quality_support import LJ, oracle_spans, speech_track
from tests.test_board_state import T0, opened

QUALITY = QualitySettings(dnsmos={"enabled": False})


def run_customer_only(seconds: float = 12.0) -> tuple[object, list[object], int]:
    clean = speech_track(LJ, 8000, 3, seconds, (0.4, 1.2))
    truth = sum(b - a for a, b in oracle_spans(clean, 8000))
    meta = parse_metadata('{"callid":"tw1","sampleRate":8000,"channels":1}')
    analyzer = CallAnalyzer(meta, QUALITY, GradingSettings(), load_compliance_scripts(), "en")
    pcm = to_int16(clean).astype("<i2").tobytes()
    events: list[object] = []
    for i in range(0, len(pcm), 320):
        events += analyzer.feed(pcm[i : i + 320])
    said = "Hi, I'm calling about my bill, it looks wrong."
    events += analyzer.on_segment("u1", "customer", 500, 4000, said, "en")
    events += analyzer.flush()
    return analyzer.finish(), events, truth


def test_present_party_talk_is_measured_and_the_absent_one_is_na() -> None:
    verdict, events, truth = run_customer_only()
    conv = verdict.conversation  # type: ignore[attr-defined]
    assert conv.absent == ("agent",)
    # Before: 0 s of talk for 12 s of customer speech.
    assert abs(conv.customer_talk_ms - truth) < 0.15 * truth
    assert conv.agent_talk_ratio is None and conv.first_response_ms is None
    assert conv.dead_air_count == 0 and conv.response_gap_mean_ms is None
    parties = verdict.parties  # type: ignore[attr-defined]
    assert set(parties) == {"customer"}  # no agent metrics at all, rather than zeros
    kinds = {f.kind for f in verdict.assessment.findings}  # type: ignore[attr-defined]
    assert not kinds & {"long_dead_air", "excessive_overtalk", "slow_response"}


def test_agent_script_does_not_run_without_the_agent_leg() -> None:
    verdict, events, _ = run_customer_only()
    assert not [e for e in events if isinstance(e, PhraseMissed)]  # before: six misses
    assert verdict.compliance is None  # type: ignore[attr-defined]
    card = verdict.scorecard  # type: ignore[attr-defined]
    assert card.notes == (NO_AGENT_LEG,) and card.compliance_score is None
    assert card.quality_weight == 1.0


def test_board_card_says_the_script_is_not_checked() -> None:
    board = BoardState(today=T0.date())
    ev = opened()
    board.apply(type(ev)(**{**{f: getattr(ev, f) for f in ev.__dataclass_fields__},
                            "parties": (("customer", 0),)}), now=0.0)  # fmt: skip
    [card] = board.snapshot()["calls"]
    assert card["no_agent_leg"] is True and card["checklist"] == []
    assert list(card["parties"]) == ["customer"]
    board.apply(opened("c2"), now=0.0)
    two = next(c for c in board.snapshot()["calls"] if c["call_id"] == "c2")
    assert two["no_agent_leg"] is False and two["checklist"]
