"""The engine seam: what ASR takes and returns, independent of faster-whisper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True)
class AsrRequest:
    """One utterance to transcribe: 16 kHz mono float32 in [-1, 1]."""

    audio: npt.NDArray[np.float32]
    language: str | None = None  # None = detect; "zh" / "en" forces
    tag: object = None  # opaque to asr; returned untouched in the result
    #: The party's locked language (asr.language.LanguageTracker): decoded in it without
    #: detection, but a decode that looks wrong is redone with detection. Ignored when
    #: `language` forces one.
    locked_language: str | None = None


@dataclass(frozen=True, slots=True)
class AsrResult:
    text: str  # "" when nothing was said (silence, noise, phantom phrase removed)
    language: str
    confidence: float  # 0..1, duration-weighted exp(avg_logprob) of kept segments
    audio_s: float
    compute_s: float  # wall seconds spent inside the worker
    tag: object = None
    #: Probability of the detected language; None when it was forced or locked (not detected).
    language_p: float | None = None
    #: Why the short-window decode was redone on the full 30 s window (asr.window), or None.
    fallback: str | None = None


class Engine(Protocol):
    def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]: ...
