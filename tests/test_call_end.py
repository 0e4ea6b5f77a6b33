"""Calls end at once, and overload loses no transcript.

A real gateway, storage writer (SQLite), event bus and board hub in this process; the real
simulator streams real two-party recordings in. Only the ASR model is replaced, at the
`BatchTranscriber` seam, by a scripted one whose speed the test controls (held by a gate, or
slow): its "transcript" is a fingerprint of the exact audio it was given, so a segment
proves which samples were transcribed (live, or re-read from the recording after the call).
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from asr.types import AsrRequest, AsrResult
from config.settings import Settings, load_settings
from ivr_sim import RenderedCall, builtin_scripts, load_script, render, stream_call
from ivr_sim.stream import call_metadata
from monitor.board.hub import BoardHub
from monitor.core.metadata import parse_metadata
from monitor.core.session import CallSession
from monitor.qa import load_compliance_scripts
from monitor.runtime.asr_service import AsrService
from monitor.runtime.bus import EventBus
from monitor.runtime.gateway import Gateway
from monitor.runtime.storage_sink import StorageWriter
from storage.repository import CallDetail, Repository


def fingerprint(audio: np.ndarray) -> str:
    """The same text for the same 16-bit samples (as float32 requests or int16 utterances)."""
    pcm = audio if audio.dtype == np.int16 else np.rint(audio * 32768.0).astype(np.int16)
    return f"u{pcm.size}x{zlib.crc32(pcm.tobytes()):08x}"


@dataclass
class ScriptedTranscriber:
    """A `BatchTranscriber`: one worker; each utterance takes `delay_s` once `gate` is open."""

    delay_s: float = 0.0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    done: int = 0

    @property
    def worker_count(self) -> int:
        return 1

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        await self.gate.wait()
        await asyncio.sleep(self.delay_s * len(requests))
        self.done += len(requests)
        return [
            AsrResult(fingerprint(r.audio), "en", 0.9, r.audio.size / 16000, self.delay_s)
            for r in requests
        ]


@dataclass
class Rig:
    settings: Settings
    repo: Repository
    storage: StorageWriter
    asr: AsrService
    gateway: Gateway
    hub: BoardHub
    transcriber: ScriptedTranscriber

    async def call(self, external_id: str) -> CallDetail | None:
        await self.storage.drain()
        return await asyncio.to_thread(self.repo.get_call, external_id)


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[object]:
    made: list[Rig] = []

    async def make(*, queue_size: int = 256, delay_s: float = 0.0, open_gate: bool = True) -> Rig:
        settings = load_settings(
            env={}, data_dir=tmp_path, gateway={"port": 0, "audiosocket_port": -1}
        )
        repo = Repository.from_url(settings.database_url)
        await asyncio.to_thread(repo.upgrade)
        bus = EventBus()
        storage = StorageWriter(repo, batch_size=200, group_commit_s=0.0, queue_size=10_000,
                                bus=bus)  # fmt: skip
        storage.start()
        transcriber = ScriptedTranscriber(delay_s=delay_s)
        if open_gate:
            transcriber.gate.set()
        asr = AsrService(transcriber, queue_size=queue_size, batch_size=1)
        asr.start()
        scripts = load_compliance_scripts(settings.compliance.scripts_dir)
        gateway = Gateway(settings, storage, asr, scripts=scripts)
        await gateway.start()
        hub = BoardHub(bus, repo, tick_s=0.05)
        await hub.ensure_started()
        rig = Rig(settings, repo, storage, asr, gateway, hub, transcriber)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.transcriber.gate.set()
        await rig.gateway.stop()
        await rig.asr.close()
        await rig.hub.close()
        await rig.storage.close()
        rig.repo.close()


def _script(name: str) -> RenderedCall:
    return render(load_script(next(p for p in builtin_scripts() if p.name == name)))


def expected_utterances(call: RenderedCall, meta: dict[str, object]) -> dict[tuple, str]:
    """What the live path cuts from this call, run offline: (party, start_ms, end_ms) ->
    fingerprint of its audio."""
    session = CallSession(parse_metadata(json.dumps(meta)), Settings().vad)
    utterances = session.feed(call.pcm()) + session.finish()
    return {(u.party.value, u.start_ms, u.end_ms): fingerprint(u.audio) for u in utterances}


async def _until(predicate, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"not within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_hang_up_ends_the_call_at_once_and_the_verdict_follows_the_last_transcript(
    rig_factory,  # type: ignore[no-untyped-def]
) -> None:
    rig: Rig = await rig_factory(open_gate=False)  # ASR holds every utterance until we say
    call = _script("en_billing_8k.toml")
    meta = call_metadata(call)
    await stream_call(rig.gateway.url, call, pace=8.0, metadata=meta)
    ext = str(meta["callid"])

    async def ended() -> bool:
        stored = await rig.call(ext)
        return stored is not None and stored.status == "completed"

    # Completed in the database, off the board's active list, within a second of hang-up.
    assert await _until(ended, 1.0) < 1.0
    stored = await rig.call(ext)
    assert stored is not None and stored.end_reason == "normal" and stored.ended_at
    assert stored.grade is None and not stored.segments  # verdict and transcripts: pending
    assert "finalised" not in [t.kind for t in stored.trace]

    async def off_board() -> bool:
        card = rig.hub.state.calls.get(stored.call_id)
        return (
            rig.hub.state.kpis()["active_calls"] == 0
            and card is not None
            and (card.status == "completed" and card.transcripts_pending)
        )

    await _until(off_board, 1.0)
    assert rig.hub.state.calls[stored.call_id].to_json()["transcripts_pending"] is True

    # The last transcript lands: the verdict (grade, compliance, CallClosed) follows it.
    rig.transcriber.gate.set()
    expected = expected_utterances(call, meta)

    await _until(lambda: _finalised(rig, ext), 10.0)
    final = await rig.call(ext)
    assert final is not None and final.grade is not None
    assert {(s.party, s.start_ms, s.end_ms): s.text for s in final.segments} == expected
    [entry] = [t for t in final.trace if t.kind == "finalised"]
    assert entry.data["asr_pending"] == 0 and entry.data["segments"] == len(expected)
    kinds = [t.kind for t in final.trace]
    assert kinds.index("finalised") > max(i for i, k in enumerate(kinds) if k == "utterance")
    assert [t.seq for t in final.trace] == list(range(len(kinds)))
    await _until(lambda: _false_pending(rig, final.call_id), 1.0)


async def _finalised(rig: Rig, external_id: str) -> bool:
    got = await rig.call(external_id)
    return got is not None and any(t.kind == "finalised" for t in got.trace)


async def _false_pending(rig: Rig, call_id: str) -> bool:
    card = rig.hub.state.calls.get(call_id)
    return card is None or not card.transcripts_pending


async def test_overload_defers_utterances_and_the_stored_transcript_is_complete(
    rig_factory,  # type: ignore[no-untyped-def]
) -> None:
    # One slow worker and a queue of one: a 24 s call streamed at 8x real time overloads it,
    # and the service sheds what it cannot hold. Every shed utterance must still be
    # transcribed (from the recording, after the call) and stored as late.
    rig: Rig = await rig_factory(queue_size=1, delay_s=1.0)
    call = _script("en_billing_8k.toml")
    meta = call_metadata(call)
    await stream_call(rig.gateway.url, call, pace=8.0, metadata=meta)
    ext = str(meta["callid"])
    expected = expected_utterances(call, meta)

    await _until(lambda: _finalised(rig, ext), 30.0)
    final = await rig.call(ext)
    assert final is not None
    # Complete: every utterance has its segment, transcribed from exactly its samples.
    assert {(s.party, s.start_ms, s.end_ms): s.text for s in final.segments} == expected
    late = {(s.party, s.start_ms, s.end_ms) for s in final.segments if s.late}
    deferred = {(t.party, t.media_ms, t.data["end_ms"]) for t in final.trace
                if t.kind == "asr_deferred"}  # fmt: skip
    assert rig.asr.shed > 0 and late and late == deferred  # late exactly where deferred
    late_traced = {(t.party, t.media_ms, t.data["end_ms"]) for t in final.trace
                   if t.kind == "utterance" and t.data.get("late")}  # fmt: skip
    assert late_traced == late
    [entry] = [t for t in final.trace if t.kind == "finalised"]
    assert entry.data["asr_late"] == len(late) and entry.data["asr_pending"] == 0
    assert entry.data["asr_shed"] == 0 and entry.data["asr_lost"] == 0
    assert not any(t.kind == "asr_shed" for t in final.trace)
