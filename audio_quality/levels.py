"""Levels on int16/float arrays: codec full scale, dBov, ITU-T P.56 active speech level, clipping.

Pure functions, no state: the streaming trackers (`party.py`, `snr.py`) call them per frame
block. Levels are in dBov, i.e. relative to the codec's digital full scale (`full_scale()`):
G.711 decoded to 16-bit linear never exceeds 32124 (μ-law) or 32256 (A-law), so a clipping
detector or a level that assumed 32767 would be wrong on those calls (QUALITY_METRICS.md §7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

#: Largest magnitude each codec can deliver after decoding to 16-bit linear PCM.
_FULL_SCALE = {"L16": 32767.0, "PCMU": 32124.0, "PCMA": 32256.0}
_CODEC_ALIASES = {
    "l16": "L16", "pcm": "L16", "linear16": "L16", "slin": "L16", "s16le": "L16",
    "pcmu": "PCMU", "ulaw": "PCMU", "mulaw": "PCMU", "g711u": "PCMU", "g711_ulaw": "PCMU",
    "pcma": "PCMA", "alaw": "PCMA", "g711a": "PCMA", "g711_alaw": "PCMA",
}  # fmt: skip

#: Power floor used where a frame is digital silence, so logs stay finite (-150 dBov).
POWER_FLOOR = 1e-15

# ITU-T P.56 method B constants (G.191 STL `sv-p56.c`).
P56_TIME_CONSTANT_S = 0.03
P56_HANGOVER_S = 0.2
P56_MARGIN_DB = 15.9
#: Threshold ladder c_j = 2^(j - 15) of full scale, j = 0..15 (6.02 dB apart).
P56_LADDER = 16


def canonical_codec(codec: str) -> str:
    """Map a codec name as switches spell it (`ulaw`, `PCMU`, `g711a`, `L16`, ...) to one of
    `L16`, `PCMU`, `PCMA`. Raises `ValueError` for anything else."""
    name = _CODEC_ALIASES.get(codec.strip().lower())
    if name is None:
        raise ValueError(f"codec must be one of {sorted(_CODEC_ALIASES)}, got {codec!r}")
    return name


def full_scale(codec: str) -> float:
    """Largest decoded magnitude for `codec` (32767 for L16, 32124 μ-law, 32256 A-law)."""
    return _FULL_SCALE[canonical_codec(codec)]


def power_db(mean_square: npt.ArrayLike, full_scale_value: float) -> npt.NDArray[np.float64]:
    """10·log10(mean_square / full_scale²), floored at `POWER_FLOOR` (dBov for int16 input)."""
    p = np.asarray(mean_square, dtype=np.float64) / (full_scale_value * full_scale_value)
    return np.asarray(10.0 * np.log10(np.maximum(p, POWER_FLOOR)), dtype=np.float64)


def frame_mean_square(frames: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Mean square of each row of a `(n_frames, frame_len)` int16 array, in linear units².

    Rows are reduced independently, so a frame's value never depends on how many frames were
    processed together (the trackers rely on this for chunk invariance).
    """
    f = frames.astype(np.float64)
    return np.asarray(np.einsum("ij,ij->i", f, f) / frames.shape[1], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ActiveLevel:
    """Result of `active_speech_level`."""

    level_dbov: float  # active speech level; -inf where nothing was active
    activity_factor: float  # fraction of samples counted active, 0..1
    long_term_dbov: float  # plain RMS level over all samples


def _ladder_level(lev_counts: npt.NDArray[np.int64], energy: float, margin_db: float) -> float:
    """Solve P.56's `A_j - C_j = margin` on the threshold ladder, by linear interpolation.

    `lev_counts[j]` is the number of samples (or sample-weighted frames) active at threshold
    c_j = 2^(j-15); `energy` is the sum of squares in the same normalised units. Returns the
    active level in dB (full scale = 0), or -inf when nothing is active.
    """
    if energy <= 0.0 or lev_counts[0] <= 0:
        return -math.inf
    prev_a = prev_delta = math.nan
    for j in range(P56_LADDER):
        if lev_counts[j] <= 0:
            break
        a_db = 10.0 * math.log10(energy / float(lev_counts[j]))
        c_db = 20.0 * math.log10(2.0 ** (j - 15))
        delta = a_db - c_db
        if delta <= margin_db:
            if j == 0:
                return a_db
            # Linear interpolation between ladder points j-1 and j (sv-p56 `bin_interp`).
            t = (prev_delta - margin_db) / (prev_delta - delta)
            return prev_a + t * (a_db - prev_a)
        prev_a, prev_delta = a_db, delta
    # Never crossed the margin: the top active threshold bounds the level.
    return prev_a


def active_speech_level(
    x: npt.ArrayLike, sample_rate: int, full_scale_value: float = 32768.0
) -> ActiveLevel:
    """ITU-T P.56 method B active speech level of a whole signal.

    Shape/dtype: `x` is 1-D, any real dtype, in the units of `full_scale_value` (int16 samples
    with 32768, or floats in [-1, 1] with 1.0). Formula: the envelope q is |x| smoothed twice by
    a one-pole filter with a 30 ms time constant; a sample is active at threshold c_j if q ≥ c_j
    at that sample or in the 200 ms before it; with a_j the active-sample count and
    A_j = 10·log10(Σx²/a_j), the level is where A_j − 20·log10(c_j) = 15.9 dB, interpolated
    between ladder points 6.02 dB apart. Reference: ITU-T P.56 (12/2011) Annex B and the G.191
    STL `sv56demo`; also `activlev` in VOICEBOX. Invariant to appended silence (that is the
    point: SNR and level norms are relative to it).
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if full_scale_value <= 0:
        raise ValueError(f"full_scale_value must be positive, got {full_scale_value}")
    xs = np.asarray(x, dtype=np.float64).ravel() / full_scale_value
    if xs.size == 0:
        return ActiveLevel(-math.inf, 0.0, -math.inf)
    g = math.exp(-1.0 / (sample_rate * P56_TIME_CONSTANT_S))
    # Two cascaded one-pole smoothers == one second-order section with a double pole at g.
    q = signal.lfilter([(1.0 - g) ** 2], [1.0, -2.0 * g, g * g], np.abs(xs))
    hang = int(math.floor(P56_HANGOVER_S * sample_rate + 0.5))
    act = ladder_index(q)
    act = trailing_max(act, hang + 1, np.full(hang, -1, dtype=np.int8))
    counts = ladder_counts(act)
    energy = float(np.dot(xs, xs))
    level = _ladder_level(counts, energy, P56_MARGIN_DB)
    long_term = 10.0 * math.log10(max(energy / xs.size, POWER_FLOOR))
    activity = 0.0 if math.isinf(level) else min(1.0, energy / xs.size / 10.0 ** (level / 10.0))
    return ActiveLevel(level, activity, long_term)


def ladder_index(envelope: npt.NDArray[np.float64]) -> npt.NDArray[np.int8]:
    """Highest ladder index j with envelope ≥ 2^(j-15), or -1 below the lowest threshold.

    `envelope` is an amplitude relative to full scale (1.0). Uses `frexp`, so no logarithm:
    envelope = m·2^e with m in [0.5, 1) gives floor(log2(envelope)) = e - 1.
    """
    _, e = np.frexp(envelope)
    j = np.where(envelope > 0.0, e - 1 + 15, -1)
    return np.clip(j, -1, P56_LADDER - 1).astype(np.int8)


def trailing_max(
    values: npt.NDArray[np.int8], size: int, history: npt.NDArray[np.int8]
) -> npt.NDArray[np.int8]:
    """out[k] = max(values[k-size+1 .. k]), reaching back into `history` (the `size - 1`
    values before `values[0]`, oldest first). This is P.56's per-threshold hangover done once
    for all thresholds: active at c_j within the hangover iff the window's max index ≥ j."""
    if history.size != size - 1:
        raise ValueError(f"history must hold size-1={size - 1} values, got {history.size}")
    full = np.concatenate([history, values])
    m = ndimage.maximum_filter1d(full, size=size, mode="nearest")
    start = size // 2
    return np.asarray(m[start : start + values.size], dtype=np.int8)


def ladder_counts(
    act_index: npt.NDArray[np.int8], weights: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.int64]:
    """counts[j] = number (or weight sum) of entries with act_index ≥ j, j = 0..15."""
    hist = np.bincount(act_index.astype(np.int64) + 1, weights=weights, minlength=P56_LADDER + 1)
    return np.asarray(np.cumsum(hist[::-1])[::-1][1:], dtype=np.int64)


def ladder_level_db(counts: npt.NDArray[np.int64], energy: float, margin_db: float) -> float:
    """Public face of the P.56 ladder solution for accumulated `counts` and `energy`."""
    return _ladder_level(counts, energy, margin_db)


def clip_count(
    x: npt.NDArray[np.int16], threshold: float, left: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Count clipped samples that belong to runs of ≥ 2, causally, so it streams.

    Shape: `x` 1-D int16; `left` the clipped flags of the two samples before x[0]. Returns a
    per-sample int64 count (0, 1 or 2; the sum is the number of samples in runs ≥ 2) and the
    new `left`. Formula: with c = |x| ≥ threshold, position i counts c[i]·c[i-1] (a run of n
    gives n-1) plus 1 more where c[i-2] = 0 (the run's first sample, credited once the second
    arrives). Isolated single-sample peaks are ignored on purpose (QUALITY_METRICS.md §7).
    """
    c = np.abs(x.astype(np.int32)) >= threshold
    full = np.concatenate([left, c])
    pair = full[2:] & full[1:-1]
    starts = pair & ~full[:-2]
    counts = pair.astype(np.int64) + starts.astype(np.int64)
    return counts, np.asarray(full[-2:], dtype=np.bool_)
