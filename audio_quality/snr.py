"""Blind speech level, noise level and SNR from 10 ms frame powers (one party, streaming).

Owns the level/noise/SNR arithmetic on *blocks* of frames (one block per reading interval);
which frames are speech and which measure the noise comes from `noise_frames`.

Method (noise-compensated P.56 on frames; no reference signal needed):
- **Noise level** N = stationary part + impacts. The stationary part is the mean power of
  the noise frames (`noise_frames`: VAD silence at least 100 ms from speech, speech tails
  and digital silence left out), not impacts, pooled over the rolling window: in a
  two-party call each channel is silent for much of the time, so the noise is observed
  directly, slow changes included (a minimum-statistics floor would sit below the mean of
  such noise). With too few noise frames in the window (< 0.3 s), the call's pool stands in,
  then the VAD floor. The call summary takes the mean over all the call's noise frames
  (`total`). Impacts (knocks, slams) are found *everywhere*, speech
  included, and their power summed over all frames: a rattle of knocks carries most of its
  noise power in a few frames, and with pauses a fifth of a track, the few that land in
  pauses say little about the rest (the pause mean alone read 4–10 dB low on some tracks).
  An impact frame is at most 6 dB under the party's own active speech level (from the
  window before the block) with over half its power above 2 kHz, within 50 ms of one such
  frame whose samples there are heavy-tailed (kurtosis > 5 if 3 dB over the level, > 10 if
  quieter): not that party's speech (sibilants reach ~9 dB over the level but are
  noise-like; voiced speech has its power low; the heavy-tailed frames of speech, its
  plosive bursts, are quieter). Inside speech it counts with the
  larger of its power above 2 kHz and its power above the party's level (the speech under
  it taken to be no louder than that); outside speech, the whole frame (thump included).
- **Speech energy** per frame: e = max(p − impact − N, 0) on the speech frames, else 0: the
  expected power of speech alone, since speech and noise powers add.
- **Speech level**: ITU-T P.56 method B run on the frame envelope sqrt(e), smoothed twice with
  the 30 ms time constant, with the 200 ms hangover, the 6 dB threshold ladder and P.56's
  15.9 dB margin. On clean speech this matches the sample-exact `levels.active_speech_level`
  within 0.1 dB (a test checks it), though the envelope is a frame RMS, not P.56's mean |x|.
- **SNR** = speech level − N, in dB, i.e. relative to the active speech level as the
  validation defines truth (QUALITY_METRICS.md §10).

All per-block sums are additive (noise power sum and frame count, impact power, speech
energy, ladder counts), so the rolling reading is the sum over the last K blocks and the
call summary the sum over all blocks: constant memory; impacts need only the 5 frames of
look-ahead `noise_frames` already holds. Figures (scripts/bench_quality.py --validate
--seeds 6, six 24 s tracks per noise, 0–30 dB): p95 |error| dishes 2.8 / 2.9 dB, bike
1.1 / 1.4, babble 1.7 / 1.7 (16 kHz / 8 kHz μ-law); pooled with the knocks 3.4 / 3.6 dB on
24 s tracks, 1.2 / 1.8 dB on 120 s ones (a call's length: sparse noise is sampled better);
clean speech reads ≥ 39 dB.
Known weak spots: noise that the VAD calls speech (babble, music, loud clatter) is missed
from N and added to the speech energy, so the SNR reads high; non-stationary noise is only
sampled in pauses (dishes read ±2 dB on some tracks, as their pauses happen to be quieter or
louder than the rest); impacts well under the party's speech level (true SNR ≳ 20 dB for
the validation's knocks) cannot be told from speech inside it (a knock's 10 ms frames are
no more heavy-tailed than voiced speech above 2 kHz), so there knocks are still sampled
only where they fall into pauses and the SNR reads high by 3–7 dB on some tracks (p95 7.3 dB
at 16 kHz, 4.3 dB at 8 kHz μ-law); at 0 dB on the 8 kHz path the VAD may hear no speech
under babble (no level then); speech-free windows have no level; very short calls give
unstable figures.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

from audio_quality.activity import FRAME_MS
from audio_quality.levels import (
    P56_HANGOVER_S,
    P56_LADDER,
    P56_TIME_CONSTANT_S,
    POWER_FLOOR,
    ladder_counts,
    ladder_index,
    ladder_level_db,
    trailing_max,
)

#: P.56 margin, used as is on the frame envelope (checked against the sample-exact P.56).
FRAME_MARGIN_DB = 15.9
#: Fewer noise frames than this (0.3 s) in the window: fall back to the VAD's floor.
MIN_NOISE_FRAMES = 30
#: Minimum-statistics floor sits below the noise mean; this is the fallback's correction.
FLOOR_BIAS_DB = 1.5
#: Impacts (see `_impacts`): a frame can be one when it is no more than
#: `IMPACT_NEAR_LEVEL_DB` under the party's active speech level with over half its power
#: above 2 kHz. It marks an impact when its samples there are heavy-tailed: kurtosis above
#: `IMPACT_KURTOSIS` if it is `IMPACT_OVER_LEVEL_DB` above the level, above
#: `IMPACT_SHARP_KURTOSIS` if quieter (no frame that close to the level reaches that in the
#: 12 read-speech clips at 16 kHz nor the 53 English clips at 8 kHz μ-law in tests/data: the
#: heavy-tailed frames of speech, plosive bursts, are quieter). An impact
#: takes in the candidates within `IMPACT_SPREAD` frames (a rattle is noise-like in its
#: densest frames).
IMPACT_NEAR_LEVEL_DB = -6.0
IMPACT_OVER_LEVEL_DB = 3.0
IMPACT_HIGH_SHARE = 0.5
IMPACT_KURTOSIS = 5.0
IMPACT_SHARP_KURTOSIS = 10.0
IMPACT_SPREAD = 5
#: The party's level gates impacts only once this much active speech (1 s) is pooled.
IMPACT_MIN_ACTIVE_FRAMES = 100
#: Fewer noise frames than `MIN_NOISE_FRAMES` in the window and the call: the lower of the
#: call's pool and the VAD floor if the call has this many (0.1 s), else the VAD floor.
MIN_CALL_NOISE_FRAMES = 10


@dataclass(frozen=True, slots=True)
class LevelEstimate:
    """Speech level, noise level and SNR over some span; None where not measurable."""

    speech_level_dbov: float | None
    noise_level_dbov: float | None
    snr_db: float | None
    speech_frames: int  # frames counted active by the P.56 ladder at the solution
    noise_frames: int


@dataclass(slots=True)
class _BlockSums:
    noise_power: float = 0.0  # Σ p over noise frames (p normalised to full scale²)
    noise_frames: int = 0
    speech_energy: float = 0.0  # Σ e
    ladder: npt.NDArray[np.int64] | None = None
    floor_power: float = 0.0  # Σ floor power over all frames (fallback only)
    frames: int = 0
    local_noise: float = 0.0  # Σ over frames of the noise estimate in force for the block
    impact_power: float = 0.0  # Σ over impact frames of the impact's power

    def add(self, other: _BlockSums) -> None:
        self.noise_power += other.noise_power
        self.noise_frames += other.noise_frames
        self.speech_energy += other.speech_energy
        self.floor_power += other.floor_power
        self.frames += other.frames
        self.local_noise += other.local_noise
        self.impact_power += other.impact_power
        if other.ladder is not None:
            self.ladder = other.ladder.copy() if self.ladder is None else self.ladder + other.ladder


class SpeechNoiseEstimator:
    """Feeds on blocks of final frames; answers for the rolling window and the whole call."""

    __slots__ = (
        "_window", "_ring", "_total", "_zi", "_hang", "_g", "_snr_range", "_seeds",
    )  # fmt: skip

    def __init__(self, window_blocks: int, snr_min_db: float, snr_max_db: float) -> None:
        if window_blocks < 1:
            raise ValueError(f"window_blocks must be >= 1, got {window_blocks}")
        self._window = window_blocks
        self._ring: deque[_BlockSums] = deque(maxlen=window_blocks)
        self._total = _BlockSums()
        g = math.exp(-FRAME_MS / 1000.0 / P56_TIME_CONSTANT_S)
        self._g = g
        self._zi = np.zeros(2, dtype=np.float64)
        hang = round(P56_HANGOVER_S * 1000 / FRAME_MS)
        self._hang = np.full(hang, -1, dtype=np.int8)
        self._snr_range = (snr_min_db, snr_max_db)
        self._seeds = np.zeros(IMPACT_SPREAD, dtype=np.bool_)  # impact marks before the block

    def add_block(
        self,
        power: npt.NDArray[np.float64],
        speech: npt.NDArray[np.bool_],
        noise: npt.NDArray[np.bool_],
        floor_dbov: npt.NDArray[np.float64],
        high: npt.NDArray[np.float64] | None = None,
        kurtosis: npt.NDArray[np.float64] | None = None,
    ) -> None:
        """One block of consecutive frames. `power` is the frame mean square relative to full
        scale² (linear); `speech` marks the frames whose excess power is speech energy,
        `noise` those that measure the noise; the VAD floor is the fallback estimate.
        `high` and `kurtosis` (`frame_features.HighBand`) find impacts; these two and
        `power` may run up to `IMPACT_SPREAD` frames past the block (look-ahead)."""
        n = speech.size
        pooled = self._pooled()
        impact = np.zeros(n)
        if high is not None and kurtosis is not None:
            impact = self._impacts(power, high, kurtosis, n, self._level_power(pooled))
        power = power[:n]
        # Outside speech an impact is the whole frame (its thump below 2 kHz included);
        # inside, only what can be told from the speech under it (`_impacts`).
        impact = np.where(speech | (impact == 0.0), impact, power)
        noise = noise & (impact == 0.0)  # the floor's mean, without the impacts
        block = _BlockSums(
            noise_power=float(power[noise].sum()),
            noise_frames=int(noise.sum()),
            impact_power=float(impact.sum()),
            # The VAD has no floor before its first frames (+inf): those count as zero.
            floor_power=float(
                np.where(np.isfinite(floor_dbov), 10.0 ** (floor_dbov / 10.0), 0.0).sum()
            ),
            frames=int(power.size),
        )
        pooled.add(block)
        noise_power = self._noise_power(pooled)
        block.local_noise = noise_power * n
        e = np.where(speech, np.maximum(power - impact - noise_power, 0.0), 0.0)
        g = self._g
        env, self._zi = signal.lfilter(
            [(1.0 - g) ** 2], [1.0, -2.0 * g, g * g], np.sqrt(e), zi=self._zi
        )
        idx = ladder_index(np.asarray(env, dtype=np.float64))
        act = trailing_max(idx, self._hang.size + 1, self._hang)
        self._hang = np.concatenate([self._hang, idx])[-self._hang.size :]
        block.speech_energy = float(e.sum())
        block.ladder = ladder_counts(act)
        self._ring.append(block)
        self._total.add(block)

    def pool(self) -> tuple[float, int]:
        """The rolling window's noise pool: (Σ power, frames)."""
        return sum(b.noise_power for b in self._ring), sum(b.noise_frames for b in self._ring)

    def level_power(self) -> float:
        """The party's active speech level over the rolling window (linear, relative to
        full scale²), +inf until about a second of active speech is pooled."""
        return self._level_power(self._pooled())

    def rolling(self) -> LevelEstimate:
        pooled = self._pooled()
        return self._estimate(pooled, self._noise_power(pooled))

    def _pooled(self) -> _BlockSums:
        """The sums over the rolling window's blocks."""
        pooled = _BlockSums()
        for b in self._ring:
            pooled.add(b)
        return pooled

    def total(self) -> LevelEstimate:
        """The whole call. Its noise level is the mean over all the call's noise frames
        (and its impacts over all frames), not the time average of the rolling estimates:
        that average weighs a window with a few pause frames as much as one with many, and
        for sparse noise (knocks) read 1–3 dB low. With few noise frames in the whole call,
        the time average of the rolling estimates (their fallbacks)."""
        t = self._total
        noise = t.local_noise / t.frames if t.frames else 0.0
        if t.noise_frames >= MIN_NOISE_FRAMES:
            noise = _pool_mean(t)
        elif t.noise_frames >= MIN_CALL_NOISE_FRAMES:
            noise = min(_pool_mean(t), noise)
        return self._estimate(t, noise)

    def _impacts(
        self,
        power: npt.NDArray[np.float64],
        high: npt.NDArray[np.float64],
        kurtosis: npt.NDArray[np.float64],
        n: int,
        level: float,
    ) -> npt.NDArray[np.float64]:
        """Per frame of the block, the power of an impact as if inside speech (else 0).

        Wherever it falls, in speech too: a frame louder than the party's own speech level
        (or a little under it) with most of its power above 2 kHz is not that party's speech
        (their sibilants reach a few dB over it but are noise-like, and voiced speech has
        its power low), and a heavy-tailed one there is an impact; a rattle's densest frames are
        noise-like, so the candidates within `IMPACT_SPREAD` frames of one go with it."""
        s = IMPACT_SPREAD
        m = min(n + s, power.size, high.size, kurtosis.size)
        pw, hi = power[:m], high[:m]
        cand = (pw > level * 10.0 ** (IMPACT_NEAR_LEVEL_DB / 10.0)) & (hi > IMPACT_HIGH_SHARE * pw)
        loud = pw > level * 10.0 ** (IMPACT_OVER_LEVEL_DB / 10.0)
        ku = kurtosis[:m]
        seeds = np.zeros(2 * s + n, dtype=np.int8)
        seeds[:s] = self._seeds
        seeds[s : s + m] = cand & (((ku > IMPACT_KURTOSIS) & loud) | (ku > IMPACT_SHARP_KURTOSIS))
        self._seeds = seeds[n : n + s].astype(np.bool_)  # the block's last s frames
        near = ndimage.maximum_filter1d(seeds, size=2 * s + 1)[s : s + n].astype(np.bool_)
        return np.where(cand[:n] & near, np.maximum(hi[:n], pw[:n] - level), 0.0)

    @staticmethod
    def _level_power(s: _BlockSums) -> float:
        """The active speech level pooled in `s` (linear), +inf until there is enough."""
        ladder = s.ladder if s.ladder is not None else np.zeros(P56_LADDER, dtype=np.int64)
        db = ladder_level_db(ladder, s.speech_energy, FRAME_MARGIN_DB)
        if math.isinf(db):
            return math.inf
        level = 10.0 ** (db / 10.0)
        return level if s.speech_energy / level >= IMPACT_MIN_ACTIVE_FRAMES else math.inf

    def _noise_power(self, s: _BlockSums) -> float:
        """The noise mean of the frames pooled in `s`; with too few of them, the call's
        pool; with few there too (a clean line with muted pauses), the lower of that and the
        VAD floor (a handful of frames may be speech the split missed)."""
        if s.noise_frames >= MIN_NOISE_FRAMES:
            return _pool_mean(s)
        t = self._total
        if t.noise_frames >= MIN_NOISE_FRAMES:
            return _pool_mean(t)
        floor = s.floor_power / s.frames * 10.0 ** (FLOOR_BIAS_DB / 10.0) if s.frames else 0.0
        if t.noise_frames >= MIN_CALL_NOISE_FRAMES:
            return min(_pool_mean(t), floor)
        return float(floor)

    def _estimate(self, s: _BlockSums, noise: float) -> LevelEstimate:
        noise_db = 10.0 * math.log10(noise) if noise > POWER_FLOOR else None
        ladder = s.ladder if s.ladder is not None else np.zeros(P56_LADDER, dtype=np.int64)
        speech_db = ladder_level_db(ladder, s.speech_energy, FRAME_MARGIN_DB)
        if math.isinf(speech_db):
            return LevelEstimate(None, noise_db, None, 0, s.noise_frames)
        active = int(round(s.speech_energy / 10.0 ** (speech_db / 10.0)))
        lo, hi = self._snr_range
        if noise_db is None:
            snr = hi
        else:
            snr = min(hi, max(lo, speech_db - noise_db))
        return LevelEstimate(speech_db, noise_db, snr, active, s.noise_frames)


def _pool_mean(s: _BlockSums) -> float:
    return float(s.noise_power / s.noise_frames + s.impact_power / s.frames)
