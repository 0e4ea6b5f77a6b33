"""The faster-whisper engine: a batch of utterances in, one `AsrResult` per utterance out.

This module owns decoding: loading a Whisper model once (`WhisperEngine`, built directly or
from settings via `EngineConfig`), turning a batch of `AsrRequest`s into `AsrResult`s, and the
gates that keep invented text out of transcripts (`SpeechGates`).

Why it drives the model below `WhisperModel.transcribe`: utterances from the segmenter are
shorter than Whisper's 30 s window, so each is exactly one window. `transcribe()` with
language detection encodes that window twice (once to detect, once to decode), and the encoder
is ~85 % of the work on CPU. Here each window is encoded once and the same encoder output
serves language detection and decoding, for the whole batch in one CTranslate2 call (which
is what lets a GPU, or later several utterances packed into one window, pay off). Decoding
is greedy at temperature 0 with no fallback, without timestamps and without conditioning on
previous text, and the number of new tokens is capped by the utterance's duration, so a
near-silent tail cannot loop for 448 tokens. Audio longer than one window (rare: the
segmenter cuts at 29 s) goes through faster-whisper's own long-form `transcribe()`.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from asr.errors import ModelLoadError
from asr.models import fetch_model, hub_offline, pick_device, resolve_model
from asr.textnorm import normalize_transcript
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from config.settings import AsrSettings

WINDOW_S = 30.0
_WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)
_MAX_LENGTH = 448  # Whisper's decoder context, prompt included


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
    #: Shorter audio is not worth a 30 s encoder pass.
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


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything needed to build a `WhisperEngine`; small and picklable for worker processes."""

    model: str  # a directory, or a hub name already known to be downloadable
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 1
    language_default: str | None = None
    beam_size: int = 1
    simplified_chinese: bool = True
    num_workers: int = 1
    window_margin_s: float = 0.0

    @classmethod
    def from_settings(
        cls, settings: AsrSettings, cache_dir: Path, *, offline: bool | None = None
    ) -> EngineConfig:
        """Resolve the model (joining the bundled `base` if needed) and the device, once.

        `offline` defaults to `settings.offline` or `HF_HUB_OFFLINE` in the environment,
        read here at start-up and nowhere later.
        """
        if offline is None:
            offline = hub_offline(settings.offline, os.environ)
        device, compute_type = pick_device(settings.device, settings.compute_type)
        return cls(
            model=resolve_model(settings.model, cache_dir, offline),
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads,
            language_default=None if settings.language == "auto" else settings.language,
            beam_size=settings.beam_size,
            simplified_chinese=settings.simplified_chinese,
            window_margin_s=settings.window_margin_s,
        )

    def build(self) -> WhisperEngine:
        return WhisperEngine(
            self.model,
            self.device,
            self.compute_type,
            self.cpu_threads,
            self.language_default,
            self.beam_size,
            self.simplified_chinese,
            num_workers=self.num_workers,
            window_margin_s=self.window_margin_s,
        )


@dataclass(frozen=True, slots=True)
class _Decoded:
    """One decoded stretch of audio, before gating."""

    text: str
    seconds: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


class WhisperEngine:
    """One loaded Whisper model; `transcribe_batch` may be called from several threads when
    `num_workers` > 1 (CTranslate2 then runs that many decodes in parallel)."""

    def __init__(
        self,
        model_path_or_name: str,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 1,
        language_default: str | None = None,
        beam_size: int = 1,
        simplified_chinese: bool = True,
        *,
        num_workers: int = 1,
        gates: SpeechGates | None = None,
        window_margin_s: float = 0.0,
    ) -> None:
        if cpu_threads < 1:
            raise ValueError(f"cpu_threads must be >= 1, got {cpu_threads}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if window_margin_s < 0:
            raise ValueError(f"window_margin_s must be >= 0, got {window_margin_s}")
        # 0 = Whisper's full 30 s window; else the window is cut to the batch's longest
        # utterance plus this margin (see _window_frames).
        self._window_margin_frames = int(round(window_margin_s * 100))
        device, compute_type = pick_device(device, compute_type)
        path = model_path_or_name
        if not Path(path).is_dir():
            path = fetch_model(path)  # faster-whisper's own download path, errors mapped
        try:
            self._model = WhisperModel(
                path,
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(
                f"could not load the Whisper model in {path} on {device}/{compute_type}: {exc}"
            ) from exc
        self.model_path = path
        self.device = device
        self.compute_type = compute_type
        self._beam_size = beam_size
        self._simplified = simplified_chinese
        self._gates = gates or SpeechGates()
        self._multilingual = bool(self._model.model.is_multilingual)
        self._languages = frozenset(self._model.supported_languages)
        self._language_default = self._check_language(
            None if language_default == "auto" else language_default, "language_default"
        )
        probe = Tokenizer(
            self._model.hf_tokenizer, self._multilingual, task="transcribe", language="en"
        )
        # Which tokens may never be generated does not depend on the language.
        self._suppress = list(get_suppressed_tokens(probe, (-1,)) or ())

    @classmethod
    def from_settings(cls, settings: AsrSettings, cache_dir: Path) -> WhisperEngine:
        """Resolve the model named in settings and load it."""
        return EngineConfig.from_settings(settings, cache_dir).build()

    def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        """Transcribe utterances, possibly from different calls, in one go.

        Results come back in request order. Each result's `compute_s` is its share of the
        batch's wall time, in proportion to its audio length (0 for gated silence), so the
        sum over a batch is the batch's wall time.
        """
        started = time.perf_counter()
        audios = [self._check_audio(r.audio, i) for i, r in enumerate(requests)]
        langs = [
            self._check_language(r.language, f"requests[{i}].language") or self._language_default
            for i, r in enumerate(requests)
        ]
        decoded: list[tuple[list[_Decoded], str]] = [([], lang or "") for lang in langs]
        window_items = []
        for i, audio in enumerate(audios):
            if self._is_silent(audio):
                continue
            if len(audio) > _WINDOW_SAMPLES:
                decoded[i] = self._decode_long(audio, langs[i])
            else:
                window_items.append(i)
        if window_items:
            batch = self._decode_windows(
                [audios[i] for i in window_items], [langs[i] for i in window_items]
            )
            for i, item in zip(window_items, batch, strict=True):
                decoded[i] = ([item[0]], item[1])
        wall = time.perf_counter() - started
        # Gated silence cost next to nothing; decoded audio shares the wall time by length.
        weights = [0.0 if self._is_silent(a) else len(a) / SAMPLE_RATE for a in audios]
        total = sum(weights)
        return [
            self._result(
                parts,
                lang,
                len(audio) / SAMPLE_RATE,
                wall * weight / total if total else 0.0,
                request.tag,
            )
            for (parts, lang), audio, weight, request in zip(
                decoded, audios, weights, requests, strict=True
            )
        ]

    # -- decoding -------------------------------------------------------------------------

    def _decode_windows(
        self, audios: list[npt.NDArray[np.float32]], langs: list[str | None]
    ) -> list[tuple[_Decoded, str]]:
        """Encode every ≤30 s utterance once, detect languages, decode greedily."""
        extractor = self._model.feature_extractor
        feats = [extractor(audio)[:, : extractor.nb_max_frames] for audio in audios]
        frames = self._window_frames(max(f.shape[-1] for f in feats), extractor.nb_max_frames)
        mels = np.stack([pad_or_trim(f, length=frames) for f in feats])
        encoded = self._model.encode(mels)
        if any(lang is None for lang in langs):
            if self._multilingual:
                detected = [best[0][0][2:-2] for best in self._model.model.detect_language(encoded)]
            else:
                detected = ["en"] * len(audios)
            langs = [lang or found for lang, found in zip(langs, detected, strict=True)]
        chosen = [lang or "en" for lang in langs]
        tokenizers = [self._tokenizer(lang) for lang in chosen]
        prompts = [self._model.get_prompt(tok, [], without_timestamps=True) for tok in tokenizers]
        longest_s = max(len(audio) for audio in audios) / SAMPLE_RATE
        max_length = min(_MAX_LENGTH, len(prompts[0]) + self._max_new_tokens(longest_s))
        results = self._model.model.generate(
            encoded,
            prompts,
            beam_size=self._beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=50,
        )
        out = []
        for audio, lang, tok, result in zip(audios, chosen, tokenizers, results, strict=True):
            tokens = result.sequences_ids[0]
            text = tok.decode(tokens).strip()
            # Same recovery of the mean log-probability as faster-whisper (length_penalty 1).
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            out.append(
                (
                    _Decoded(
                        text,
                        len(audio) / SAMPLE_RATE,
                        avg_logprob,
                        result.no_speech_prob,
                        _compression_ratio(text),
                    ),
                    lang,
                )
            )
        return out

    def _window_frames(self, longest: int, full: int) -> int:
        """Mel frames to encode (100 per second). Whisper pads every window to 30 s and the
        encoder's cost grows with it; CTranslate2 accepts a shorter input, so a short
        utterance can be encoded in a window cut to its length plus a margin of padding.
        Measured on the shared corpus (101 clips, base): full 30 s window WER 6.0 % / CER
        14.4 %; a 10 s margin WER 6.0 % / CER 14.7 % at 2.5x less CPU; 5 s: 5.6 % / 15.6 %
        at 3.2x less; 1 s: WER 15 % (too little padding: the decoder loses its footing)."""
        if not self._window_margin_frames:
            return full
        return min(full, -(-(longest + self._window_margin_frames) // 100) * 100)

    def _decode_long(
        self, audio: npt.NDArray[np.float32], lang: str | None
    ) -> tuple[list[_Decoded], str]:
        """Longer than one window: faster-whisper's long-form path, generator materialised."""
        segments, info = self._model.transcribe(
            audio,
            language=lang,
            beam_size=self._beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            max_new_tokens=self._max_new_tokens(WINDOW_S),
        )
        parts = [
            _Decoded(
                s.text.strip(),
                s.end - s.start,
                s.avg_logprob,
                s.no_speech_prob,
                s.compression_ratio,
            )
            for s in list(segments)
        ]
        return parts, info.language

    def _result(
        self, parts: list[_Decoded], lang: str, audio_s: float, compute_s: float, tag: object
    ) -> AsrResult:
        texts, weights, confidences = [], [], []
        for part in parts:
            if not self._kept(part):
                continue
            text = normalize_transcript(part.text, lang, self._simplified)
            if text:
                texts.append(text)
                weights.append(max(part.seconds, 1e-3))
                confidences.append(math.exp(part.avg_logprob))
        confidence = (
            sum(c * w for c, w in zip(confidences, weights, strict=True)) / sum(weights)
            if weights
            else 0.0
        )
        joiner = "" if lang == "zh" else " "
        return AsrResult(joiner.join(texts), lang, confidence, audio_s, compute_s, tag)

    def _kept(self, part: _Decoded) -> bool:
        gates = self._gates
        if part.compression_ratio > gates.max_compression_ratio:
            return False
        if part.avg_logprob < gates.min_avg_logprob:
            return False
        return not (
            part.no_speech_prob > gates.no_speech_prob
            and part.avg_logprob < gates.unsure_avg_logprob
        )

    # -- helpers --------------------------------------------------------------------------

    def _max_new_tokens(self, seconds: float) -> int:
        return self._gates.extra_tokens + math.ceil(self._gates.tokens_per_s * seconds)

    def _is_silent(self, audio: npt.NDArray[np.float32]) -> bool:
        if len(audio) < self._gates.min_audio_s * SAMPLE_RATE:
            return True
        return float(np.max(np.abs(audio))) < self._gates.silence_peak

    def _tokenizer(self, language: str) -> Tokenizer:
        return Tokenizer(
            self._model.hf_tokenizer, self._multilingual, task="transcribe", language=language
        )

    def _check_language(self, language: str | None, name: str) -> str | None:
        if language is None or language in self._languages:
            return language
        hint = "this model is English-only" if not self._multilingual else "unknown code"
        raise ValueError(
            f"{name} must be None or a Whisper language code, got {language!r} ({hint})"
        )

    @staticmethod
    def _check_audio(audio: object, index: int) -> npt.NDArray[np.float32]:
        if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
            kind = f"{audio.dtype} {audio.shape}" if isinstance(audio, np.ndarray) else type(audio)
            raise ValueError(f"requests[{index}].audio must be 1-D float32 at 16 kHz, got {kind}")
        if not np.isfinite(audio).all():
            raise ValueError(f"requests[{index}].audio contains NaN or infinite samples")
        return audio


def _compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0
