"""Decoding a batch of utterance windows with a loaded Whisper model, and gating what came out
into `AsrResult`s: the part of `WhisperEngine` (asr/engine.py) below `WhisperModel.transcribe`.

Each VAD-cut utterance is one window, encoded once for both language detection and decoding
(`transcribe()` encodes twice), for the whole batch in one CTranslate2 call. The window is the
batch's longest utterance plus the margin (asr.window); greedy at temperature 0, no
timestamps, no previous-text conditioning, new tokens capped by the utterance's duration.
Audio over 30 s goes through faster-whisper's long-form `transcribe()`. Word times (for audio
redaction) are aligned from the encoder output already computed, only for texts that may hold
numbers (`asr.words`).

`WindowDecoding` holds no state of its own: `WhisperEngine` loads the model and sets the
attributes declared here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer

from asr.textnorm import normalize_transcript
from asr.types import SAMPLE_RATE, AsrResult
from asr.window import (
    FULL_FRAMES,
    Decoded,
    SpeechGates,
    boost_quiet,
    compression_ratio,
    window_frames,
)
from asr.words import AlignItem, RawWord, align_words, may_hold_numbers, place_words

WINDOW_S = 30.0
_MAX_LENGTH = 448  # Whisper's decoder context, prompt included


class WindowDecoding:
    """The decoding methods of `WhisperEngine`, which loads the model and sets these."""

    device: str
    _model: WhisperModel
    _gates: SpeechGates
    _beam_size: int
    _simplified: bool
    _multilingual: bool
    _suppress: list[int]
    _pad_silence: bool
    _boost_dbfs: float | None

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
    ) -> Outcome:
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
        return Outcome(parts, info.language, p, words=timed)

    def _result(self, outcome: Outcome, audio_s: float, compute_s: float, tag: object) -> AsrResult:
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

    def _is_silent(self, audio: npt.NDArray[np.float32]) -> bool:
        if len(audio) < self._gates.min_audio_s * SAMPLE_RATE:
            return True
        return float(np.max(np.abs(audio))) < self._gates.silence_peak

    def _tokenizer(self, language: str) -> Tokenizer:
        return Tokenizer(
            self._model.hf_tokenizer, self._multilingual, task="transcribe", language=language
        )


@dataclass(slots=True)
class Outcome:
    """What one request came to before gating: its decoded parts and how."""

    parts: list[Decoded]
    language: str
    language_p: float | None = None
    fallback: str | None = None
    #: Word times per part (parallel to `parts`; empty lists where none were asked for).
    words: list[list[RawWord]] = field(default_factory=list)
