"""Known impairments for validation, benchmarks and the simulator: noise at a P.56-relative
SNR, hard clipping to a target ratio, resampling, int16 conversion.

Owns the *definitions* the validation measures against, so the tests, `scripts/bench_quality.py`
and `ivr_sim` agree on them. The SNR of a mix is defined as in QUALITY_METRICS.md §10: the
ITU-T P.56 active level of the clean speech minus the mean power of the noise, both over the
whole signal at the rate the estimator sees (so for the 8 kHz path the truth is in-band).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy import signal

from audio_quality.levels import active_speech_level


def resample(x: npt.ArrayLike, from_rate: int, to_rate: int) -> npt.NDArray[np.float64]:
    """Polyphase resampling (`scipy.signal.resample_poly`, Kaiser window) as float64."""
    xs = np.asarray(x, dtype=np.float64)
    if from_rate == to_rate:
        return xs.copy()
    ratio = Fraction(to_rate, from_rate)
    return np.asarray(signal.resample_poly(xs, ratio.numerator, ratio.denominator))


def to_int16(x: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Round and saturate to int16."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64)), -32768, 32767).astype(np.int16)


def fit_noise(noise: npt.ArrayLike, n: int, offset: int = 0) -> npt.NDArray[np.float64]:
    """`n` samples of `noise`, looped from `offset` (real recordings are shorter than calls)."""
    z = np.asarray(noise, dtype=np.float64)
    if z.size == 0:
        raise ValueError("noise must not be empty")
    idx = (np.arange(n) + offset) % z.size
    return z[idx]


def noise_gain_for_snr(
    speech: npt.ArrayLike, noise: npt.ArrayLike, snr_db: float, sample_rate: int
) -> float:
    """Gain g such that P.56(speech) − 10·log10(mean((g·noise)²)) = snr_db."""
    level = active_speech_level(speech, sample_rate, 1.0).level_dbov
    n = np.asarray(noise, dtype=np.float64)
    noise_db = 10.0 * math.log10(float(np.mean(n * n)))
    if math.isinf(level):
        raise ValueError("speech has no active level (is it silent?)")
    return float(10.0 ** ((level - snr_db - noise_db) / 20.0))


def hard_clip_to_ratio(
    x: npt.ArrayLike, ratio: float, full_scale_value: float
) -> npt.NDArray[np.float64]:
    """Amplify `x` until about `ratio` of its samples exceed full scale, then saturate there:
    the clipping an over-driven microphone or gain stage produces. Returns float64; the
    samples at ±full_scale are the clipped ones."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    xs = np.asarray(x, dtype=np.float64)
    t = float(np.quantile(np.abs(xs), 1.0 - ratio))
    if t <= 0.0:
        raise ValueError("signal is too sparse to clip at that ratio")
    return np.asarray(np.clip(xs * (full_scale_value / t), -full_scale_value, full_scale_value))
