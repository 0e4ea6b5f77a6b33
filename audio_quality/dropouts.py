"""`DropoutDetector`: audio lost inside speech (sans-I/O, streaming, chunk-invariant).

A dropout is a stretch of exact digital zeros that *cuts into* speech: a packet-loss gap, a
frame the switch failed to deliver, a glitch that blanked part of a word. Digital silence
between turns (VoIP silence suppression, a muted line, μ-law silence, a simulator's pauses)
is not one, although it is the same zeros. What tells them apart is the edges:

* a cut is abrupt: the audio just before the zeros is still at the level of the speech
  around it (within `edge_db` of the loudest frame of the `CONTEXT_FRAMES` before). Silence
  after speech follows a natural decay (and, with silence suppression, the codec's
  hang-over), so the last audio before the zeros sits far under the speech before it: 35 dB
  and more on every clip end of the test speech, against 0–17 dB for cuts in voiced audio.
  The last `TAIL_MS` of audio must be loud too (`TAIL_EXTRA_DB`): TTS engines break
  phrases with short zero runs right after a syllable, but the waveform has died away.
* a cut is short: the audio comes back within `max_ms` (200 ms by default: packet-loss
  bursts); longer zeros are a pause, a mute, or a TTS engine's phrase break (some end a
  phrase as abruptly as a cut, with 240–300 ms of zeros), and zeros that run to the end of
  the call are the call ending.
  (What comes back may be quiet: a cut can swallow the rest of a word.)

The zero run is measured to the sample (trailing zeros of the frame before, leading zeros of
the frame after), so a 20 ms cut reads 20 ms wherever it falls in the 10 ms frame grid.

Input: the 10 ms frames, their mean-square power (full scale 1) and the raw-speech flag of
the metric VAD. A run is decided when the
first frame after it arrives, before the block holding its end is read, so the result does
not depend on the chunking.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from audio_quality.levels import POWER_FLOOR

#: Frames before a run whose loudest frame is the level the edges are compared with (0.5 s).
CONTEXT_FRAMES = 50
#: Raw speech must have been seen this many frames before a run for it to be inside speech.
SPEECH_CONTEXT_FRAMES = 10
#: The last audio before a run (ms): a cut stops the waveform mid-cycle, a TTS engine's or a
#: codec's phrase break lets it die away over the last milliseconds.
TAIL_MS = 2
#: ... so it may sit this much further under the reference than the edge frames: 0–23 dB
#: for cuts in voiced speech, 28 dB and more for the phrase breaks of the test TTS lines.
TAIL_EXTRA_DB = 5.0
#: Frames before a run whose louder one is its edge level (the frame touching the run may
#: hold only a few samples of audio).
EDGE_FRAMES = 2


def _db(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(10.0 * np.log10(np.maximum(p, POWER_FLOOR)), dtype=np.float64)


class DropoutDetector:
    """Finds dropouts in one party's frames; `take(end_frame)` hands them to the block
    that holds their end, as `(end_frame, duration_ms)`."""

    def __init__(self, frame_len: int, sample_rate: int, full_scale: float, min_ms: int,
                 max_ms: int, edge_db: float) -> None:  # fmt: skip
        if not 0 < min_ms <= max_ms:
            raise ValueError(f"dropout min_ms/max_ms must satisfy 0 < min <= max, got "
                             f"{min_ms}/{max_ms}")  # fmt: skip
        self._frame_len = frame_len
        self._rate = sample_rate
        self._min = min_ms * sample_rate // 1000
        self._max = max_ms * sample_rate // 1000
        self._edge_db = edge_db
        self._fs2 = full_scale * full_scale
        self._tail_n = max(1, TAIL_MS * sample_rate // 1000)
        self._prev_frames = np.zeros(2 * frame_len, dtype=np.int16)  # the last two frames
        # The last CONTEXT_FRAMES + EDGE_FRAMES frames' power (dB), frame index of the first.
        self._hist = np.empty(0, dtype=np.float64)
        self._hist_start = 0
        self._last_speech = -(10**9)
        self._prev_trail = 0  # trailing zero samples of the last frame seen
        # The run in progress: (start frame, leading zero samples, reference level dB or
        # None when its start already rules it out).
        self._run: tuple[int, int, float | None] | None = None
        self._found: list[tuple[int, int]] = []

    def process(
        self, first: int, frames: npt.NDArray[np.int16], power: npt.NDArray[np.float64],
        raw: npt.NDArray[np.bool_],
    ) -> None:  # fmt: skip
        """Frames `first…first+n` `(n, frame_len)` int16, their mean-square power (full
        scale 1) and raw-speech flags."""
        n = power.size
        if n == 0:
            return
        fl = self._frame_len
        nonzero = frames != 0
        zero = ~nonzero.any(axis=1)
        lead = np.where(zero, fl, np.argmax(nonzero, axis=1))
        trail = np.where(zero, fl, np.argmax(nonzero[:, ::-1], axis=1))
        db = np.concatenate([self._hist, _db(power)])
        base = self._hist_start  # frame index of db[0]
        audio = np.concatenate([self._prev_frames, frames.ravel()])  # two frames back
        edges = np.flatnonzero(np.diff(zero.view(np.int8))) + 1
        starts = np.concatenate([[0], edges]).tolist()
        ends = np.concatenate([edges, [n]]).tolist()
        prev_trail = self._prev_trail
        for s, e in zip(starts, ends, strict=True):
            if zero[s]:
                if self._run is None:
                    before = audio[: (s + 2) * fl - prev_trail][-self._tail_n :]
                    ref = self._reference(db, base, first + s, before)
                    self._run = (first + s, prev_trail, ref)
            else:
                if self._run is not None:
                    self._end_run(first + s, int(lead[s]))
                speech = np.flatnonzero(raw[s:e])
                if speech.size:
                    self._last_speech = first + s + int(speech[-1])
            prev_trail = int(trail[e - 1])
        self._prev_trail = prev_trail
        self._prev_frames = audio[-2 * fl :].copy()
        keep = CONTEXT_FRAMES + EDGE_FRAMES
        self._hist = db[-keep:]
        self._hist_start = first + n - self._hist.size

    def finish(self) -> None:
        """End of audio: a run still open is the call ending, not a dropout."""
        self._run = None

    def take(self, end_frame: int) -> list[tuple[int, int]]:
        """Dropouts ending at or before `end_frame`, as (end frame, ms); removed."""
        out = [d for d in self._found if d[0] <= end_frame]
        self._found = [d for d in self._found if d[0] > end_frame]
        return out

    # ---- internals ---------------------------------------------------------------------
    def _reference(
        self, db: npt.NDArray[np.float64], base: int, start: int, before: npt.NDArray[np.int16]
    ) -> float | None:
        """The level the run's edge is compared with, or None if its start is no cut."""
        if start - self._last_speech > SPEECH_CONTEXT_FRAMES:
            return None  # no speech just before: a pause, not a cut
        i = start - base
        if i < EDGE_FRAMES:
            return None  # the call's first frames: nothing to compare with
        ref = float(db[max(0, i - CONTEXT_FRAMES) : i].max())
        edge = float(db[i - EDGE_FRAMES : i].max())
        x = before.astype(np.float64)
        tail = float(_db(np.asarray([np.mean(x * x) / self._fs2 if x.size else 0.0]))[0])
        if edge < ref - self._edge_db or tail < ref - self._edge_db - TAIL_EXTRA_DB:
            return None
        return ref

    def _end_run(self, end: int, lead: int) -> None:
        if self._run is None:
            return
        start, trail, ref = self._run
        self._run = None
        samples = (end - start) * self._frame_len + trail + lead
        if ref is not None and self._min <= samples <= self._max:
            self._found.append((end, math.ceil(samples * 1000 / self._rate)))
