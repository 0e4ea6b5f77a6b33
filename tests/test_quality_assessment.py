"""assess(): thresholds to findings with severity and span, score and grade."""

from __future__ import annotations

from dataclasses import replace

import pytest

from audio_quality.assessment import assess
from audio_quality.records import ConversationSummary, PartyQualitySummary
from audio_quality.settings import QualitySettings

SETTINGS = QualitySettings()

GOOD_PARTY = PartyQualitySummary(
    party="agent", sample_rate_hz=8000, codec="PCMU", duration_ms=300_000, speech_ms=120_000,
    speech_ratio=0.4, speech_level_dbov=-24.0, noise_level_dbov=-60.0, snr_db=36.0,
    snr_min_db=30.0, clipped_samples=0, clip_ratio=0.0, dropouts=0, dropout_ms=0,
    missing_ms=0, readings=150, dnsmos_windows_scored=12, dnsmos_windows_skipped=20,
    dnsmos_windows_dropped=0, dnsmos_sig_mean=3.6, dnsmos_bak_mean=3.9, dnsmos_ovrl_mean=3.2,
    dnsmos_ovrl_min=3.0, dnsmos_model_sample_rate_hz=16000,
)  # fmt: skip
GOOD_CALL = ConversationSummary(
    duration_ms=300_000, hold_ms=0, ivr_ms=0, agent_talk_ms=120_000, customer_talk_ms=110_000,
    agent_talk_ratio=0.52, agent_talk_share=0.4, customer_talk_share=0.37, non_talk_ms=60_000,
    non_talk_ratio=0.2, dead_air_min_ms=5000, dead_air_count=0, dead_air_total_ms=0,
    dead_air_max_ms=0, dead_air_longest_start_ms=None, dead_air_longest_end_ms=None,
    overtalk_min_ms=500, overtalk_count=2, overtalk_total_ms=1500, overtalk_max_ms=900,
    agent_interruptions=1, customer_interruptions=1, response_gap_count=20,
    response_gap_mean_ms=800.0, response_gap_max_ms=2500, first_response_ms=1200,
    agent_words_per_min=150.0, agent_chars_per_min=None, customer_words_per_min=140.0,
    customer_chars_per_min=None,
)  # fmt: skip


def test_clean_call_is_excellent() -> None:
    a = assess([GOOD_PARTY, replace(GOOD_PARTY, party="customer")], GOOD_CALL, SETTINGS)
    assert a.findings == () and a.score == 100.0 and a.grade == "excellent"


def test_findings_carry_kind_severity_party_value_threshold_and_span() -> None:
    noisy = replace(GOOD_PARTY, party="customer", snr_db=6.0, dnsmos_ovrl_mean=2.5,
                    clipped_samples=4000, clip_ratio=0.002)  # fmt: skip
    call = replace(GOOD_CALL, dead_air_count=1, dead_air_max_ms=12_000,
                   dead_air_longest_start_ms=40_000, dead_air_longest_end_ms=52_000,
                   agent_words_per_min=240.0, customer_chars_per_min=350.0)  # fmt: skip
    a = assess([GOOD_PARTY, noisy], call, SETTINGS)
    got = {(f.kind, f.party): f for f in a.findings}
    assert got["poor_snr", "customer"].severity == "critical"
    assert got["poor_snr", "customer"].threshold == SETTINGS.thresholds.snr_min_db_critical
    assert got["low_clarity", "customer"].severity == "warning"
    assert got["clipping", "customer"].severity == "warning"
    assert got["clipping", "customer"].unit == "ratio"
    dead = got["long_dead_air", None]
    assert (dead.severity, dead.start_ms, dead.end_ms, dead.value) == (
        "warning", 40_000, 52_000, 12_000.0)  # fmt: skip
    assert got["fast_speech", "agent"].severity == "critical"
    assert got["fast_speech", "customer"].unit == "chars_per_min"
    assert len(a.findings) == 6
    # 100 - 25·1.0 (snr) - 10·1.2 (clarity) - 10·0.8 (clip) - 10 (dead air) - 25·0.5 - 10·0.5
    assert a.score == pytest.approx(27.5)
    assert a.grade == "needs_improvement"


def test_grades_follow_the_score_bands() -> None:
    one_warning = replace(GOOD_PARTY, speech_level_dbov=-40.0)  # low_level, weight 0.6
    assert assess([one_warning], None, SETTINGS).grade == "excellent"  # 94
    two = replace(one_warning, snr_db=12.0)  # + poor_snr warning: 84
    assert assess([two], None, SETTINGS).grade == "good"
    three = replace(two, dnsmos_ovrl_mean=2.0)  # + low_clarity critical: 54
    assert assess([three], None, SETTINGS).grade == "needs_improvement"
    lenient = QualitySettings(score={"pass_min": 50.0})
    assert assess([three], None, lenient).grade == "pass"


def test_unmeasurable_values_make_no_findings() -> None:
    silent = replace(GOOD_PARTY, snr_db=None, speech_level_dbov=None, dnsmos_ovrl_mean=None)
    call = replace(GOOD_CALL, response_gap_mean_ms=None, agent_words_per_min=None)
    assert assess([silent], call, SETTINGS).findings == ()
