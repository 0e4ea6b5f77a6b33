"""Pure DSP: P.56 active level, codec full scale, G.711, clipping counts, the P.56 ladder
helpers, and the metric VAD's frame analysis."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from audio_quality.frame_features import analyse_frames
from audio_quality.g711 import alaw_decode, alaw_encode, round_trip, ulaw_decode, ulaw_encode
from audio_quality.impair import hard_clip_to_ratio, noise_gain_for_snr
from audio_quality.levels import (
    active_speech_level,
    canonical_codec,
    clip_count,
    full_scale,
    ladder_counts,
    trailing_max,
)
from tests.quality_support import load, path_files, speech_track


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_track(path_files("16k"), 16000, 0, 12.0, (0.2, 0.5))


def test_p56_ignores_silence_and_tracks_gain(speech: np.ndarray) -> None:
    ref = active_speech_level(speech, 16000)
    for share in (0.2, 0.6):
        padded = np.concatenate([speech, np.zeros(int(speech.size * share / (1 - share)))])
        lv = active_speech_level(padded, 16000)
        assert abs(lv.level_dbov - ref.level_dbov) < 0.2
        assert lv.activity_factor == pytest.approx(ref.activity_factor * (1 - share), rel=0.05)
        assert lv.long_term_dbov < ref.long_term_dbov - 0.9
    for gain_db in (-20.0, 20.0):
        lv = active_speech_level(speech * 10 ** (gain_db / 20), 16000)
        assert lv.level_dbov - ref.level_dbov == pytest.approx(gain_db, abs=0.1)


def test_p56_of_a_sine_and_of_silence() -> None:
    t = np.arange(16000 * 2) / 16000
    sine = 0.5 * np.sin(2 * np.pi * 1000 * t)
    # A steady tone is active throughout: level = its RMS (−9.03 dB re full scale 1.0).
    lv = active_speech_level(sine, 16000, 1.0)
    assert lv.level_dbov == pytest.approx(-9.03, abs=0.1)
    assert lv.activity_factor == pytest.approx(1.0, abs=0.02)
    assert active_speech_level(np.zeros(1000), 8000).level_dbov == -np.inf
    with pytest.raises(ValueError, match="sample_rate"):
        active_speech_level(sine, 0)


def test_noise_gain_sets_the_snr(speech: np.ndarray) -> None:
    noise = np.random.default_rng(0).normal(0, 1000, speech.size)
    g = noise_gain_for_snr(speech, noise, 12.0, 16000)
    level = active_speech_level(speech, 16000, 1.0).level_dbov
    assert level - 10 * np.log10(np.mean((g * noise) ** 2)) == pytest.approx(12.0, abs=1e-6)


def test_codec_full_scale_and_names() -> None:
    assert full_scale("L16") == 32767 and full_scale("ulaw") == 32124
    assert full_scale("g711a") == 32256
    assert canonical_codec(" PCMU ") == "PCMU"
    with pytest.raises(ValueError, match="codec"):
        full_scale("opus")


def test_g711_is_bit_exact_with_the_reference() -> None:
    x = np.arange(-32768, 32768, dtype=np.int16)
    codes = np.arange(256, dtype=np.uint8)
    assert np.abs(ulaw_decode(codes).astype(np.int32)).max() == 32124
    assert np.abs(alaw_decode(codes).astype(np.int32)).max() == 32256
    # Decoded values survive another round trip (μ-law's "negative zero" 0x7F becomes 0xFF).
    assert np.array_equal(round_trip(ulaw_decode(codes), "PCMU"), ulaw_decode(codes))
    assert np.array_equal(alaw_encode(alaw_decode(codes)), codes)
    assert np.array_equal(round_trip(x, "L16"), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop  # CPython's C implementation of G.711 (gone in 3.13)
        except ImportError:
            pytest.skip("audioop not available")
    raw = x.tobytes()
    assert np.array_equal(ulaw_encode(x), np.frombuffer(audioop.lin2ulaw(raw, 2), np.uint8))
    assert np.array_equal(alaw_encode(x), np.frombuffer(audioop.lin2alaw(raw, 2), np.uint8))
    assert np.array_equal(ulaw_decode(codes), np.frombuffer(audioop.ulaw2lin(codes.tobytes(), 2),
                                                            np.int16))  # fmt: skip


def test_clip_count_counts_runs_of_two_or_more_across_calls() -> None:
    x = np.array([0, 32767, 0, 32767, 32767, 0, -32767, -32767, -32767, 0, 32767], np.int16)
    counts, left = clip_count(x, 32734, np.zeros(2, dtype=np.bool_))
    assert counts.sum() == 5  # the single peaks at 1 and 10 do not count
    # Split anywhere: the same total, thanks to the two-sample context.
    for cut in range(1, x.size):
        c1, l1 = clip_count(x[:cut], 32734, np.zeros(2, dtype=np.bool_))
        c2, _ = clip_count(x[cut:], 32734, l1)
        assert c1.sum() + c2.sum() == 5
    assert left.tolist() == [False, True]


def test_hard_clip_hits_the_ratio(speech: np.ndarray) -> None:
    y = hard_clip_to_ratio(speech, 0.01, 32767.0)
    assert np.mean(np.abs(y) >= 32767.0) == pytest.approx(0.01, rel=0.05)


def test_ladder_helpers_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    v = rng.integers(-1, 16, 300).astype(np.int8)
    h = rng.integers(-1, 16, 9).astype(np.int8)
    full = np.concatenate([h, v])
    assert np.array_equal(trailing_max(v, 10, h), [full[k : k + 10].max() for k in range(300)])
    counts = ladder_counts(v)
    assert counts.tolist() == [int((v >= j).sum()) for j in range(16)]


def test_frame_analysis_tells_voiced_speech_from_noise() -> None:
    vowel_rich = load(path_files("8k-ulaw")[-1], 8000)
    frames = np.clip(vowel_rich[: vowel_rich.size // 80 * 80], -32768, 32767).astype(np.int16)
    band, periodic, _ = analyse_frames(frames.reshape(-1, 80), np.zeros(160))
    loud = 10 * np.log10(band + 1e-9) > 10 * np.log10(band.max()) - 20
    assert np.mean(periodic[loud] > 0.6) > 0.5
    noise = np.random.default_rng(0).normal(0, 3000, 8000 * 3).astype(np.int16)
    _, periodic_n, _ = analyse_frames(noise.reshape(-1, 80), np.zeros(160))
    assert np.mean(periodic_n > 0.6) < 0.02
