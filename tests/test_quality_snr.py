"""Validation: blind SNR, speech level and clipping on real speech mixed with real noise.

Truth: SNR is the P.56 active level of the clean track minus the noise power, at the rate the
tracker sees (in-band for the 8 kHz μ-law path, where the mix then goes through G.711);
a mix that would clip is scaled down first (`mix_at_snr(..., headroom=True)`), or the truth
would count noise power the channel never carried. Figures are printed with `-s`;
scripts/bench_quality.py prints the full tables.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from audio_quality.g711 import round_trip
from audio_quality.impair import hard_clip_to_ratio, to_int16
from audio_quality.levels import active_speech_level, full_scale
from audio_quality.settings import QualitySettings
from audio_quality.snr import SpeechNoiseEstimator
from tests.quality_support import (
    NOISES,
    PATHS,
    mix_at_snr,
    path_files,
    snr_errors,
    speech_track,
    summarise,
)

SETTINGS = QualitySettings(dnsmos={"enabled": False})
#: Noise types held to the 3 dB p95 target on the test's two tracks.
TARGET_NOISES = ("dishes", "bike", "babble")
#: `impulsive` (one 0.2 s rattle of knocks per 4.9 s that carries most of the noise power) is
#: the documented weak spot: rattles well under the party's speech level (true SNR ≳ 20 dB)
#: cannot be told from speech inside it, so they are sampled only where they fall into
#: pauses, and with a handful of rattles per track the SNR reads high by 3–7 dB on some
#: tracks. Two tracks say little about that (the bounds this replaces, 6.5 / 3.0 dB on two
#: tracks, were met by luck: the code they were set on gives 7.98 / 4.49 dB on these six), so
#: it is held on six tracks to the p95 achieved (7.29 / 4.26 dB) with a small margin, and to
#: reading low by at most 4 dB (at 0 dB a track with its rattles in pauses reads 3.6 dB low).
IMPULSIVE_SEEDS = tuple(range(6))
IMPULSIVE_P95_DB = {"16k": 7.5, "8k-ulaw": 4.4}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("noise", [*TARGET_NOISES, "impulsive"])
def test_snr_estimate_error_p95(path: str, noise: str) -> None:
    seeds = IMPULSIVE_SEEDS if noise == "impulsive" else (0, 1)
    errors = np.array([e for _, e in snr_errors(path, noise, seeds=seeds, settings=SETTINGS)])
    assert np.isfinite(errors).all()
    p95 = float(np.percentile(np.abs(errors), 95))
    print(f"SNR error {path} {noise}: p95 {p95:.2f} dB, bias {errors.mean():+.2f} dB")
    if noise in TARGET_NOISES:
        assert p95 <= 3.0
    else:
        assert errors.min() >= -4.0 and p95 <= IMPULSIVE_P95_DB[path]


#: A call's party channel: a minute of speech and pauses (contact-centre calls run minutes).
CALL_SECONDS = 60.0


# Per commit on the telephone path (8 kHz μ-law); the wide-band call, which costs as much
# again, with `--long` (the per-clip tests above cover 16 kHz on every commit).
@pytest.mark.parametrize("path", ["8k-ulaw", pytest.param("16k", marks=pytest.mark.long)])
def test_snr_error_p95_over_a_call(path: str) -> None:
    # The 3 dB target over all four noises pooled, on tracks a call's length. Sparse noise
    # is seen only where it falls: a 24 s track holds about five of the knocks recording's
    # rattles, and whether one lands in a pause decides its reading (24 s pooled p95: 3.4 /
    # 3.6 dB); a minute holds a dozen (pooled p95 on seeds 0-5: 2.3 / 2.2 dB; 120 s: 1.2 /
    # 1.8 dB; scripts/bench_quality.py --snr-only --track-seconds N).
    errors = {
        noise: np.array(
            [e for _, e in snr_errors(path, noise, (0, 1), SETTINGS, seconds=CALL_SECONDS)]
        )
        for noise in NOISES
    }
    pooled = np.abs(np.concatenate(list(errors.values())))
    assert np.isfinite(pooled).all()
    p95 = {n: round(float(np.percentile(np.abs(e), 95)), 2) for n, e in errors.items()}
    print(f"SNR error over {CALL_SECONDS:g} s {path}: p95 {p95}, pooled "
          f"{np.percentile(pooled, 95):.2f} dB")  # fmt: skip
    assert np.percentile(pooled, 95) <= 3.0
    assert all(p95[n] <= 3.0 for n in TARGET_NOISES)


#: Clean LJ Speech clips not among the validation's (`path_files`): a second speaker set.
HELD_OUT_LJ = [f"en/ljspeech_LJ001-{n:04d}.flac" for n in (13, 16, 17, 18, 19, 20, 21, 22)]


@pytest.mark.parametrize("path", list(PATHS))
def test_clean_speech_reads_high_snr(path: str) -> None:
    # No added noise: the clips' own floor sits ~40 dB under the speech and the pauses
    # between clips are muted. A final "s", a breath or a faint syllable the VAD leaves out
    # must not count as noise (they put 5 of 20 such 16 kHz tracks at 20-28 dB before).
    readings = _clean_readings(path, path_files(path), range(6), 24.0)
    readings += _clean_readings(path, HELD_OUT_LJ, range(3), 24.0)
    print(f"clean {path}: SNR {[round(r) for r in readings]} dB")
    assert min(readings) >= 35.0


@pytest.mark.parametrize("path", list(PATHS))
def test_long_clean_call_reads_high_snr(path: str) -> None:
    # Two-minute tracks, muted pauses: the few noise frames of such a call are easily
    # outweighed by one loud sound taken for the line. A long fricative far from voicing
    # and a word cut off at the end of the call put 4 of these 6 16 kHz tracks (and 2 of
    # seeds 6-11) at 7-13 dB before they stopped counting as noise.
    readings = _clean_readings(path, path_files(path), (0, 1, 3, 4, 9), 120.0)
    print(f"clean 120 s {path}: SNR {[round(r) for r in readings]} dB")
    assert min(readings) >= 35.0


def _clean_readings(
    path: str, files: list[str], seeds: Iterable[int], seconds: float
) -> list[float]:
    """The call-summary SNR of clean tracks (no noise added, pauses muted)."""
    rate, codec = PATHS[path]
    readings = []
    for seed in seeds:
        speech = speech_track(files, rate, seed, seconds, (0.8, 3.0))
        s = summarise(round_trip(to_int16(speech), codec), rate, codec, SETTINGS)
        assert s.snr_db is not None
        readings.append(s.snr_db)
    return readings


@pytest.mark.parametrize("path", list(PATHS))
def test_speech_level_matches_p56_and_tracks_gain(path: str) -> None:
    rate, codec = PATHS[path]
    fs = full_scale(codec)
    speech = speech_track(path_files(path), rate, 2, 20.0, (0.8, 3.0))
    levels = []
    for gain_db in (-20.0, 0.0, 6.0):
        mix = mix_at_snr(speech * 10 ** (gain_db / 20), "bike", 40.0, rate, codec)
        s = summarise(mix.audio, rate, codec, SETTINGS)
        truth = active_speech_level(mix.clean, rate, fs).level_dbov
        assert s.speech_level_dbov is not None
        assert abs(s.speech_level_dbov - truth) <= 0.3
        levels.append(s.speech_level_dbov)
    assert levels[1] - levels[0] == pytest.approx(20.0, abs=0.3)
    assert levels[2] - levels[1] == pytest.approx(6.0, abs=0.3)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("ratio", [0.001, 0.005, 0.02])
def test_clipping_detected_at_codec_full_scale(path: str, ratio: float) -> None:
    rate, codec = PATHS[path]
    speech = speech_track(path_files(path), rate, 4, 15.0, (0.5, 1.0))
    # Over-driven before the codec: saturates at int16 full scale, then μ-law caps at 32124.
    clipped = round_trip(to_int16(hard_clip_to_ratio(speech, ratio, 32767.0)), codec)
    s = summarise(clipped, rate, codec, SETTINGS)
    print(f"clipping {path}: injected {ratio:.3%}, measured {s.clip_ratio:.3%}")
    assert s.clipped_samples > 0
    assert s.clip_ratio == pytest.approx(ratio, rel=0.5)
    assert s.clip_ratio >= SETTINGS.thresholds.clip_ratio_max_warning


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("peak_dbov", [-26.0, -6.0, -0.5])
def test_no_clipping_reported_on_clean_speech(path: str, peak_dbov: float) -> None:
    rate, codec = PATHS[path]
    speech = speech_track(path_files(path), rate, 5, 15.0, (0.5, 1.0))
    scaled = speech * (32767.0 * 10 ** (peak_dbov / 20) / np.abs(speech).max())
    s = summarise(round_trip(to_int16(scaled), codec), rate, codec, SETTINGS)
    assert s.clipped_samples == 0
    assert s.clip_ratio == 0.0


def test_l16_detector_would_miss_ulaw_clipping_without_codec_full_scale() -> None:
    # The point of a codec-aware full scale: μ-law never reaches 32767.
    rate = 8000
    speech = speech_track(path_files("8k-ulaw"), rate, 4, 10.0, (0.5, 1.0))
    clipped = round_trip(to_int16(hard_clip_to_ratio(speech, 0.01, 32767.0)), "PCMU")
    assert np.abs(clipped.astype(np.int32)).max() == 32124
    assert summarise(clipped, rate, "L16", SETTINGS).clipped_samples == 0
    assert summarise(clipped, rate, "PCMU", SETTINGS).clipped_samples > 0


def test_impacts_inside_speech_count_as_noise_sibilants_do_not() -> None:
    # Frame features straight into the estimator: a pause, then speech at -30 dBov with two
    # frames 10 dB louder and mostly above 2 kHz. Only the heavy-tailed one is an impact; the
    # noise-like one (a sibilant) stays speech.
    est = SpeechNoiseEstimator(5, -10.0, 50.0)
    n = 200
    pause = np.arange(n) < 60
    power = np.where(pause, 1e-7, 1e-3)
    est.add_block(power, ~pause, pause, np.full(n, -70.0), 0.05 * power, np.full(n, 3.0))
    power = np.full(n, 1e-3)
    power[[100, 150]] = 1e-2
    high, kurt = 0.05 * power, np.full(n, 3.0)
    high[[100, 150]] = 9e-3
    kurt[100] = 8.0
    speech = np.ones(n, dtype=np.bool_)
    est.add_block(power, speech, ~speech, np.full(n, -70.0), high, kurt)
    noise = est.rolling().noise_level_dbov
    assert noise == pytest.approx(10 * np.log10(1e-7 + 9e-3 / (2 * n)), abs=0.01)
