"""The faster-whisper engine: a batch of utterances in, one `AsrResult` per utterance out.

This module owns decoding: loading a Whisper model once (`WhisperEngine`, built directly or
from settings via `EngineConfig`) and turning a batch of `AsrRequest`s into `AsrResult`s.
The window policy and the gates on decodes are pure functions in `asr.window`.

Why below `WhisperModel.transcribe`: each VAD-cut utterance is one window, encoded once for
both language detection and decoding (`transcribe()` encodes twice), for the whole batch in
one CTranslate2 call. The window is the batch's longest utterance plus `window_margin_s`
(3 s: 5x less CPU than 30 s, docs/benchmarks.md); a decode that looks wrong there is redone
on the full 30 s window with detection (`AsrResult.fallback`). A party's locked language
skips detection. Greedy at temperature 0, no timestamps, no previous-text conditioning, new
tokens capped by the utterance's duration. Audio over 30 s goes through `transcribe()`.

Word times (`AsrRequest.word_timestamps`, for audio redaction): aligned from the encoder
output already computed, only for texts that may hold numbers (`asr.words`; +8.5 % compute on
lines with numbers, docs/benchmarks.md).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from asr.errors import ModelLoadError
from asr.models import fetch_model, hub_offline, pick_device, resolve_model
from asr.settings import AsrSettings
from asr.textnorm import normalize_transcript
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from asr.window import (
    FULL_FRAMES,
    Decoded,
    FallbackGates,
    SpeechGates,
    boost_quiet,
    check_audio,
    compression_ratio,
    loudness_dbfs,
    window_frames,
)
from asr.words import AlignItem, RawWord, align_words, may_hold_numbers, place_words

WINDOW_S = 30.0
_WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)
_MAX_LENGTH = 448  # Whisper's decoder context, prompt included


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
    #: Redo suspect short-window decodes on the full window (off only to measure without).
    fallback: bool = True
    #: Pad a short window with silent audio (True) or with zero mel frames (faster-whisper).
    pad_silence: bool = True
    #: Raise quiet utterances to this loudness (dBFS, asr.window.boost_quiet); None = off.
    boost_dbfs: float | None = None

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
            boost_dbfs=settings.quiet_boost_dbfs or None,
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
            fallback=FallbackGates() if self.fallback else None,
            pad_silence=self.pad_silence,
            boost_dbfs=self.boost_dbfs,
        )


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
        fallback: FallbackGates | None = None,
        pad_silence: bool = True,
        boost_dbfs: float | None = None,
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
        # utterance plus this margin (asr.window), suspect decodes redone on the full one.
        self._margin_s = window_margin_s
        self._fallback = fallback
        self._pad_silence = pad_silence
        self._boost_dbfs = boost_dbfs
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
        audios = [check_audio(r.audio, i) for i, r in enumerate(requests)]
        forced = [
            self._check_language(r.language, f"requests[{i}].language") or self._language_default
            for i, r in enumerate(requests)
        ]
        locked = [
            None if force else self._check_language(r.locked_language, f"requests[{i}].locked")
            for i, (r, force) in enumerate(zip(requests, forced, strict=True))
        ]
        out: list[_Outcome] = [_Outcome([], lang or "") for lang in forced]
        window_items = []
        for i, audio in enumerate(audios):
            if self._is_silent(audio):
                continue
            if len(audio) > _WINDOW_SAMPLES:
                out[i] = self._decode_long(audio, forced[i], requests[i].word_timestamps)
            else:
                window_items.append(i)
        want = [r.word_timestamps for r in requests]
        if window_items:
            langs = [forced[i] or locked[i] for i in window_items]
            first = self._decode_windows(
                [audios[i] for i in window_items], langs, self._margin_s,
                [want[i] for i in window_items],
            )  # fmt: skip
            redo = []
            for i, (part, lang, p, words) in zip(window_items, first, strict=True):
                out[i] = _Outcome([part], lang, p, words=[words])
                if self._margin_s and self._fallback is not None:
                    loud = loudness_dbfs(audios[i])
                    if reason := self._fallback.suspect(part, lang, p, loud):
                        out[i] = _Outcome([part], lang, p, reason)
                        redo.append(i)
            if redo:
                # The full window, and detection again unless the language is forced.
                again = self._decode_windows(
                    [audios[i] for i in redo], [forced[i] for i in redo], 0,
                    [want[i] for i in redo],
                )  # fmt: skip
                for i, (part, lang, p, words) in zip(redo, again, strict=True):
                    out[i] = _Outcome([part], lang, p, out[i].fallback, [words])
        wall = time.perf_counter() - started
        # Gated silence cost next to nothing; decoded audio shares the wall time by length.
        weights = [0.0 if self._is_silent(a) else len(a) / SAMPLE_RATE for a in audios]
        total = sum(weights)
        return [
            self._result(
                outcome,
                len(audio) / SAMPLE_RATE,
                wall * weight / total if total else 0.0,
                request.tag,
            )
            for outcome, audio, weight, request in zip(out, audios, weights, requests, strict=True)
        ]

    # -- decoding -------------------------------------------------------------------------

    def _decode_windows(
        self,
        audios: list[npt.NDArray[np.float32]],
        langs: list[str | None],
        margin_s: float,
        want_words: list[bool],
    ) -> list[tuple[Decoded, str, float | None, list[RawWord]]]:
        """Encode every <=30 s utterance once, detect the languages not given, decode
        greedily. Returns (decoded, language, detection probability or None if given, word
        times where asked for and the text may hold numbers, else [])."""
        extractor = self._model.feature_extractor
        if self._boost_dbfs is not None:
            audios = [boost_quiet(a, self._boost_dbfs) for a in audios]
        full = min(FULL_FRAMES, extractor.nb_max_frames)
        hop = extractor.hop_length
        if margin_s and self._pad_silence:
            # Padded with silent audio before the log-mel, as OpenAI's Whisper pads, so the
            # margin sits at the utterance's own floor, not at a fixed mel value that is
            # louder than a quiet line's pauses.
            frames = window_frames(max(len(a) for a in audios) // hop + 1, margin_s, full)
            feats = [extractor(a, padding=frames * hop - len(a) + hop)[:, :frames] for a in audios]
        else:
            feats = [extractor(audio)[:, :full] for audio in audios]
            frames = window_frames(max(f.shape[-1] for f in feats), margin_s, full)
        mels = np.stack([pad_or_trim(f, length=frames) for f in feats])
        encoded = self._model.encode(mels)
        probs: list[float | None] = [None] * len(audios)
        if any(lang is None for lang in langs):
            if self._multilingual:
                best = [b[0] for b in self._model.model.detect_language(encoded)]
            else:
                best = [("<|en|>", 1.0)] * len(audios)
            probs = [None if lang else p for lang, (_, p) in zip(langs, best, strict=True)]
            langs = [lang or tok[2:-2] for lang, (tok, _) in zip(langs, best, strict=True)]
        chosen = [lang or "en" for lang in langs]
        tokenizers = [self._tokenizer(lang) for lang in chosen]
        prompts = [self._model.get_prompt(tok, [], without_timestamps=True) for tok in tokenizers]
        longest_s = max(len(audio) for audio in audios) / SAMPLE_RATE
        max_length = min(_MAX_LENGTH, len(prompts[0]) + self._gates.max_new_tokens(longest_s))
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
        out: list[tuple[Decoded, str, float | None, list[RawWord]]] = []
        to_align: list[AlignItem] = []
        for i, (audio, lang, p, tok, prompt, result) in enumerate(
            zip(audios, chosen, probs, tokenizers, prompts, results, strict=True)
        ):
            tokens = result.sequences_ids[0]
            text = tok.decode(tokens).strip()
            # Same recovery of the mean log-probability as faster-whisper (length_penalty 1).
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            seconds = len(audio) / SAMPLE_RATE
            cap = min(self._gates.max_new_tokens(seconds), max_length - len(prompt))
            decoded = Decoded(
                text,
                seconds,
                avg_logprob,
                result.no_speech_prob,
                compression_ratio(text),
                len(tokens),
                cap,
            )
            out.append((decoded, lang, p, []))
            if want_words[i] and may_hold_numbers(text):
                text_tokens = [t for t in tokens if t < tok.eot]
                to_align.append((i, tok, text_tokens, min(len(audio) // hop, mels.shape[-1])))
        # On a GPU the encoder output is not host memory: a group's rows are re-encoded.
        reencode = None if self.device == "cpu" else self._model.encode
        for i, words in align_words(self._model, encoded, mels, to_align, reencode).items():
            out[i] = (*out[i][:3], words)
        return out

    def _decode_long(
        self, audio: npt.NDArray[np.float32], lang: str | None, words: bool
    ) -> _Outcome:
        """Longer than one window: faster-whisper's long-form path, generator materialised."""
        segments, info = self._model.transcribe(
            audio,
            language=lang,
            beam_size=self._beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            max_new_tokens=self._gates.max_new_tokens(WINDOW_S),
            word_timestamps=words,
        )
        got = list(segments)
        parts = [
            Decoded(
                s.text.strip(),
                s.end - s.start,
                s.avg_logprob,
                s.no_speech_prob,
                s.compression_ratio,
            )
            for s in got
        ]
        timed = [[(w.word, w.start, w.end) for w in s.words or ()] for s in got]
        p = None if lang else info.language_probability
        return _Outcome(parts, info.language, p, words=timed)

    def _result(
        self, outcome: _Outcome, audio_s: float, compute_s: float, tag: object
    ) -> AsrResult:
        texts, weights, confidences = [], [], []
        lang = outcome.language
        raw_words: list[RawWord] = []
        for n, part in enumerate(outcome.parts):
            if not self._gates.kept(part):
                continue
            text = normalize_transcript(part.text, lang, self._simplified)
            if text:
                texts.append(text)
                weights.append(max(part.seconds, 1e-3))
                confidences.append(math.exp(part.avg_logprob))
                if n < len(outcome.words):
                    raw_words += outcome.words[n]
        confidence = (
            sum(c * w for c, w in zip(confidences, weights, strict=True)) / sum(weights)
            if weights
            else 0.0
        )
        joiner = "" if lang == "zh" else " "
        joined = joiner.join(texts)
        simplified = self._simplified and lang == "zh"
        return AsrResult(
            joined,
            lang,
            confidence,
            audio_s,
            compute_s,
            tag,
            language_p=outcome.language_p,
            fallback=outcome.fallback,
            words=place_words(raw_words, joined, simplified, audio_s),
        )

    # -- helpers --------------------------------------------------------------------------

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


@dataclass(slots=True)
class _Outcome:
    """What one request came to before gating: its decoded parts and how."""

    parts: list[Decoded]
    language: str
    language_p: float | None = None
    fallback: str | None = None
    #: Word times per part (parallel to `parts`; empty lists where none were asked for).
    words: list[list[RawWord]] = field(default_factory=list)
