"""The faster-whisper engine: a batch of utterances in, one `AsrResult` per utterance out.

This module owns loading a Whisper model once (`WhisperEngine`, built directly or from
settings via `EngineConfig`) and running a batch: languages forced, locked or detected,
silence gated, the short-window first pass and its fallback, each result's share of the wall
time. The decoding itself (encode once, detect, decode greedily, align word times, gate into
an `AsrResult`) is `WindowDecoding` in `asr/decoding.py`, part of `WhisperEngine`; the window
policy and the gates on decodes are pure functions in `asr.window`.

The window is the batch's longest utterance plus `window_margin_s` (3 s: 5x less CPU than
30 s, docs/benchmarks.md); a decode that looks wrong there is redone on the full 30 s window
with detection (`AsrResult.fallback`). A party's locked language skips detection. Word times
(`AsrRequest.word_timestamps`, for audio redaction) cost +8.5 % compute on lines with numbers
(docs/benchmarks.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from asr.decoding import WINDOW_S, Outcome, WindowDecoding
from asr.errors import ModelLoadError
from asr.models import fetch_model, hub_offline, pick_device, resolve_model
from asr.settings import AsrSettings
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from asr.window import (
    FallbackGates,
    SpeechGates,
    check_audio,
    loudness_dbfs,
)

_WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)


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


class WhisperEngine(WindowDecoding):
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
        out: list[Outcome] = [Outcome([], lang or "") for lang in forced]
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
                out[i] = Outcome([part], lang, p, words=[words])
                if self._margin_s and self._fallback is not None:
                    loud = loudness_dbfs(audios[i])
                    if reason := self._fallback.suspect(part, lang, p, loud):
                        out[i] = Outcome([part], lang, p, reason)
                        redo.append(i)
            if redo:
                # The full window, and detection again unless the language is forced.
                again = self._decode_windows(
                    [audios[i] for i in redo], [forced[i] for i in redo], 0,
                    [want[i] for i in redo],
                )  # fmt: skip
                for i, (part, lang, p, words) in zip(redo, again, strict=True):
                    out[i] = Outcome([part], lang, p, out[i].fallback, [words])
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

    def _check_language(self, language: str | None, name: str) -> str | None:
        if language is None or language in self._languages:
            return language
        hint = "this model is English-only" if not self._multilingual else "unknown code"
        raise ValueError(
            f"{name} must be None or a Whisper language code, got {language!r} ({hint})"
        )
