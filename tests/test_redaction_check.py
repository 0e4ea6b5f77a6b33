"""After a crash, the audio a recording's redaction journal left unchecked is checked at
start-up (monitor/runtime/redaction_check.py), not blanked: real SQLite, a real recording
with its journal (`RedactingRecorder`, cut off without finishing), rendered speech, the real
VAD segmenter, transcript redactor and audio planner, and the real `AsrService` in front of a
scripted transcriber at the ASR seam. The end-to-end proof with the real model and a real
`kill -9` is in test_crash_recovery.py and test_audio_redaction_e2e.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.types import AsrRequest, AsrResult, WordTiming
from config.settings import Settings
from ivr_sim import render
from ivr_sim.script import script_from_dict
from monitor.events import CallSequencer, CallStarted
from monitor.runtime.asr_service import AsrService
from monitor.runtime.recovery import recover_interrupted
from monitor.runtime.redaction_check import RedactionCheck
from monitor.runtime.storage_rows import rows_for
from monitor.web.api.media import withheld
from storage.audio_redaction import RedactingRecorder, journal_path
from storage.repository import Repository

DATA = Path(__file__).parent / "data" / "privacy"
RATE = 16000
CONFIRMED_S = 1.0  # the journal's checked point: the agent's question, before the number
PAN_TEXT = "My card number is 4111 1111 1111 1111."


def _sent() -> np.ndarray:
    """Stereo 16 kHz: the agent asks, the customer says a card number (rendered speech),
    over low noise so that every sample is distinct from silence."""
    call = render(script_from_dict({
        "name": "recovered", "sample_rate": RATE,
        "turn": [{"party": "agent", "audio": "en/p_ask.flac", "pause": 0.3},
                 {"party": "customer", "audio": "en/p_pan_words.flac", "pause": 0.8}],
    }), DATA)  # fmt: skip
    pcm = np.frombuffer(call.pcm(), dtype="<i2").reshape(-1, 2).astype(np.int32)
    noise = np.random.default_rng(7).integers(5, 30, size=pcm.shape)
    return np.clip(pcm + noise, -32768, 32767).astype("<i2")


class ScriptedPool:
    """The ASR seam: every utterance "says" `text`; its digit groups timed from 1.0 s, 0.4 s
    each."""

    worker_count = 1

    def __init__(self, text: str | None) -> None:
        self.text = text  # None: the model fails
        self.requests: list[AsrRequest] = []

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        self.requests += requests
        if self.text is None:
            raise RuntimeError("model worker died")
        words = [WordTiming(1.0 + 0.4 * i, 1.4 + 0.4 * i, m.start(), m.end())
                 for i, m in enumerate(re.finditer(r"\d+", self.text))]  # fmt: skip
        return [AsrResult(self.text, "en", 0.9, len(r.audio) / RATE, 0.01,
                          words=tuple(words) if r.word_timestamps else ())
                for r in requests]  # fmt: skip


def _crashed_call(tmp: Path, sent: np.ndarray, **privacy: object) -> tuple[Settings, Repository]:
    """A call that was recording when the server died: stored `active`, its recording on
    disk with the journal confirming only the first second."""
    settings = Settings(data_dir=tmp, privacy=privacy)  # type: ignore[arg-type]
    settings.recordings_dir.mkdir(parents=True)
    repo = Repository.from_url(settings.database_url)
    repo.upgrade()
    seq = CallSequencer("call-1", start=0)
    started = seq.make(CallStarted, media_ms=0, external_id="ext-1", protocol="audio_fork",
                       sample_rate=RATE, channels=2, recording_path="c.wav",
                       parties=(("customer", 0), ("agent", 1)))  # fmt: skip
    repo.apply(list(rows_for(started)))
    rec = RedactingRecorder(settings.recordings_dir / "c.wav", RATE, 2)
    rec.confirm(int(CONFIRMED_S * RATE))
    rec.write(sent.tobytes())
    rec.abandon()  # kill -9: no finish, the journal stays (closing the WAV only frees
    rec.close()  # its descriptor: the file is what a crash leaves)
    return settings, repo


async def _start(settings: Settings, repo: Repository, pool: ScriptedPool) -> list[str]:
    """What `Callwatch.start` does for recovery: close the call at once, check afterwards."""
    recovered = await asyncio.to_thread(recover_interrupted, repo, settings)
    path = settings.recordings_dir / "c.wav"
    call = repo.get_call("call-1")
    assert call is not None and call.status == "interrupted"
    # Closed, but not checked yet: withheld (not served, not sealed), the journal in place.
    assert journal_path(path).exists() and withheld(path, call.status)
    asr = AsrService(pool, queue_size=8, batch_size=4, word_timestamps=True)
    asr.start()
    sealed: list[Path] = []

    async def seal(p: Path) -> None:
        sealed.append(p)

    check = RedactionCheck(settings, repo, asr, on_final=seal)
    check.start(recovered)
    await asyncio.wait_for(check.wait(), 30)
    await asr.close()
    assert sealed == [path] and not journal_path(path).exists()
    assert not withheld(path, call.status)
    return recovered


def _recording(settings: Settings) -> np.ndarray:
    rec, rate = sf.read(settings.recordings_dir / "c.wav", dtype="int16", always_2d=True)
    assert rate == RATE
    return np.asarray(rec)


def _run(settings: Settings, repo: Repository, pool: ScriptedPool) -> None:
    asyncio.run(_start(settings, repo, pool))


@pytest.fixture
def crashed(tmp_path: Path) -> Callable[..., tuple[Settings, Repository, np.ndarray]]:
    def make(**privacy: object) -> tuple[Settings, Repository, np.ndarray]:
        sent = _sent()
        settings, repo = _crashed_call(tmp_path / "data", sent, **privacy)
        return settings, repo, sent

    return make


def test_unchecked_audio_without_a_number_is_kept_sample_exact(crashed) -> None:  # type: ignore[no-untyped-def]
    settings, repo, sent = crashed()
    pool = ScriptedPool("Thank you for calling.")
    _run(settings, repo, pool)
    np.testing.assert_array_equal(_recording(settings), sent)  # nothing blanked
    # Both parties' speech after the checked point went through ASR, with word times.
    assert pool.requests and all(r.word_timestamps for r in pool.requests)
    call = repo.get_call("call-1")
    assert call is not None
    assert call.segments and all(s.late and s.start_ms >= 700 for s in call.segments)
    [done] = [t for t in call.trace if t.kind == "audio_redacted"]
    assert done.data["checked"] is True and done.data["masked_ms"] == 0
    assert done.data["checked_ms"] == (len(sent) - RATE) * 1000 // RATE
    [fin] = [t for t in call.trace if t.kind == "finalised"]
    assert fin.data["unchecked_ms"] == done.data["checked_ms"]
    # Idempotent: nothing left to check at the next start.
    asyncio.run(_again(settings, repo))
    assert repo.get_call("call-1").trace == call.trace  # type: ignore[union-attr]


async def _again(settings: Settings, repo: Repository) -> None:
    pool = ScriptedPool(None)
    asr = AsrService(pool, queue_size=8, batch_size=4, word_timestamps=True)
    asr.start()
    check = RedactionCheck(settings, repo, asr)
    check.start([])
    await check.wait()
    await asr.close()
    assert not pool.requests and check.checked == check.fallbacks == 0


def test_a_number_in_the_unchecked_audio_is_masked_and_only_it(crashed) -> None:  # type: ignore[no-untyped-def]
    settings, repo, sent = crashed(audio_pad_ms=250)
    _run(settings, repo, ScriptedPool(PAN_TEXT))
    rec = _recording(settings)
    call = repo.get_call("call-1")
    assert call is not None
    assert all("4111" not in s.text and "[PAN]" in s.text for s in call.segments)
    spans = [(e["start_ms"], e["end_ms"]) for t in call.trace if t.kind == "redacted"
             for e in t.data["entities"]]  # fmt: skip
    assert spans
    allowed = np.zeros(len(rec), dtype=bool)
    for a, b in spans:
        allowed[(a - 251) * RATE // 1000 : (b + 251) * RATE // 1000] = True
    changed = np.flatnonzero((rec != sent).any(axis=1))
    assert changed.size and not rec[changed].any()  # silence, on both channels
    assert allowed[changed].all()  # only over the numbers (word times + pad)
    np.testing.assert_array_equal(rec[~allowed], sent[~allowed])
    [done] = [t for t in call.trace if t.kind == "audio_redacted"]
    assert done.data["checked"] is True and done.data["masked_ms"] > 1500
    assert done.data["untimed"] == 0


def test_digits_the_crash_cut_short_are_masked_though_no_check_digit_fits(crashed) -> None:  # type: ignore[no-untyped-def]
    """The customer was still saying the number when the server died: 14 digits heard, no
    Luhn check can call them a PAN, but the live redactor would have held them for the rest.
    Only the last utterance (ending within `hold_ms` of the cut) is treated so."""
    settings, repo, sent = crashed(hold_ms=2000)
    _run(settings, repo, ScriptedPool("My card number is 4532 0151 1283 03."))
    call = repo.get_call("call-1")
    assert call is not None
    texts = {s.party: s.text for s in call.segments}
    assert texts["customer"] == "My card number is [CARD]."  # ends 0.46 s before the cut
    assert texts["agent"] == "My card number is 4532 0151 1283 03."  # ended 7.7 s before it
    [marked] = [t for t in call.trace if t.kind == "redacted"]
    assert [e["type"] for e in marked.data["entities"]] == ["card_data"]
    rec = _recording(settings)
    customer = next(s for s in call.segments if s.party == "customer")
    # From the first digit's word (1.0 s into it, less the pad) to the cut: silent, as the
    # number went on past what was heard; everything before it exactly as sent.
    first = (customer.start_ms + 1000 - 250) * RATE // 1000
    assert not rec[first:].any()
    np.testing.assert_array_equal(rec[:first], sent[:first])


def test_asr_failing_at_recovery_masks_the_unchecked_audio_and_says_so(crashed) -> None:  # type: ignore[no-untyped-def]
    settings, repo, sent = crashed()
    pool = ScriptedPool(None)
    _run(settings, repo, pool)
    assert pool.requests  # it tried
    rec = _recording(settings)
    checked = int(CONFIRMED_S * RATE)
    np.testing.assert_array_equal(rec[:checked], sent[:checked])
    assert not rec[checked:].any()  # never left unchecked as the final recording
    call = repo.get_call("call-1")
    assert call is not None and not call.segments
    [done] = [t for t in call.trace if t.kind == "audio_redacted"]
    assert done.data["checked"] is False and done.data["fallback"] == "CheckFailed"
    assert done.data["unchecked_masked_ms"] == (len(sent) - checked) * 1000 // RATE


def test_more_unchecked_audio_than_the_bound_is_masked_without_asr(crashed) -> None:  # type: ignore[no-untyped-def]
    settings, repo, sent = crashed(recovery_check_max_s=1)
    pool = ScriptedPool("Thank you.")
    _run(settings, repo, pool)
    assert not pool.requests
    assert not _recording(settings)[int(CONFIRMED_S * RATE) :].any()
    [done] = [t for t in repo.get_call("call-1").trace if t.kind == "audio_redacted"]  # type: ignore[union-attr]
    assert done.data["fallback"] == "over_bound"
