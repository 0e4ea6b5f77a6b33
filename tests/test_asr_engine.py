"""WhisperEngine on the real `base` model and real clips: accuracy, script, language, silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr.engine import WhisperEngine
from asr.models import resolve_model
from asr.textnorm import to_simplified
from asr.types import AsrRequest, AsrResult
from evaluation.scoring import cer, corpus_cer, corpus_wer, wer
from tests.fixtures_asr import (
    REFERENCE_BATCHES,
    load_clip,
    manifest,
    reference,
    requests_for,
)

REFERENCE_FILES = [f for batch in REFERENCE_BATCHES for f in batch]


def _by_language(results: list[list[AsrResult]], language: str) -> list[AsrResult]:
    return [r for batch in results for r in batch if manifest()[str(r.tag)].language == language]


def test_results_come_back_in_order_with_their_tags(
    reference_batches: list[list[AsrResult]],
) -> None:
    for files, results in zip(REFERENCE_BATCHES, reference_batches, strict=True):
        assert [r.tag for r in results] == list(files)
        for r in results:
            assert r.audio_s == pytest.approx(manifest()[str(r.tag)].seconds, abs=0.02)
            assert r.compute_s > 0
            assert 0.5 < r.confidence <= 1.0


def test_language_is_detected_per_utterance_in_a_mixed_batch(
    reference_batches: list[list[AsrResult]],
) -> None:
    for batch in reference_batches:
        for r in batch:
            assert r.language == manifest()[str(r.tag)].language, r


def test_english_word_error_rate_is_low(reference_batches: list[list[AsrResult]]) -> None:
    english = _by_language(reference_batches, "en")
    assert any(manifest()[str(r.tag)].sample_rate == 8000 for r in english)
    refs = [reference(str(r.tag)) for r in english]
    assert corpus_wer(refs, [r.text for r in english]) < 0.1
    for r, ref in zip(english, refs, strict=True):
        assert wer(ref, r.text) < 0.2, (ref, r.text)


def test_mandarin_comes_out_simplified_with_low_cer(
    reference_batches: list[list[AsrResult]],
) -> None:
    mandarin = _by_language(reference_batches, "zh")
    for r in mandarin:
        assert r.text and to_simplified(r.text) == r.text, f"Traditional characters in {r.text}"
    refs = [reference(str(r.tag)) for r in mandarin]
    assert corpus_cer(refs, [r.text for r in mandarin]) < 0.25


def test_without_normalisation_base_writes_traditional(asr_cache_dir: Path) -> None:
    """Proves the Simplified output above is our doing: the raw model writes Traditional."""
    raw = WhisperEngine(
        resolve_model("base", asr_cache_dir, offline=True),
        "cpu",
        "int8",
        1,
        "zh",
        1,
        simplified_chinese=False,
    )
    file = "zh/aishell1_BAC009S0150W0411.flac"
    [result] = raw.transcribe_batch(requests_for([file]))
    assert to_simplified(result.text) != result.text, result.text
    assert cer(reference(file), result.text) < 0.2  # the scorer maps Traditional itself


def test_forced_language_matches_detection(whisper_engine: WhisperEngine) -> None:
    """A forced language skips detection but decodes the same window the same way."""
    file = "zh/aishell1_BAC009S0252W0217.flac"
    audio = load_clip(file)
    auto, forced = whisper_engine.transcribe_batch(
        [AsrRequest(audio, tag="auto"), AsrRequest(audio, language="zh", tag="forced")]
    )
    assert forced.language == auto.language == "zh"
    assert forced.text == auto.text
    assert forced.tag == "forced"


def _noise(level_dbfs: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16_000 * seconds)) * 10 ** (level_dbfs / 20)).astype(np.float32)


def test_silence_and_noise_produce_no_text(whisper_engine: WhisperEngine) -> None:
    music = load_clip("noise/moh_macroform-cold_day_30s.flac")
    babble = load_clip("noise/babble_constructed_8talkers.flac")
    cases = {
        "digital zeros": np.zeros(48_000, np.float32),
        "white noise at -55 dBFS": _noise(-55, 3.0, seed=1),
        "hold music": music[6 * 16_000 : 12 * 16_000],
        # The hardest stretch: base decodes it with avg_logprob -0.8 ("I'm a Christian...").
        "8-talker babble": babble[6 * 16_000 : 12 * 16_000],
    }
    results = whisper_engine.transcribe_batch(
        [AsrRequest(audio, tag=name) for name, audio in cases.items()]
    )
    for r in results:
        assert r.text == "", f"{r.tag}: invented {r.text!r}"
        assert r.confidence == 0.0
    assert results[0].compute_s == 0.0  # digital silence never reaches the model ...
    assert all(r.compute_s > 0 for r in results[1:])  # ... the rest is decoded, then gated


def test_audio_longer_than_one_window(whisper_engine: WhisperEngine) -> None:
    files = [
        "en/ljspeech_LJ001-0001.flac",
        "en/ljspeech_LJ001-0003.flac",
        "en/ljspeech_LJ001-0014.flac",
        "en/ljspeech_LJ001-0013.flac",
    ]
    audio = np.concatenate([load_clip(f) for f in files])
    assert len(audio) / 16_000 > 30
    # Forced language: auto-detection would cost a third encoder pass on this slow path.
    [result] = whisper_engine.transcribe_batch(
        [AsrRequest(audio, language="en", word_timestamps=True)]
    )
    assert result.language == "en"
    assert wer(" ".join(reference(f) for f in files), result.text) < 0.15
    # Word times on this path come from faster-whisper's own `word_timestamps`.
    assert len(result.words) >= 0.9 * len(result.text.split())
    assert all(a.start_s <= b.start_s for a, b in zip(result.words, result.words[1:], strict=False))


def test_english_only_model(tmp_path: Path) -> None:
    tiny = WhisperEngine(resolve_model("tiny.en", tmp_path, offline=True), "auto", "auto", 1)
    file = "en/asterisk_vm-sorry.flac"
    [result] = tiny.transcribe_batch(requests_for([file]))
    assert result.language == "en"
    assert wer(reference(file), result.text) < 0.2
    with pytest.raises(ValueError, match="English-only"):
        tiny.transcribe_batch([AsrRequest(load_clip(file), language="zh")])
    with pytest.raises(ValueError, match="English-only"):
        WhisperEngine(tiny.model_path, "cpu", "int8", 1, language_default="zh")


def test_bad_audio_is_rejected_by_name(whisper_engine: WhisperEngine) -> None:
    good = np.zeros(16_000, np.float32)
    with pytest.raises(ValueError, match=r"requests\[1\]\.audio must be 1-D float32"):
        whisper_engine.transcribe_batch([AsrRequest(good), AsrRequest(good.astype(np.float64))])
    with pytest.raises(ValueError, match=r"requests\[0\]\.audio must be 1-D"):
        whisper_engine.transcribe_batch([AsrRequest(np.zeros((2, 100), np.float32))])
    with pytest.raises(ValueError, match="NaN"):
        whisper_engine.transcribe_batch([AsrRequest(np.full(100, np.nan, np.float32))])
    with pytest.raises(ValueError, match="language"):
        whisper_engine.transcribe_batch([AsrRequest(good, language="klingon")])
    assert whisper_engine.transcribe_batch([]) == []


def test_word_times_for_texts_with_numbers_only(whisper_engine: WhisperEngine) -> None:
    """Audio redaction's word times: asked for, they come with texts that hold numbers (in a
    batch of two languages: one alignment per language), map onto the normalised text, and
    say when the digits were said; ordinary speech and requests without them get none."""
    privacy = Path(__file__).parent / "data" / "privacy"
    pan_en, pan_zh = (load_clip(str(privacy / f)) for f in ("en/p_pan_words.flac",
                                                            "zh/p_visa.flac"))  # fmt: skip
    plain = load_clip("en/ljspeech_LJ001-0001.flac")
    en, zh, other, unasked = whisper_engine.transcribe_batch(
        [AsrRequest(pan_en, word_timestamps=True), AsrRequest(pan_zh, word_timestamps=True),
         AsrRequest(plain, word_timestamps=True), AsrRequest(pan_en)]
    )  # fmt: skip
    assert not other.words and not unasked.words and unasked.text == en.text
    for result, audio in ((en, pan_en), (zh, pan_zh)):
        assert result.words, result.text
        ends = [0.0]
        for w in result.words:
            assert result.text[w.start_char : w.end_char].strip()
            assert ends[-1] - 0.05 <= w.start_s <= w.end_s <= len(audio) / 16_000
            ends.append(w.end_s)
        digits = [
            w
            for w in result.words
            if any(c.isdigit() for c in result.text[w.start_char : w.end_char])
        ]
        # "My card number is four ..." / "我的信用卡号是4532...": the number from ~1 s on.
        assert 0.6 <= digits[0].start_s <= 1.5 and digits[-1].end_s >= len(audio) / 16_000 - 1.0


def test_word_times_the_same_when_the_encoder_output_is_not_host_memory(
    whisper_engine: WhisperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU a language group's rows are re-encoded rather than sliced from host memory:
    that path (run here on the CPU) gives the same word times."""
    privacy = Path(__file__).parent / "data" / "privacy"
    batch = [AsrRequest(load_clip(str(privacy / f)), word_timestamps=True)
             for f in ("en/p_cvv.flac", "zh/p_cvv.flac")]  # fmt: skip
    sliced = whisper_engine.transcribe_batch(batch)
    monkeypatch.setattr(whisper_engine, "device", "cuda")
    encoded = whisper_engine.transcribe_batch(batch)
    assert [r.words for r in sliced] == [r.words for r in encoded] and sliced[0].words
