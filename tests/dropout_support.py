"""Dropout validation signals: real speech tracks with digital-silence pauses, with and
without cuts injected inside voiced stretches, and per-block precision/recall.

Used by tests/test_quality_dropouts.py and scripts/bench_quality.py. A cut (20–200 ms of
exact zeros, what a lost packet burst or a blanked frame leaves) is placed where the clean
speech is voiced and loud (within 10 dB of the track's P.56 active level) and well inside a
clip (no digital silence within 100 ms of it), so every injected cut is a true dropout; the
pauses between clips are digital silence, so every dropout measured there is a false one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from audio_quality.g711 import round_trip
from audio_quality.impair import to_int16
from audio_quality.levels import active_speech_level
from audio_quality.party import PartyQualityTracker
from audio_quality.settings import QualitySettings
from tests.quality_support import speech_track


@dataclass(frozen=True)
class CutTrack:
    audio: npt.NDArray[np.int16]
    rate: int
    codec: str
    cuts_ms: list[tuple[int, int]]  # (start, duration) of each injected cut


def cut_track(
    files: Sequence[str], rate: int, codec: str, seed: int, seconds: float, n_cuts: int,
    cut_ms: tuple[int, int] = (20, 200), gap_s: tuple[float, float] = (0.3, 2.0),
) -> CutTrack:  # fmt: skip
    """A party track (clips, digital-silence pauses) with `n_cuts` cuts inside speech."""
    clean = speech_track(files, rate, seed, seconds, gap_s)
    rng = np.random.default_rng(1000 + seed)
    level = active_speech_level(clean, rate).level_dbov
    n = rate // 100
    frames = clean[: clean.size // n * n].reshape(-1, n)
    p = 10 * np.log10(np.maximum((frames**2).mean(axis=1) / 32768.0**2, 1e-15))
    zero = np.asarray(~frames.any(axis=1), dtype=np.bool_)
    loud = np.flatnonzero(p > level - 10.0)
    audio = clean.copy()
    cuts: list[tuple[int, int]] = []
    taken = np.zeros(frames.shape[0], dtype=np.bool_)
    for k in rng.permutation(loud).tolist():
        if len(cuts) == n_cuts:
            break
        dur = int(rng.integers(cut_ms[0], cut_ms[1] + 1))
        lo, hi = k - 10, k + dur // 10 + 11  # 100 ms clear of pauses and other cuts
        if lo < 0 or hi > frames.shape[0] or zero[lo:hi].any() or taken[lo - 30 : hi + 30].any():
            continue
        start = k * n + int(rng.integers(0, n))  # anywhere in the frame grid
        audio[start : start + dur * rate // 1000] = 0.0
        taken[lo:hi] = True
        cuts.append((start * 1000 // rate, dur))
    return CutTrack(round_trip(to_int16(audio), codec), rate, codec, sorted(cuts))


@dataclass(frozen=True)
class DropoutScore:
    truth: int
    measured: int
    hits: int
    measured_ms: list[int]


def score_dropouts(track: CutTrack, settings: QualitySettings, chunk_ms: int = 20) -> DropoutScore:
    """Feed the track in `chunk_ms` chunks; match measured dropouts to cuts per reading block
    (a cut belongs to the block its end falls in)."""
    tr = PartyQualityTracker("agent", track.rate, track.codec, settings)
    step = track.rate * chunk_ms // 1000
    readings = []
    for i in range(0, track.audio.size, step):
        readings += tr.feed(track.audio[i : i + step])
    readings += tr.flush()
    hits = measured = 0
    ms: list[int] = []
    for r in readings:
        true_n = sum(1 for s, d in track.cuts_ms if r.start_ms <= s + d < r.end_ms)
        measured += r.dropouts
        hits += min(true_n, r.dropouts)
        if r.dropouts:
            ms.append(r.dropout_ms)
    return DropoutScore(len(track.cuts_ms), measured, hits, ms)
