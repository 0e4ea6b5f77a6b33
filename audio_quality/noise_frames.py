"""Which frames speak for the party's speech and which measure its noise (streaming).

Owns the split of one party's final frames, block by block, into *speech* (whose excess
power is speech energy), *noise* (whose mean power is the stationary noise) and neither,
for `snr.SpeechNoiseEstimator`. The metric VAD decides talk; the levels need a stricter
split, because a frame wrongly called noise or speech moves the SNR by far more than it
moves the talk time:

- **Speech core**: VAD speech within `VOICED_REACH` frames (200 ms) of a voiced frame.
  Stretches of VAD speech further from any voicing are clatter or knocks the VAD bridged
  into a turn (a rattle just before an onset): noise, not speech (dishes read 1–3 dB high
  on some tracks while they were speech).
- **Loud sounds near the party's speech level** (within `FAR_LOUD_DB` of its active level
  and `FAR_OVER_DB` over the noise pool's mean), VAD speech or voiced: not speech energy
  when far from voicing, but never noise either. A long fricative, or a word the hang-up cut
  off before the VAD confirmed it, carries more power than all the pauses of a call with
  muted pauses together (clean two-minute tracks read 7-13 dB before); clatter under the
  speech level stays noise, and at low SNR (the pool's mean near the level) nothing changes.
  Until the party's level is known (about 1 s of speech), this rule is off.
- **Guard**: frames within `GUARD` frames (100 ms) of the core or of those loud sounds do
  not measure the noise (speech edges the VAD missed).
- **Speech tails**: frames `TAIL_OVER_DB` over the noise mean, joined through such frames
  (gaps of at most `TAIL_GAP`) to the core or to a loud voiced frame, and within the voiced
  reach: a final "s", a breath, a faint syllable the VAD left out, speech the VAD missed
  under clatter. Counted as noise they put the floor of a clean line 10–20 dB too high. A
  long final "s" can carry most of the pool's power and lift the mean over its own weaker
  end, so the mean they are measured against is capped at `MEDIAN_CAP_DB` over the median
  of the block's noise frames, and they are found twice: against the pool's mean with the
  block's candidates, then against the mean without the first pass's tails. Loud frames
  apart from speech (a knock in a pause) stay noise.
- Digital silence never measures the noise (a mute, not the line).

Look-ahead: `LOOKAHEAD` decided frames past the block (the guard, the voiced reach and
tails that lead into an onset); state carried across blocks: the last frames' core,
voicing and tail marks, so the split does not depend on chunking. Constant memory.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

#: Silence frames this close to speech (100 ms) do not measure the noise.
GUARD = 10
#: VAD speech further than this (200 ms) from any voiced frame is not speech to the levels.
VOICED_REACH = 20
#: Speech tails: this much (6 dB) over the noise mean, gaps of at most `TAIL_GAP` frames.
TAIL_OVER_DB = 6.0
TAIL_GAP = 2
#: The noise mean the tails are measured against is at most this far over the median of the
#: block's noise frames: a long tail would otherwise lift the mean over its own weaker end.
MEDIAN_CAP_DB = 6.0
#: Decided frames needed past a block.
LOOKAHEAD = max(GUARD, VOICED_REACH)

#: VAD speech or voiced frames this loud relative to the party's active speech level, and
#: `FAR_OVER_DB` over the noise pool's mean, are not noise (module docstring).
FAR_LOUD_DB = -6.0
FAR_OVER_DB = 15.0

_FAR_LOUD = 10.0 ** (FAR_LOUD_DB / 10.0)
_FAR_OVER = 10.0 ** (FAR_OVER_DB / 10.0)
_TAIL_OVER = 10.0 ** (TAIL_OVER_DB / 10.0)
_MEDIAN_CAP = 10.0 ** (MEDIAN_CAP_DB / 10.0)


class NoiseFrameSelector:
    """Feeds on consecutive blocks of final frames; see the module docstring."""

    __slots__ = ("_core_before", "_voiced_before", "_tail_prev")

    def __init__(self) -> None:
        self._core_before = np.zeros(GUARD, dtype=np.bool_)
        self._voiced_before = np.zeros(VOICED_REACH, dtype=np.bool_)
        # The last TAIL_GAP + 1 frames before the block: (joinable, joined to speech).
        self._tail_prev = np.zeros((2, TAIL_GAP + 1), dtype=np.bool_)

    def select(
        self,
        n: int,
        power: npt.NDArray[np.float64],
        audible: npt.NDArray[np.bool_],
        final: npt.NDArray[np.bool_],
        voiced: npt.NDArray[np.bool_],
        zero: npt.NDArray[np.bool_],
        pool: tuple[float, int],
        level: float = np.inf,
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(speech, noise) for the block's `n` frames. `power` (frame mean square), `final`
        (VAD speech) and `voiced` (audible and voiced) run up to `LOOKAHEAD` frames past
        the block, fewer at the end of the call; `audible` and `zero` (digital silence)
        cover the block; `pool` is the noise pool before the block (Σ power, frames);
        `level` the party's active speech level (linear, +inf while unknown)."""
        m = min(power.size, final.size, voiced.size)
        r = VOICED_REACH
        v = np.concatenate([self._voiced_before, voiced[:m]])
        near_v = ndimage.maximum_filter1d(v.view(np.int8), size=2 * r + 1, mode="constant")
        near = near_v[r:].astype(np.bool_)
        self._voiced_before = v[n : n + r]
        core = final[:m] & near
        # Loud sounds near the party's level (a long fricative, a word cut off at the end):
        # not speech energy unless near voicing, but guarded and seeding tails like it.
        pool_power, pool_frames = pool
        floor = pool_power / pool_frames if pool_frames else 0.0
        loud = power[:m] > max(level * _FAR_LOUD, floor * _FAR_OVER)
        core_like = core | ((final[:m] | voiced[:m]) & loud)
        g = GUARD
        around = np.concatenate([self._core_before, core_like[: n + g]])
        guarded = ndimage.maximum_filter1d(around.view(np.int8), size=2 * g + 1, mode="constant")
        self._core_before = around[n : n + g]
        noise = ~guarded[g : g + n].astype(np.bool_) & ~zero[:n]
        speech = audible[:n] & core[:n]
        count = pool_frames + int(noise.sum())
        if count == 0:
            return speech, noise
        ref = (pool_power + float(power[:n][noise].sum())) / count
        if noise.any():
            ref = min(ref, float(np.median(power[:n][noise])) * _MEDIAN_CAP)
        prev = self._tail_prev
        tails = self._tails(power[:m], core_like, voiced[:m], n, ref)
        rest = noise & ~tails
        if rest.any():
            ref = (pool_power + float(power[:n][rest].sum())) / (pool_frames + int(rest.sum()))
            self._tail_prev = prev
            tails = self._tails(power[:m], core_like, voiced[:m], n, ref)
        return speech, noise & ~tails

    def _tails(
        self,
        power: npt.NDArray[np.float64],
        core: npt.NDArray[np.bool_],
        voiced: npt.NDArray[np.bool_],
        n: int,
        ref: float,
    ) -> npt.NDArray[np.bool_]:
        """Frames of the block joined to speech through loud frames (module docstring)."""
        k = TAIL_GAP + 1
        over = power > ref * _TAIL_OVER
        loud = np.concatenate([self._tail_prev[0], core | over])
        seed = np.concatenate([self._tail_prev[1], core | (voiced & over)])
        joined = ndimage.binary_closing(loud, structure=np.ones(k, dtype=np.bool_)) | loud
        labels, count = ndimage.label(joined)
        hit = np.zeros(count + 1, dtype=np.bool_)
        hit[labels[seed]] = True
        hit[0] = False
        tail: npt.NDArray[np.bool_] = hit[labels]
        self._tail_prev = np.stack([joined[n : n + k], tail[n : n + k]])
        return tail[k : k + n]
