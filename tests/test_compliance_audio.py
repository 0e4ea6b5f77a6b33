"""Compliance on real audio: simulated calls rendered by ivr_sim at 8 kHz, cut by the call
session's segmenter, transcribed by the bundled Whisper model, checked live."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr.engine import WhisperEngine
from asr.settings import VadSettings
from asr.types import AsrRequest
from ivr_sim.script import CallScript, Turn, render
from monitor.core.events import Party, UtteranceEnded
from monitor.core.metadata import CallMetadata
from monitor.core.session import CallSession
from monitor.qa import (
    ComplianceChecker,
    ComplianceEvent,
    ComplianceResult,
    ForbiddenPhraseSaid,
    OrderViolated,
    PhraseMissed,
    load_compliance_scripts,
)
from monitor.qa.watermark import TranscriptWatermark

pytestmark = pytest.mark.slow
TTS = Path(__file__).resolve().parent / "data" / "tts"


def run_call(
    engine: WhisperEngine, language: str, turns: list[tuple[str, str, float]]
) -> tuple[ComplianceResult, list[tuple[int, ComplianceEvent]]]:
    """Render, segment in 20 ms chunks, transcribe each utterance as it ends (ASR takes no
    media time here), feed the checker and advance it to the transcript watermark after each
    chunk. Returns the result and every event with the media time (ms of audio fed) at
    which it came out."""
    call = render(
        CallScript(f"{language}-test", 8000, tuple(Turn(p, f, pause) for p, f, pause in turns)), TTS
    )
    meta = CallMetadata("t", 8000, 2, {Party.CUSTOMER: 0, Party.AGENT: 1})
    session = CallSession(meta, VadSettings())
    checker = ComplianceChecker(load_compliance_scripts().select({}, language))
    events: list[tuple[int, ComplianceEvent]] = []
    watermark = TranscriptWatermark()
    pcm, step = call.pcm(), 8000 * 20 // 1000 * 4

    def feed(utterances: list[UtteranceEnded]) -> None:
        now_ms = session.duration_ms
        watermark.on_audio(
            now_ms, {leg.party.value: leg.segmenter.in_speech for leg in session.legs.values()}
        )
        for u in utterances:
            watermark.on_queued(id(u), u.start_ms)
            [result] = engine.transcribe_batch([AsrRequest(u.audio.astype(np.float32) / 32768)])
            if result.text:
                found = checker.on_segment(
                    u.party.value, u.start_ms, u.end_ms, result.text, result.language
                )
                events.extend((now_ms, e) for e in found)
            watermark.on_done(id(u))
        events.extend((now_ms, e) for e in checker.advance(watermark.value))

    for pos in range(0, len(pcm), step):
        feed(session.feed(pcm[pos : pos + step]))
    feed(session.finish())
    return checker.finish(session.duration_ms), events


def test_english_call_near_miss_greeting_forbidden_phrase(whisper_engine: WhisperEngine) -> None:
    result, events = run_call(
        whisper_engine,
        "en",
        [
            ("agent", "en/a_near_miss_greeting_01.flac", 0.5),  # "Hello, how can I help you today?"
            ("customer", "en/a_customer_01.flac", 0.6),
            ("agent", "en/a_verification_02.flac", 4.0),  # nobody speaks as the window closes
            ("agent", "en/a_forbidden_01.flac", 2.0),  # "That's not my problem ..."
            ("agent", "en/a_closing_01.flac", 1.0),
        ],
    )
    statuses = {row.stage: row.status for row in result.stages}
    assert statuses["greeting"] == "missed"  # the near miss does not count
    assert statuses["verification"] == "passed" and statuses["closing"] == "passed"
    [(at, miss)] = [
        (t, e) for t, e in events if isinstance(e, PhraseMissed) and e.stage == "greeting"
    ]
    assert isinstance(miss, PhraseMissed)
    # Emitted within 1 s of the window closing: the agent was silent then, so the transcript
    # watermark had reached the close.
    assert miss.at_ms <= at < miss.at_ms + 1000
    [(_, alert)] = [(t, e) for t, e in events if isinstance(e, ForbiddenPhraseSaid)]
    assert isinstance(alert, ForbiddenPhraseSaid) and alert.rule == "shirking"
    assert result.critical is False and result.score == 100 - 15 - 15


def test_mandarin_call_out_of_order(whisper_engine: WhisperEngine) -> None:
    result, events = run_call(
        whisper_engine,
        "zh",
        [
            ("agent", "zh/a_verification_02.flac", 0.5),  # before the greeting
            ("agent", "zh/a_greeting_02.flac", 0.6),
            ("customer", "zh/a_customer_04.flac", 0.7),
            ("agent", "zh/a_forbidden_01.flac", 0.8),
            ("customer", "zh/a_customer_04.flac", 0.7),
            ("agent", "zh/a_near_miss_closing_01.flac", 0.8),  # "好的，就这样吧，再见。"
        ],
    )
    statuses = {row.stage: row.status for row in result.stages}
    # The greeting was still being spoken when its window closed (at 10.3 s): the watermark
    # held the window open until its transcript arrived.
    assert statuses["greeting"] == "passed" and statuses["verification"] == "passed"
    assert statuses["closing"] == "missed"  # no thanks: the near miss does not count
    orders = [e for _, e in events if isinstance(e, OrderViolated)]
    assert [(o.stage, o.expected_after) for o in orders] == [("verification", "greeting")]
    assert [e.rule for _, e in events if isinstance(e, ForbiddenPhraseSaid)] == ["shirking"]
    greeting = result.stage("greeting")
    assert greeting.matched_text and greeting.start_ms is not None
