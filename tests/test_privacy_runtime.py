"""Redaction in the call's ASR path (monitor/runtime/transcripts.py): segments caught up from
the recording after an overload are redacted like live ones, and a segment the redactor still
holds at hang-up is released (redacted) before the verdict, never lost.

A real gateway, storage (SQLite), bus and board hub in this process (tests/runtime_support.py),
the real simulator streaming a real two-party call; only the ASR model is scripted, at the
`BatchTranscriber` seam, so that it "hears" a card number in every utterance.

And a call that hung up, its verdict still to come, cannot be paused or resumed from the API
(it is still in the gateway's calls: a pause then would mark an ended card "paused").
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx

from asr.types import AsrRequest, AsrResult
from ivr_sim import stream_call
from ivr_sim.stream import call_metadata
from monitor.web.api.app import create_app
from monitor.web.api.context import ApiContext
from storage.access import AccessStore
from storage.repository import CallDetail
from tests.runtime_support import (
    Rig,
    expected_utterances,
    rig_factory,
    script,
    until,
)

__all__ = ["rig_factory"]  # the fixture

PAN = "4111 1111 1111 1111"  # Luhn-valid test Visa


def _hears(rig: Rig, text: str) -> None:
    """The scripted ASR (same gate and speed), but every utterance is heard as `text`."""
    scripted = rig.transcriber.transcribe_batch

    async def transcribe_batch(requests: list[AsrRequest]) -> list[AsrResult]:
        return [replace(r, text=text) for r in await scripted(requests)]

    rig.transcriber.transcribe_batch = transcribe_batch  # type: ignore[method-assign]


async def _run(rig: Rig, text: str) -> tuple[CallDetail | None, dict[tuple, str]]:
    _hears(rig, text)
    call = script("en_billing_8k.toml")
    meta = call_metadata(call)
    await stream_call(rig.gateway.url, call, pace=8.0, metadata=meta)
    ext = str(meta["callid"])
    rig.transcriber.gate.set()

    async def finalised() -> bool:
        got = await rig.call(ext)
        return got is not None and any(t.kind == "finalised" for t in got.trace)

    await until(finalised, 30.0)
    return await rig.call(ext), expected_utterances(call, meta)


async def test_caught_up_segments_are_redacted_like_live_ones(
    rig_factory,  # type: ignore[no-untyped-def]
) -> None:
    # One slow worker and a queue of one: the 24 s call at 8x real time overloads ASR, whose
    # deferred utterances are re-read from the recording after hang-up (stored `late`).
    rig: Rig = await rig_factory(queue_size=1, delay_s=1.0)
    final, expected = await _run(rig, f"my card number is {PAN}")
    assert final is not None
    segments = final.segments
    assert {(s.party, s.start_ms, s.end_ms) for s in segments} == set(expected)
    late = [s.late for s in segments]
    assert any(late) and not all(late), late
    assert all(s.text == "my card number is [PAN]" for s in segments), [s.text for s in segments]
    redacted = [t for t in final.trace if t.kind == "redacted"]
    assert len(redacted) == len(segments), (len(redacted), len(segments))
    assert all([e["type"] for e in t.data["entities"]] == ["pan"] for t in redacted)
    assert PAN[:9] not in repr(final)  # not in any segment, trace entry or field


async def test_a_segment_still_held_at_hang_up_is_released_before_the_verdict(
    rig_factory,  # type: ignore[no-untyped-def]
) -> None:
    # ASR is held until after hang-up, and every utterance ends in digits that the next words
    # might continue: the redactor holds the last one, and media time no longer moves.
    rig: Rig = await rig_factory(open_gate=False)
    final, expected = await _run(rig, "the card starts 4111 1111")
    assert final is not None
    segments = final.segments
    assert {(s.party, s.start_ms, s.end_ms) for s in segments} == set(expected)
    [entry] = [t for t in final.trace if t.kind == "finalised"]
    assert entry.data["segments"] == len(expected) and entry.data["asr_pending"] == 0


async def test_a_call_awaiting_its_verdict_cannot_be_paused(
    rig_factory,  # type: ignore[no-untyped-def]
) -> None:
    rig: Rig = await rig_factory(open_gate=False)  # ASR held: the verdict waits after hang-up
    call = script("en_billing_8k.toml")
    meta = call_metadata(call)
    await stream_call(rig.gateway.url, call, pace=8.0, metadata=meta)
    ext = str(meta["callid"])
    [ended] = [c for c in rig.gateway.calls.values() if c.metadata.external_id == ext]

    async def hung_up() -> bool:
        return ended.completion is not None

    await until(hung_up, 5.0)
    assert ended.completion is not None and not ended.completion.done()
    AccessStore(rig.repo.engine).create_user("sup-1", "pause test pw", "supervisor",
                                             at=datetime.now(UTC))  # fmt: skip
    app = create_app(ApiContext.for_repo(rig.settings, rig.repo, live=rig.gateway.calls))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as api:
        r = await api.post("/api/login", json={"username": "sup-1", "password": "pause test pw"})
        hdr = {"Authorization": f"Bearer {r.json()['token']}"}
        codes = [(await api.post(f"/api/calls/{ext}/{a}", headers=hdr)).status_code
                 for a in ("pause", "resume")]  # fmt: skip
    assert codes == [404, 404]
    rig.transcriber.gate.set()
    await ended.completion
    stored = await rig.call(ext)
    assert stored is not None and stored.status == "completed"
    assert not any(t.kind.startswith("capture_") for t in stored.trace)
