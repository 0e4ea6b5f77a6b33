"""The in-process seam (tests/inprocess_support.py, asr/scripted.py): the whole server on the
test's loop, fed by `ivr_sim` over real websockets and AudioSocket, stores what a spawned
`callwatch serve` stores, with the scripted transcriber's lines as the transcript, in
seconds."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import httpx
import numpy as np

from asr.scripted import ScriptedTranscriber
from asr.types import AsrRequest
from ivr_sim import builtin_scripts, load_script, render, stream_call
from tests.inprocess_support import in_process_server

LINES = ["Thank you for calling, my name is Anna.", "I have a question about my bill."]


def _call(name: str):  # type: ignore[no-untyped-def]
    return render(load_script(next(p for p in builtin_scripts() if p.name == name)))


async def test_scripted_transcriber_answers_in_order_then_names_the_utterance() -> None:
    t = ScriptedTranscriber(["one", "two"], language="zh")
    audio = np.zeros(8000, dtype=np.float32)
    first = await t.transcribe_batch([AsrRequest(audio, tag=1), AsrRequest(audio, "en", tag=2)])
    assert [(r.text, r.language, r.tag) for r in first] == [("one", "zh", 1), ("two", "en", 2)]
    (third,) = await t.transcribe_batch([AsrRequest(audio, locked_language="en")])
    assert (third.text, third.language, third.audio_s) == ("utterance c", "en", 0.5)
    assert t.worker_count == 1 and t.answered == 3


async def test_a_call_streamed_in_process_is_stored_whole_with_the_scripted_text(
    tmp_path: Path,
) -> None:
    call = _call("en_billing_8k.toml")
    started = time.monotonic()
    async with in_process_server(tmp_path, lines=LINES) as srv:
        startup_s = time.monotonic() - started
        report = await stream_call(srv.url, call, pace=8)
        stored = await srv.wait_call(report.external_id)
        assert (stored.status, stored.end_reason) == ("completed", "normal")
        assert stored.agent_id == call.script.metadata["agent"]
        # the transcript went through segmenter, ASR service, call core and storage in order
        texts = [s.text for s in sorted(stored.segments, key=lambda s: s.start_ms)]
        assert texts[:2] == LINES
        assert all(t.startswith("utterance ") for t in texts[2:]) and len(texts) > 2
        assert {s.party for s in stored.segments} == {"agent", "customer"}
        assert stored.grade  # the verdict was made from those segments
        with wave.open(str(srv.data_dir / "recordings" / stored.recording_path), "rb") as w:
            assert w.readframes(w.getnframes()) == call.pcm()
        # the API on the same loop reports the live server's state: the call is done
        async with httpx.AsyncClient(base_url=srv.api_url) as http:
            health = (await http.get("/api/health")).json()
        assert health["status"] == "ok" and health["calls"]["live"] == 0
        assert health["asr"]["submitted"] == len(texts) and health["asr"]["failed"] == 0
    assert startup_s < 10, startup_s


async def test_every_protocol_reaches_the_in_process_server(tmp_path: Path) -> None:
    call = _call("zh_cards_8k.toml")
    async with in_process_server(tmp_path) as srv:
        assert srv.audiosocket is not None
        host, port = srv.audiosocket
        targets = {
            "audiofork": srv.url,
            "twilio": srv.url + "/twilio",
            "audiohook": srv.url + "/audiohook",
            "audiosocket": f"tcp://{host}:{port}",
        }
        reports = await asyncio.gather(
            *(stream_call(url, call, pace=8, protocol=p) for p, url in targets.items())
        )
        for protocol, report in zip(targets, reports, strict=True):
            stored = await srv.wait_call(report.external_id)
            assert stored.status == "completed", protocol
            assert {s.party for s in stored.segments} == {"agent", "customer"}, protocol
