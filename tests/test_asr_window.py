"""The shortened encoder window: the same accuracy as Whisper's full 30 s window (its speed
is a benchmark figure: scripts/bench, not a test)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from asr.engine import EngineConfig
from asr.scoring import corpus_cer, corpus_wer
from config.settings import AsrSettings
from tests.fixtures_asr import reference, requests_for

CLIPS_EN = ("en/ljspeech_LJ001-0004.flac", "en/asterisk_invalid.flac")
CLIPS_ZH = ("zh/aishell1_BAC009S0150W0121.flac", "zh/aishell1_BAC009S0252W0217.flac")


def test_window_is_the_utterance_plus_margin_capped_at_30_s(
    asr_settings: AsrSettings, asr_cache_dir: Path
) -> None:
    config = EngineConfig.from_settings(asr_settings, asr_cache_dir)
    assert config.window_margin_s == 0.0  # the default: Whisper's full window
    full = config.build()
    assert full._window_frames(500, 3000) == 3000
    short = dataclasses.replace(config, window_margin_s=10.0).build()
    assert short._window_frames(500, 3000) == 1500  # 5 s + 10 s margin
    assert short._window_frames(2501, 3000) == 3000  # capped at Whisper's window
    assert short._window_frames(1, 3000) == 1100


def test_short_window_matches_full_window_accuracy(
    asr_settings: AsrSettings, asr_cache_dir: Path
) -> None:
    config = EngineConfig.from_settings(asr_settings, asr_cache_dir)
    engines = {
        "short": dataclasses.replace(config, window_margin_s=10.0).build(),
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
