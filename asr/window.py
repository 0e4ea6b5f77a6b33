"""The encoder window and the gates on decodes: pure functions, no model.

This module owns two decisions the engine makes per utterance:

* **How much to encode** (`window_frames`, `bucket`). Whisper pads every input to 30 s
  (3000 mel frames) and the encoder's cost grows with the frames; CTranslate2 accepts fewer
  (OpenNMT/CTranslate2 PR #1446), so an utterance is encoded in a window of its own length
  plus `margin_s` of padding. Too little padding and the decoder loses its footing (repetition
  loops, dropped words: whisper.cpp issues #1855, #1951), hence:
* **Whether a short-window decode looks wrong** (`FallbackGates.suspect`): a repetition loop
  (compression ratio, the token cap reached), a guess (mean log-probability), an implausible
  rate of characters per second for the language, an unsure or unexpected language, or no
  text at all from audio that is clearly speech. Such a decode is redone on the full 30 s
  window, with language detection, and counted (`AsrResult.redone`).
* **Whether decoded text was heard at all** (`SpeechGates`): kept or dropped as invented.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from asr.types import SAMPLE_RATE

FULL_FRAMES = 3000  # Whisper's 30 s window, 100 mel frames per second
FRAMES_PER_S = 100


def window_frames(longest: int, margin_s: float, full: int = FULL_FRAMES) -> int:
    """Mel frames to encode for a batch whose longest utterance has `longest` frames: that
    plus the margin, rounded up to a whole second, at most `full`; `margin_s` 0 = `full`."""
    if margin_s <= 0:
        return full
    margin = int(round(margin_s * FRAMES_PER_S))
    return min(full, -(-(longest + margin) // FRAMES_PER_S) * FRAMES_PER_S)


def bucket(audio_s: float, margin_s: float) -> int:
    """A batching key: utterances whose windows are within 2 s of each other share one, so
    a batch never pads a short utterance's window to a long neighbour's."""
    frames = window_frames(math.ceil(audio_s * FRAMES_PER_S), margin_s)
    return -(-frames // 200)


def check_audio(audio: object, index: int) -> npt.NDArray[np.float32]:
    """`audio` if it is what the engine takes (1-D float32, finite), else ValueError."""
    if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
        kind = f"{audio.dtype} {audio.shape}" if isinstance(audio, np.ndarray) else type(audio)
        raise ValueError(f"requests[{index}].audio must be 1-D float32 at 16 kHz, got {kind}")
    if not np.isfinite(audio).all():
        raise ValueError(f"requests[{index}].audio contains NaN or infinite samples")
    return audio


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def loudness_dbfs(audio: npt.NDArray[np.float32]) -> float:
    """The 90th percentile of 20 ms frame power, in dBFS: the level of the loud part of the
    utterance, whatever the share of pauses in it."""
    frame = SAMPLE_RATE // 50
    n = len(audio) // frame
    if n == 0:
        return -120.0
    power = np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    return float(10 * np.log10(np.percentile(power, 90) + 1e-12))


def boost_quiet(
    audio: npt.NDArray[np.float32], target_dbfs: float, max_gain_db: float = 20.0
) -> npt.NDArray[np.float32]:
    """`audio` raised to `target_dbfs` loudness (`loudness_dbfs`) if quieter, by at most
    `max_gain_db`; louder audio is returned as is. Whisper's log-mel has an absolute offset,
    so a quiet telephone line reads differently from the levels it was trained on."""
    gain_db = min(max_gain_db, target_dbfs - loudness_dbfs(audio))
    if gain_db <= 0:
        return audio
    out: npt.NDArray[np.float32] = (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32)
    return out


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded stretch of audio, before gating."""

    text: str
    seconds: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    tokens: int = 0
    token_cap: int = 0  # new tokens allowed; reaching it means the decode was cut off


@dataclass(frozen=True, slots=True)
class SpeechGates:
    """Thresholds deciding that decoded text was invented rather than heard.

    Measured with `base` on tests/data/speech: every real clip (read Mandarin and English,
    8 kHz IVR prompts) decodes with avg_logprob >= -0.6 and no_speech_prob <= 0.25; every
    6 s stretch of hold music, kitchen noise, an exercise bike and 8-talker babble decodes to
    "you", "1.5%", "I'm sorry." and the like with avg_logprob <= -1.2, except one babble
    stretch at avg_logprob -0.8 with no_speech_prob 0.46, caught by the combined gate.
    """

    #: Peak below this (-60 dBFS) is digital silence: nothing is decoded at all.
    silence_peak: float = 1e-3
    #: Shorter audio is not worth an encoder pass.
    min_audio_s: float = 0.1
    #: Text compressing better than this is a repetition loop.
    max_compression_ratio: float = 2.4
    #: Mean token log-probability below this is a guess.
    min_avg_logprob: float = -1.0
    #: Probably no speech (above `no_speech_prob`) and not sure of the words (below
    #: `unsure_avg_logprob`): dropped too.
    no_speech_prob: float = 0.35
    unsure_avg_logprob: float = -0.6
    #: New-token cap: `extra_tokens + tokens_per_s * seconds`; the references need <= 6/s.
    tokens_per_s: float = 12.0
    extra_tokens: int = 10

    def kept(self, part: Decoded) -> bool:
        if part.compression_ratio > self.max_compression_ratio:
            return False
        if part.avg_logprob < self.min_avg_logprob:
            return False
        return not (
            part.no_speech_prob > self.no_speech_prob and part.avg_logprob < self.unsure_avg_logprob
        )

    def max_new_tokens(self, seconds: float) -> int:
        return self.extra_tokens + math.ceil(self.tokens_per_s * seconds)


@dataclass(frozen=True, slots=True)
class FallbackGates:
    """When a short-window decode is redone on the full window. See `suspect`."""

    max_compression_ratio: float = 2.0
    min_avg_logprob: float = -0.7
    #: Characters per second of audio above these is a loop or an invention; the corpus'
    #: fastest read speech is ~6 (zh) and ~17 (en).
    max_chars_per_s_zh: float = 9.0
    max_chars_per_s: float = 25.0
    #: Detected (not forced) languages below this probability are unsure.
    min_language_p: float = 0.5
    #: Audio this loud for this long is clearly speech: an empty decode of it is suspect.
    clear_dbfs: float = -35.0
    clear_s: float = 1.0
    #: Languages callers speak; a detection outside them is suspect (base hears short
    #: Mandarin as Japanese or Cantonese). Empty = any.
    expected: frozenset[str] = frozenset({"zh", "en"})

    #: Decodes this unsure with this much doubt of speech are noise: every stretch of hold
    #: music, babble and household noise in the corpus decodes so (avg_logprob <= -1.4,
    #: no_speech_prob >= 0.33) on both windows, and `SpeechGates` drops them; no real clip
    #: comes near (avg_logprob >= -0.7, no_speech_prob <= 0.25). Redoing them is waste.
    noise_logprob: float = -1.2
    noise_no_speech: float = 0.3

    def _noise_like(self, part: Decoded) -> bool:
        return part.avg_logprob < self.noise_logprob and part.no_speech_prob > self.noise_no_speech

    def suspect(
        self,
        part: Decoded,
        language: str,
        language_p: float | None,
        loudness: float,
    ) -> str | None:
        """Why this decode looks wrong (a short reason for counting), or None."""
        text = part.text.strip()
        seconds = max(part.seconds, 0.1)
        if part.token_cap and part.tokens >= part.token_cap:
            return "token_cap"
        if part.compression_ratio > self.max_compression_ratio:
            return "compression"
        if self._noise_like(part):
            return None
        if text and part.avg_logprob < self.min_avg_logprob:
            return "logprob"
        limit = self.max_chars_per_s_zh if language == "zh" else self.max_chars_per_s
        if len(text) / seconds > limit:
            return "rate"
        if language_p is not None and language_p < self.min_language_p:
            return "language_p"
        if self.expected and language not in self.expected:
            return "language"
        if not text and seconds >= self.clear_s and loudness >= self.clear_dbfs:
            return "empty"
        return None
