"""`StreamFormatCheck`: does the audio look like the format it is read as? (sans-I/O)

A raw L16 stream (FreeSWITCH / jambonz audio fork) carries no format of its own: the rate and
the channel count come from the metadata, a per-path query (`/audiofork?rate=16000&channels=1`)
or the gateway's defaults, and a wrong guess is read silently — a mono 16 kHz fork read as
8 kHz stereo turns one voice into two "parties" saying the same sentence. This check looks at
the first seconds of loud audio once and says what looks wrong, so the gateway can warn,
trace it and badge the call instead of grading garbage. It never changes the audio.

Signs, each measured over the loud 20 ms frames (≥ `LOUD_DBOV`) only:

* **channels interleaved** (stereo): interleaving the two channels back into one sequence
  z gives a smooth signal — `Σ(Δz)² / Σz²` below `SMOOTH_MAX` — only when they are the even
  and odd samples of one mono stream. Two real parties are independent (or one is silent),
  so z jumps from one to the other every sample: the ratio is about 2.
* **channels identical** (stereo): both channels correlate above `IDENTICAL_CORR` at the same
  level: one signal on both sides (a mono stream duplicated, or a switch mixing both parties
  into each channel); per-party metrics and the transcript then say everything twice.
* **mono interleaved** (mono): the one channel jumps every sample (`Σ(Δx)² / Σx²` above
  `ROUGH_MIN`; real speech stays under 0.4 at 8 and 16 kHz): it is two channels interleaved.
* **pitch out of range**: the median voice pitch at the assumed rate is below `PITCH_LOW_HZ`
  (the stream runs faster than assumed: 16 kHz read as 8 kHz) or above `PITCH_HIGH_HZ` (it
  runs slower). Speech at the right rate sits at 80–350 Hz; a low female voice read at half
  its rate (~100 Hz) looks plausible, so this catches only part of the wrong-rate cases
  (2 of 8 test speakers read at half their rate).
* **pace** (`pace`, given the wall time since the first audio): a live switch streams in real
  time, so media read at the right rate and channel count arrives at 1× real time. After
  `PACE_WALL_S`, media arriving at 2× (`PACE_DOUBLE`) means the stream carries twice the
  samples per second it is read with (16 kHz read as 8 kHz, the misread that costs clarity
  up to 1.3 MOS: docs/board.md, "Same audio, same clarity"), 0.5× half of them. It does not
  depend on the voice, so it catches the wrong-rate cases the pitch misses. Faster paces
  (a replay) say nothing. The gateway checks the pace only where the format is a guess (the
  path's query or the defaults, not the switch's own metadata), so a simulator that states
  its format and replays at exactly 2× (`--pace 2`) is not flagged.

Pitch: 40 ms windows, autocorrelation normalised and unbiased, the shortest lag within 90 %
of the best one in 2–25 ms (40–500 Hz), voiced where that peak is ≥ 0.5 (Rabiner 1977).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

LOUD_DBOV = -40.0
SMOOTH_MAX = 0.8
IDENTICAL_CORR = 0.98
ROUGH_MIN = 1.2
PITCH_LOW_HZ = 70.0
PITCH_HIGH_HZ = 340.0
#: Wall time after the first audio when the pace is judged (once), and the paces that mean the
#: stream carries twice or half the samples per second it is read with (±15 %: jitter
#: buffers and a switch's start-up burst move a 10 s figure by a few per cent).
PACE_WALL_S = 10.0
PACE_DOUBLE = (1.7, 2.3)
PACE_HALF = (0.43, 0.57)
#: Loud audio the check waits for, and the most media it looks at before deciding anyway.
NEED_LOUD_S = 3.0
MAX_MEDIA_S = 60.0
_MIN_VOICED = 20  # pitch frames needed for a pitch verdict


@dataclass(frozen=True, slots=True)
class FormatSuspicion:
    reason: str  # channels_interleaved | channels_identical | mono_interleaved | pitch_* | pace_*
    value: float  # the measure behind it
    hint: str  # what it likely means and what to do


def roughness(x: npt.NDArray[np.float64]) -> float:
    """Σ(x[k+1]−x[k])² / Σx² over rows (frames) of `x` (n, m): ≈ 2(1 − ρ₁); 0 smooth, 2 white,
    4 alternating."""
    num = float((np.diff(x, axis=1) ** 2).sum())
    den = float((x[:, 1:] ** 2).sum())
    return num / den if den > 0 else 0.0


def median_pitch_hz(x: npt.NDArray[np.float64], rate: int) -> float | None:
    """Median pitch of the voiced 40 ms windows of the 1-D signal `x`, or None if too few."""
    n = rate // 25
    frames = x[: x.size // n * n].reshape(-1, n)
    if frames.shape[0] == 0:
        return None
    frames = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(frames, 2 * n, axis=1)
    r = np.fft.irfft(spec.real**2 + spec.imag**2, 2 * n, axis=1)[:, :n]
    lo, hi = rate // 500, rate // 40
    lags = np.arange(lo, hi + 1)
    corr = r[:, lo : hi + 1] / (r[:, :1] + 1e-9) * (n / (n - lags))[None, :]
    best = corr.max(axis=1)
    voiced = best >= 0.5
    if voiced.sum() < _MIN_VOICED:
        return None
    first = np.argmax(corr[voiced] >= 0.9 * best[voiced, None], axis=1)
    return float(np.median(rate / lags[first]))


class StreamFormatCheck:
    """Feed interleaved int16 samples as they arrive (all of them: the pace counts them);
    `feed` returns the content verdict once (a list, empty when nothing looks wrong), else
    None; `pace` the pace verdict likewise. Memory: at most `NEED_LOUD_S` of loud frames."""

    def __init__(self, sample_rate: int, channels: int, *, check_pace: bool = True) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.rate, self.channels = sample_rate, channels
        self._frame = sample_rate // 50 * channels  # one 20 ms frame, all channels
        self._need = int(NEED_LOUD_S * 50)
        self._max = int(MAX_MEDIA_S * 50)
        self._carry = np.zeros(0, dtype=np.int16)
        self._loud: list[npt.NDArray[np.int16]] = []
        self._seen = 0
        self.done = False
        self._samples = 0  # samples (all channels) fed, for the pace
        self.pace_done = not check_pace

    def feed(self, samples: npt.NDArray[np.int16]) -> list[FormatSuspicion] | None:
        self._samples += samples.size
        if self.done:
            return None
        x = np.concatenate([self._carry, samples]) if self._carry.size else samples
        n = x.size // self._frame
        self._carry = x[n * self._frame :].copy()
        frames = x[: n * self._frame].reshape(n, self._frame).astype(np.float64)
        level = 10 * np.log10(np.maximum((frames**2).mean(axis=1), 1e-9) / 32768.0**2)
        take = frames[level >= LOUD_DBOV][: self._need - len(self._loud)]
        self._loud.extend(take.astype(np.int16))
        self._seen += n
        if len(self._loud) < self._need and self._seen < self._max:
            return None
        self.done = True
        return self.verdict()

    def pace(self, wall_s: float) -> list[FormatSuspicion] | None:
        """The pace verdict, once, at the first call with `wall_s` (seconds since the stream's
        first audio, by the gateway's clock) ≥ `PACE_WALL_S`: a list (empty when the pace is
        plausible), else None. Media the switch claimed as gaps is not counted."""
        if self.pace_done or wall_s < PACE_WALL_S:
            return None
        self.pace_done = True
        ratio = self._samples / self.channels / self.rate / wall_s
        fmt = f"{self.rate} Hz x {self.channels} channel(s)"
        if PACE_DOUBLE[0] <= ratio <= PACE_DOUBLE[1]:
            return [FormatSuspicion("pace_double", round(ratio, 2),
                f"read as {fmt}, the audio arrives at {ratio:.1f}x real time: the stream "
                f"probably carries twice the samples per second (rate {2 * self.rate}, or "
                "two channels); set the rate and channels (metadata, the path's "
                "?rate=&channels=, or gateway.default_*)")]  # fmt: skip
        if PACE_HALF[0] <= ratio <= PACE_HALF[1]:
            return [FormatSuspicion("pace_half", round(ratio, 2),
                f"read as {fmt}, the audio arrives at {ratio:.1f}x real time: the stream "
                f"probably carries half the samples per second (rate {self.rate // 2}, or "
                "one channel); set the rate and channels")]  # fmt: skip
        return []

    def finish(self) -> list[FormatSuspicion]:
        """End of the stream before a verdict: judge what was collected (once)."""
        if self.done:
            return []
        self.done = True
        return self.verdict()

    def verdict(self) -> list[FormatSuspicion]:
        """Judge the loud frames collected so far (at least one second of them)."""
        if len(self._loud) < 50:
            return []
        z = np.stack(self._loud).astype(np.float64)  # (frames, samples × channels)
        out: list[FormatSuspicion] = []
        if self.channels == 2:
            a, b = z[:, 0::2], z[:, 1::2]
            smooth = roughness(z)
            if smooth < SMOOTH_MAX:
                out.append(FormatSuspicion("channels_interleaved", round(smooth, 3),
                    "the two channels are the even and odd samples of one signal: the stream "
                    "is probably mono at twice the rate; set channels=1 and rate (metadata, "
                    "the path's ?channels=1&rate=16000, or gateway.default_*)"))  # fmt: skip
            ea, eb = float((a**2).sum()), float((b**2).sum())
            cross = float((a * b).sum())
            corr = cross / np.sqrt(ea * eb) if ea > 0 and eb > 0 else 0.0
            ratio = ea / max(eb, 1e-9)
            if corr > IDENTICAL_CORR and 0.8 < ratio < 1.25:
                out.append(FormatSuspicion("channels_identical", round(corr, 4),
                    "both channels carry the same audio: the switch sends one mixed or mono "
                    "signal, so per-party metrics and the transcript repeat it; stream each "
                    "party on its own channel"))  # fmt: skip
            voices = [a.ravel(), b.ravel()]
        else:
            rough = roughness(z)
            if rough > ROUGH_MIN:
                out.append(FormatSuspicion("mono_interleaved", round(rough, 3),
                    "the audio jumps every sample like two interleaved channels: the stream "
                    "is probably stereo; set channels=2"))  # fmt: skip
            voices = [z.ravel()]
        if out:
            return out  # the layout is wrong: pitch at this layout says nothing more
        pitches = [p for v in voices if (p := median_pitch_hz(v, self.rate)) is not None]
        if pitches and max(pitches) < PITCH_LOW_HZ:
            out.append(FormatSuspicion("pitch_too_low", round(max(pitches), 1),
                f"voices sound at {max(pitches):.0f} Hz, below any speaker: the stream's rate "
                f"is probably higher than the {self.rate} Hz it is read at"))  # fmt: skip
        elif pitches and min(pitches) > PITCH_HIGH_HZ:
            out.append(FormatSuspicion("pitch_too_high", round(min(pitches), 1),
                f"voices sound at {min(pitches):.0f} Hz, above any speaker: the stream's rate "
                f"is probably lower than the {self.rate} Hz it is read at"))  # fmt: skip
        return out
