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
    #: Time each word (cross-attention alignment, about 10 % more compute): see `words`.
    word_timestamps: bool = False


@dataclass(frozen=True, slots=True)
class WordTiming:
    """One word of `AsrResult.text` and when it was said, from the start of the audio."""

    start_s: float
    end_s: float
    #: The word's characters in `AsrResult.text` ([start_char, end_char)).
    start_char: int
    end_char: int


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
    #: With `AsrRequest.word_timestamps`: the words of `text` with their times, where the
    #: text holds a digit, a number word or an address (the only places that need them); words
    #: normalisation changed beyond recognition are left out. Empty otherwise.
    words: tuple[WordTiming, ...] = ()


class Engine(Protocol):
    def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]: ...
