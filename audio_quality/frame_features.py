"""Per-frame features for the metric VAD (`activity.MetricVad`), and a small quantile ring.

Owns the signal analysis the VAD decides on, kept apart from its state machine: per 10 ms
frame, speech-band power and periodicity in the pitch range (`analyse_frames`); and the
high-band features the noise estimator uses to find impacts inside speech (`HighBand`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import signal


class Ring:
    """The last `size` values pushed (float64), for quantiles."""

    __slots__ = ("buf", "count", "head")

    def __init__(self, size: int) -> None:
        self.buf = np.zeros(size, dtype=np.float64)
        self.count = 0
        self.head = 0

    def push(self, values: npt.NDArray[np.float64]) -> None:
        n = values.size
        size = self.buf.size
        if n >= size:
            self.buf[:] = values[-size:]
            self.head, self.count = 0, size
            return
        idx = (self.head + np.arange(n)) % size
        self.buf[idx] = values
        self.head = (self.head + n) % size
        self.count = min(size, self.count + n)

    def mean(self) -> float:
        """The mean of the values held (0 when empty)."""
        return float(self.buf[: self.count].mean()) if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The ⌊q·m⌋-th smallest of the m values held (+inf when empty)."""
        if self.count == 0:
            return math.inf
        vals = self.buf if self.count == self.buf.size else self.buf[: self.count]
        k = int(q * vals.size)
        return float(np.partition(vals, k)[k])


def analyse_frames(
    frames: npt.NDArray[np.int16], history: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Speech-band power and periodicity of each 10 ms frame (what the metric VAD decides on).

    Shape: `frames` (n, 80) or (n, 160) int16 at 8 or 16 kHz; 16 kHz frames are first averaged
    in pairs (a crude 2:1 decimation: the features below need no more than 4 kHz). `history`
    holds the 160 samples at 8 kHz before the first frame. Over a 30 ms window ending with
    each frame (mean removed) and its 384-point spectrum X:
    - band power = 2·Σ|X_k|² / (384·240) over 200–3800 Hz, in int16 units², i.e. the mean
      square of the window's speech band (rumble, thumps and hum below 200 Hz left out: speech
      has almost nothing there, many background noises have most of their power there);
    - periodicity = max over τ in 2.5–12.5 ms (80–400 Hz pitch) of the unbiased normalised
      autocorrelation r(τ)/r(0)·W/(W−τ), with r the inverse FFT of |X|² (voiced speech ≳ 0.6),
      set to 0 where less than half the band energy lies at 60–1000 Hz (voiced speech keeps
      its pitch and first formant there; ringing cutlery and glass are periodic but high).
    Reference: autocorrelation pitch detection (Rabiner 1977; Boersma 1993), unrefined.
    Returns band power, periodicity, and the new history.
    """
    x = frames.astype(np.float64)
    if x.shape[1] == 2 * _SUB_FRAME:
        x = 0.5 * (x[:, 0::2] + x[:, 1::2])
    flat = np.concatenate([history, x.ravel()])
    n = frames.shape[0]
    idx = np.arange(n)[:, None] * _SUB_FRAME + np.arange(_VOICE_WIN)[None, :]
    win = flat[idx]
    win = win - win.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(win, _VOICE_FFT, axis=1)
    mag2 = spec.real**2 + spec.imag**2
    in_band = mag2[:, _BAND_LO:_BAND_HI].sum(axis=1)
    band = 2.0 * in_band / (_VOICE_FFT * _VOICE_WIN)
    low_share = mag2[:, _LOW_LO:_LOW_HI].sum(axis=1) / (in_band + 1e-9)
    r = np.fft.irfft(mag2, _VOICE_FFT, axis=1)[:, : _LAG_MAX + 1]
    r0 = r[:, :1] + 1e-9
    corr = (r[:, _LAG_MIN:] / r0 * _UNBIAS).max(axis=1)
    # Voiced speech carries most of its band energy below 1 kHz (pitch and first formant);
    # the ringing of cutlery and glass is periodic too, but kHz high.
    periodic = np.where(low_share >= _MIN_LOW_SHARE, corr, 0.0)
    return band, periodic, flat[-(_VOICE_WIN - _SUB_FRAME) :]


_SUB_FRAME = 80  # a 10 ms frame at 8 kHz
_VOICE_WIN = 240  # 30 ms at 8 kHz
_VOICE_FFT = 384  # ≥ window + largest lag, so the circular autocorrelation is exact
_LAG_MIN, _LAG_MAX = 20, 100  # 2.5–12.5 ms at 8 kHz
_BAND_LO, _BAND_HI = 10, 183  # FFT bins of 200–3800 Hz at 8 kHz (20.8 Hz apart)
_LOW_LO, _LOW_HI = 3, 48  # 60–1000 Hz
_MIN_LOW_SHARE = 0.5
_UNBIAS = _VOICE_WIN / (_VOICE_WIN - np.arange(_LAG_MIN, _LAG_MAX + 1, dtype=np.float64))


#: Samples (8 kHz) of history `analyse_frames` needs before a frame.
HISTORY_SAMPLES = _VOICE_WIN - _SUB_FRAME


class HighBand:
    """Per 10 ms frame, the power above 2 kHz and its kurtosis (for `snr.SpeechNoiseEstimator`).

    Impacts (knocks, slams, dropped objects) put most of their power above 2 kHz in bursts
    far sharper than a frame, so their samples there are heavy-tailed (kurtosis well above
    3); voiced speech has little power up there, and fricatives, which have much, are
    noise-like (kurtosis near 3). A 4th-order Butterworth high-pass, its state carried
    across calls, so the features do not depend on chunking (as one direct-form filter:
    well conditioned at this order and cut-off, and a third of `sosfilt`'s cost)."""

    __slots__ = ("_b", "_a", "_zi")

    def __init__(self, sample_rate: int) -> None:
        self._b, self._a = signal.butter(4, _HIGH_HZ, btype="highpass", fs=sample_rate)
        self._zi = np.zeros(4, dtype=np.float64)

    def process(
        self, frames: npt.NDArray[np.int16], full_scale: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """`frames` (n, frame_len) int16 → (mean square above 2 kHz relative to full
        scale², kurtosis of those samples; 0 where the frame is silent up there)."""
        n, m = frames.shape
        y, self._zi = signal.lfilter(
            self._b, self._a, frames.ravel().astype(np.float64), zi=self._zi
        )
        y2 = (y * y).reshape(n, m)
        s2 = y2.sum(axis=1)
        s4 = np.einsum("ij,ij->i", y2, y2)
        # Below one LSB² per frame the band is silent (and s2² could underflow).
        kurt = np.divide(s4 * m, s2 * s2, out=np.zeros(n), where=s2 > 1.0)
        return s2 / (m * full_scale * full_scale), kurt


_HIGH_HZ = 2000.0
