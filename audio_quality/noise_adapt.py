"""What a party's noise does to its speech/silence decision (for `activity.MetricVad`).

Owns two judgements the metric VAD re-makes at every floor step, from decided frames only
(so they never depend on chunking), with constant memory (two windows of floats):

- **Noise compensation** (step 5 of `activity`): a turn's faint syllables and fade-out (down
  to `faint_range_db` under its median level) are talk, but under noise the VAD cannot hear
  them. From the party's speech level (median smoothed power of its audible speech frames,
  last `noise_window_ms` of speech) and the floor, the part of that range the noise hides is
  known; each of its dB bridges pauses `bridge_ms_per_db` longer and extends each stretch's
  end by `tail_ms_per_db`. Nothing changes on clean lines.
- **Speech-like noise** (step 6): when a quarter or more of the quiet frames (under the
  continue level) are voiced, the noise is background talkers (the constructed 8-talker
  babble is ~45 % voiced; fans, traffic, dishes ≤ 2 %). Once the party's own speech is
  known to be `SPEECH_LIKE_MIN_SNR_DB` above the floor, only *loud* voiced frames should
  count as its voicing: the talkers' voicing otherwise keeps turns going past their end
  (boundaries 0.4–0.6 s late under babble at 20–30 dB). At low SNR the party's own voiced
  frames are rarely loud over such a floor, so the gate stays off there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from audio_quality.frame_features import Ring
from audio_quality.settings import MetricVadSettings

FRAME_MS = 10
#: Audible speech frames seen before the party's level is trusted (0.5 s).
MIN_SPEECH_FOR_LEVEL = 50
#: Quiet frames seen before their voicing share is trusted (1 s).
MIN_QUIET_FRAMES = 100
#: Voiced share of the quiet frames from which the noise counts as speech-like ...
SPEECH_LIKE_SHARE = 0.25
#: ... and the party's speech level over the floor from which the gate applies.
SPEECH_LIKE_MIN_SNR_DB = 12.0


@dataclass(frozen=True, slots=True)
class Adaptation:
    """In force until the next floor step."""

    bridge: int = 0  # extra frames a pause inside speech may last and still be bridged
    tail: int = 0  # extra frames added to each stretch's end
    speech_like: bool = False  # only loud voiced frames count as the party's voicing


class NoiseAdaptation:
    """Feeds on the party's decided speech levels and quiet frames' voicing."""

    __slots__ = ("_speech_db", "_quiet_voiced", "_faint_db", "_bridge_per_db", "_tail_per_db")

    def __init__(self, settings: MetricVadSettings) -> None:
        window = settings.noise_window_ms // FRAME_MS
        self._speech_db = Ring(window)  # smoothed dB of audible speech frames
        self._quiet_voiced = Ring(window)  # 1.0 / 0.0: was a quiet frame voiced
        self._faint_db = settings.faint_range_db
        self._bridge_per_db = settings.bridge_ms_per_db / FRAME_MS
        self._tail_per_db = settings.tail_ms_per_db / FRAME_MS

    def speech_frames(self, db: npt.NDArray[np.float64]) -> None:
        """Smoothed dB of frames decided as audible speech."""
        self._speech_db.push(db)

    def quiet_frames(self, voiced: npt.NDArray[np.bool_]) -> None:
        """Voicing of frames under the continue level."""
        self._quiet_voiced.push(voiced.astype(np.float64))

    def at_floor(self, floor_db: float) -> Adaptation:
        """What is in force with this floor (smoothed speech-band dB)."""
        if self._speech_db.count < MIN_SPEECH_FOR_LEVEL or math.isinf(floor_db):
            return Adaptation()
        over = self._speech_db.quantile(0.5) - floor_db
        hidden = max(0.0, self._faint_db - over)
        bridge = round(hidden * self._bridge_per_db)
        speech_like = (
            self._quiet_voiced.count >= MIN_QUIET_FRAMES
            and self._quiet_voiced.mean() >= SPEECH_LIKE_SHARE
            and over >= SPEECH_LIKE_MIN_SNR_DB
        )
        return Adaptation(bridge, min(bridge, round(hidden * self._tail_per_db)), speech_like)
