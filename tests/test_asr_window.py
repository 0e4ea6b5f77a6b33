"""The shortened encoder window and its quality-gated fallback (asr/window.py, asr/engine.py):
the same accuracy as Whisper's full 30 s window, and a decode that looks wrong is redone on
the full window (its speed is a benchmark figure: scripts/bench, not a test)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from asr.engine import EngineConfig, WhisperEngine
from asr.settings import AsrSettings
from asr.types import AsrRequest
from asr.window import Decoded, FallbackGates, boost_quiet, bucket, loudness_dbfs, window_frames
from evaluation.scoring import corpus_cer, corpus_wer
from tests.fixtures_asr import load_clip, reference, requests_for

CLIPS_EN = ("en/ljspeech_LJ001-0004.flac", "en/asterisk_invalid.flac")
CLIPS_ZH = ("zh/aishell1_BAC009S0150W0121.flac", "zh/aishell1_BAC009S0252W0217.flac")


def test_window_is_the_utterance_plus_margin_capped_at_30_s() -> None:
    assert window_frames(500, 0.0) == 3000  # 0: Whisper's full window
    assert window_frames(500, 10.0) == 1500  # 5 s + 10 s margin
    assert window_frames(2501, 10.0) == 3000  # capped at Whisper's window
    assert window_frames(1, 3.0) == 400
    assert window_frames(450, 3.0) == 800  # rounded up to a whole second
    # Batches group windows within 2 s of each other.
    assert bucket(2.0, 3.0) == bucket(2.5, 3.0) != bucket(20.0, 3.0)


def test_the_default_is_a_short_window_with_the_fallback(
    asr_settings: AsrSettings, asr_cache_dir: Path
) -> None:
    config = EngineConfig.from_settings(asr_settings, asr_cache_dir)
    assert config.window_margin_s == 3.0 and config.fallback and config.pad_silence
    assert config.boost_dbfs == -25.0


def test_quiet_audio_is_raised_to_the_target_and_loud_audio_left_alone() -> None:
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(16_000) * 0.003).astype(np.float32)  # about -50 dBFS
    loud = (rng.standard_normal(16_000) * 0.1).astype(np.float32)
    assert loudness_dbfs(boost_quiet(quiet, -25.0)) == pytest.approx(
        loudness_dbfs(quiet) + 20, abs=0.01
    )
    mid = quiet * 10
    assert loudness_dbfs(boost_quiet(mid, -25.0)) == pytest.approx(-25.0, abs=0.01)
    assert boost_quiet(loud, -25.0) is loud


def _decoded(text: str, seconds: float = 3.0, **kw: float) -> Decoded:
    tokens = int(kw.pop("tokens", 10))
    stats = {"avg_logprob": -0.3, "no_speech_prob": 0.05, "compression_ratio": 1.2, **kw}
    return Decoded(
        text,
        seconds,
        stats["avg_logprob"],
        stats["no_speech_prob"],
        stats["compression_ratio"],
        tokens=tokens,
        token_cap=46,
    )


@pytest.mark.parametrize(
    ("part", "language", "p", "loud", "reason"),
    [
        (_decoded("thank you for calling"), "en", 0.98, -20.0, None),
        (_decoded("好的好的", tokens=46), "zh", None, -20.0, "token_cap"),
        (_decoded("yes " * 20, compression_ratio=3.1), "en", None, -20.0, "compression"),
        (_decoded("maybe this", avg_logprob=-0.9), "en", None, -20.0, "logprob"),
        (_decoded("一" * 40), "zh", None, -20.0, "rate"),
        (
            _decoded(
                "hello",
            ),
            "en",
            0.4,
            -20.0,
            "language_p",
        ),
        (_decoded("こんにちは"), "ja", 0.95, -20.0, "language"),
        (_decoded(""), "en", 0.95, -20.0, "empty"),
        (_decoded(""), "en", 0.95, -50.0, None),  # quiet: nothing was said
        # Hold music: unsure and probably not speech, on any window; the gates drop it.
        (_decoded("music", avg_logprob=-1.76, no_speech_prob=0.33), "en", 0.59, -20.0, None),
    ],
)
def test_fallback_gates_name_what_looks_wrong(
    part: Decoded, language: str, p: float | None, loud: float, reason: str | None
) -> None:
    assert FallbackGates().suspect(part, language, p, loud) == reason


def test_short_window_matches_full_window_accuracy(
    asr_settings: AsrSettings, asr_cache_dir: Path, whisper_engine: WhisperEngine
) -> None:
    config = EngineConfig.from_settings(asr_settings, asr_cache_dir)
    engines = {
        "short": whisper_engine,  # the default settings
        "full": dataclasses.replace(config, window_margin_s=0.0).build(),
    }
    figures = {}
    for name, engine in engines.items():
        en = [r.text for r in engine.transcribe_batch(requests_for(CLIPS_EN))]
        zh = [r.text for r in engine.transcribe_batch(requests_for(CLIPS_ZH))]
        figures[name] = (
            corpus_wer([reference(c) for c in CLIPS_EN], en),
            corpus_cer([reference(c) for c in CLIPS_ZH], zh),
        )
    (wer_s, cer_s), (wer_f, cer_f) = figures["short"], figures["full"]
    assert wer_s <= wer_f + 0.03 and cer_s <= cer_f + 0.03


def test_a_wrong_language_lock_is_redone_with_detection(whisper_engine: WhisperEngine) -> None:
    zh, en = load_clip(CLIPS_ZH[0]), load_clip(CLIPS_EN[0])
    wrong_zh, wrong_en, right = whisper_engine.transcribe_batch(
        [
            AsrRequest(zh, locked_language="en"),
            AsrRequest(en, locked_language="zh"),
            AsrRequest(zh, locked_language="zh"),
        ]
    )
    for res, lang in ((wrong_zh, "zh"), (wrong_en, "en")):
        assert res.fallback is not None and res.language == lang
        assert res.language_p is not None and res.language_p >= 0.9
    assert right.fallback is None and right.language_p is None  # the lock saved a detection
    assert corpus_cer([reference(CLIPS_ZH[0])], [wrong_zh.text]) <= corpus_cer(
        [reference(CLIPS_ZH[0])], [right.text]
    )


def test_a_suspect_decode_is_the_full_window_decode(
    asr_settings: AsrSettings, asr_cache_dir: Path, whisper_engine: WhisperEngine
) -> None:
    config = EngineConfig.from_settings(asr_settings, asr_cache_dir)
    # Gates that doubt every decode with words in it: each one must be redone on 30 s.
    doubting = WhisperEngine(
        config.model,
        config.device,
        config.compute_type,
        window_margin_s=3.0,
        fallback=FallbackGates(min_avg_logprob=0.0),
        boost_dbfs=config.boost_dbfs,
    )
    full = dataclasses.replace(config, window_margin_s=0.0).build()
    requests = requests_for(CLIPS_EN + CLIPS_ZH)
    redone = doubting.transcribe_batch(requests)
    assert [r.fallback for r in redone] == ["logprob"] * len(requests)
    assert [r.text for r in redone] == [r.text for r in full.transcribe_batch(requests)]
    assert all(r.fallback is None for r in whisper_engine.transcribe_batch(requests))
