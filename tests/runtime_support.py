"""In-process runtime rig for tests: a real gateway, storage writer (SQLite), event bus and
board hub; only the ASR model is replaced, at the `BatchTranscriber` seam, by a scripted one
whose speed the test controls (held by a gate, or slow). Its "transcript" is a fingerprint
of the exact audio it was given, so a segment proves which samples were transcribed.

`rig_factory` (a fixture; import it into the test module) builds rigs and stops them after.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asr.types import AsrRequest, AsrResult
from config.settings import Settings, load_settings
from ivr_sim import RenderedCall, builtin_scripts, load_script, render
from monitor.board.hub import BoardHub
from monitor.core.metadata import parse_metadata
from monitor.core.session import CallSession
from monitor.qa import load_compliance_scripts
from monitor.runtime.asr_service import AsrService
from monitor.runtime.bus import EventBus
from monitor.runtime.gateway import Gateway
from monitor.runtime.storage_sink import StorageWriter
from monitor.web.api.board_reader import RepositoryBoardReader
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
    bus: EventBus

    async def call(self, external_id: str) -> CallDetail | None:
        await self.storage.drain()
        return await asyncio.to_thread(self.repo.get_call, external_id)

    async def finalised(self, external_id: str) -> bool:
        """Whether the call with this switch id has its `finalised` mark (for `until`)."""
        c = await self.call(external_id)
        return c is not None and any(t.kind == "finalised" for t in c.trace)


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[object]:
    made: list[Rig] = []

    async def make(
        *,
        queue_size: int = 256,
        delay_s: float = 0.0,
        open_gate: bool = True,
        storage_queue: int = 10_000,
        **kw: Any,
    ) -> Rig:
        settings = load_settings(
            env={}, data_dir=tmp_path, gateway={"port": 0, "audiosocket_port": -1}, **kw
        )
        repo = Repository.from_url(settings.database_url)
        await asyncio.to_thread(repo.upgrade)
        bus = EventBus()
        storage = StorageWriter(repo, batch_size=200, group_commit_s=0.0,
                                queue_size=storage_queue, bus=bus)  # fmt: skip
        storage.start()
        transcriber = ScriptedTranscriber(delay_s=delay_s)
        if open_gate:
            transcriber.gate.set()
        # A two-lane service releases catch-up audio past `catchup_max_s`: keep that small,
        # so overload tests also go through the re-read from the recording.
        params = inspect.signature(AsrService).parameters
        lanes = {"catchup_max_s": 2.0} if "catchup_max_s" in params else {}
        asr = AsrService(transcriber, queue_size=queue_size, batch_size=1, **lanes)
        asr.start()
        scripts = load_compliance_scripts(settings.compliance.scripts_dir)
        gateway = Gateway(settings, storage, asr, scripts=scripts)
        await gateway.start()
        hub = BoardHub(bus, RepositoryBoardReader(repo), tick_s=0.05)
        await hub.ensure_started()
        rig = Rig(settings, repo, storage, asr, gateway, hub, transcriber, bus)
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


def script(name: str) -> RenderedCall:
    return render(load_script(next(p for p in builtin_scripts() if p.name == name)))


def expected_utterances(call: RenderedCall, meta: dict[str, object]) -> dict[tuple, str]:
    """What the live path cuts from this call, run offline: (party, start_ms, end_ms) ->
    fingerprint of its audio."""
    session = CallSession(parse_metadata(json.dumps(meta)), Settings().vad)
    utterances = session.feed(call.pcm()) + session.finish()
    return {(u.party.value, u.start_ms, u.end_ms): fingerprint(u.audio) for u in utterances}


def cut_utterances(pcm: bytes, rate: int) -> list[tuple[str, int, int]]:
    """(party, start_ms, end_ms) of the utterances the live path cuts from two-channel `pcm`
    (run offline: the same VAD, deterministic)."""
    meta = parse_metadata(json.dumps({"callid": "x", "sampleRate": rate, "channels": 2}))
    session = CallSession(meta, Settings().vad)
    return [(u.party.value, u.start_ms, u.end_ms) for u in session.feed(pcm) + session.finish()]


def transcript_gaps(
    pcm: bytes, rate: int, before_ms: int, stored: set[tuple[str, int, int]]
) -> list[tuple[str, int, int]]:
    """Utterances that ended before `before_ms` with no stored segment, each party's last one
    excepted (it may still have been in ASR): RELIABILITY.md C1's transcript check."""
    said = [u for u in cut_utterances(pcm[: before_ms * rate * 4 // 1000], rate)
            if u[2] <= before_ms]  # fmt: skip
    last = {max(u for u in said if u[0] == party) for party, _, _ in said}
    return [u for u in said if u not in stored and u not in last]


async def until(predicate, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"not within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start
