"""Language once per party (asr/language.py): locks only on strong evidence, and a real
Mandarin speaker locked to Mandarin is decoded without detection at the same accuracy."""

from __future__ import annotations

import pytest

from asr.engine import WhisperEngine
from asr.language import LanguageTracker
from asr.types import AsrRequest, AsrResult
from evaluation.scoring import corpus_cer
from tests.fixtures_asr import load_clip, reference


def result(text: str, language: str, p: float | None) -> AsrResult:
    return AsrResult(text, language, 0.9, 2.0, 0.1, language_p=p)


def test_locks_after_two_confident_detections_of_one_language() -> None:
    t = LanguageTracker(lock_p=0.9, lock_after=2)
    t.observe("zh", 0.95)
    assert t.locked is None
    t.observe("zh", 0.92)
    assert t.locked == "zh"
    t.observe("zh", None)  # decoded under the lock: no new evidence, stays
    assert t.locked == "zh"


def test_never_locks_on_weak_evidence() -> None:
    t = LanguageTracker(lock_p=0.9, lock_after=2)
    for _ in range(10):
        t.observe("en", 0.6)  # a peer locking at p > 0.5 would have locked here
    assert t.locked is None
    t.observe("zh", 0.95)
    t.observe("en", 0.89)  # weak: neither counts nor breaks the streak
    t.observe("zh", 0.97)
    assert t.locked == "zh"


def test_a_confident_other_language_breaks_the_streak_and_the_lock() -> None:
    t = LanguageTracker(lock_p=0.9, lock_after=2)
    t.observe("zh", 0.95)
    t.observe("en", 0.95)
    t.observe("zh", 0.95)
    assert t.locked is None  # zh, en, zh: never two in a row
    t.observe("zh", 0.95)
    assert t.locked == "zh"
    # A suspect decode under the lock was redone with detection: confidently English.
    t.observe("en", 0.96)
    assert t.locked is None and t.unlocks == 1
    t.observe("en", 0.93)
    assert t.locked == "en"


def test_detections_on_empty_text_are_no_evidence() -> None:
    t = LanguageTracker(lock_p=0.9, lock_after=1)
    t.observe_result(result("", "en", 0.99))  # noise decoded to nothing
    assert t.locked is None
    t.observe_result(result("你好", "zh", 0.99))
    assert t.locked == "zh"


def test_lock_after_zero_never_locks_and_bad_settings_are_refused() -> None:
    t = LanguageTracker(lock_p=0.9, lock_after=0)
    t.observe("zh", 1.0)
    assert t.locked is None
    with pytest.raises(ValueError, match="lock_p"):
        LanguageTracker(lock_p=0.5)
    with pytest.raises(ValueError, match="lock_after"):
        LanguageTracker(lock_after=-1)


ZH = (
    "zh/aishell1_BAC009S0150W0121.flac",
    "zh/aishell1_BAC009S0252W0217.flac",
    "zh/aishell1_BAC009S0150W0411.flac",
)


def test_real_speaker_locks_then_decodes_without_detection(
    whisper_engine: WhisperEngine,
) -> None:
    tracker = LanguageTracker()
    results = []
    for clip in ZH:
        request = AsrRequest(load_clip(clip), locked_language=tracker.locked)
        [res] = whisper_engine.transcribe_batch([request])
        tracker.observe_result(res)
        results.append(res)
    # Two confident detections, then the third utterance decoded in the lock.
    assert [r.language for r in results] == ["zh"] * 3
    assert all(p is not None and p >= 0.9 for p in (r.language_p for r in results[:2]))
    assert results[2].language_p is None or results[2].fallback is not None
    detected = whisper_engine.transcribe_batch([AsrRequest(load_clip(ZH[2]))])[0]
    refs = [reference(ZH[2])]
    assert corpus_cer(refs, [results[2].text]) <= corpus_cer(refs, [detected.text]) + 0.01
