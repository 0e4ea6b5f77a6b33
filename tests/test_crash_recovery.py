"""`kill -9` of a real server mid-call, then a restart: the call is marked interrupted, its
recording plays in a strict reader and holds the audio up to at most 1 s before the kill.
The served process answers ASR with the scripted transcriber (no model to load at each of
the restarts; nothing here depends on the words)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import wave
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ivr_sim import builtin_scripts, load_script, render
from tests.fixtures_server import make_server


def test_kill9_mid_call_then_restart(tmp_path: Path) -> None:
    # Audio redaction off: its crash recovery silences the tail ASR had not checked (what
    # this test compares); tests/test_audio_redaction_e2e.py covers that recovery.
    srv = make_server(tmp_path, scripted=True, CALLWATCH_PRIVACY__REDACT_AUDIO="false")
    srv.start()
    call = render(load_script(next(p for p in builtin_scripts() if "en_support_16k" in p.name)))
    pcm = call.pcm()
    ext = f"crash-{uuid.uuid4()}"
    sent_at_kill = 0

    async def stream_until_killed() -> None:
        nonlocal sent_at_kill
        sent = 0
        async with connect(srv.url, subprotocols=["audio.drachtio.org"]) as ws:
            await ws.send(json.dumps({"callid": ext, "sampleRate": 16000, "channels": 2}))
            t0 = time.monotonic()
            try:
                for i in range(0, len(pcm), 1280):  # 20 ms, real time
                    if time.monotonic() - t0 > 6.0 and sent_at_kill == 0:
                        sent_at_kill = sent
                        srv.kill9()
                    await ws.send(pcm[i : i + 1280])
                    sent += len(pcm[i : i + 1280])
                    await asyncio.sleep(max(0.0, t0 + sent / 64000 - time.monotonic()))
            except ConnectionClosed:
                pass

    asyncio.run(stream_until_killed())
    assert sent_at_kill > 0
    # Before any recovery: the file on disk already plays in a strict reader.
    row = next(c for c in srv.repo.list_calls(limit=5) if c.external_id == ext)
    assert row.status == "active"
    path = srv.data_dir / "recordings" / row.recording_path
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() > 0

    srv.start()  # restart on the same data directory: recovery runs at start
    try:
        stored = srv.repo.get_call(ext)
        assert stored is not None
        assert (stored.status, stored.end_reason) == ("interrupted", "server_crash")
        with wave.open(str(path), "rb") as w:
            frames = w.readframes(w.getnframes())
        lost_s = (sent_at_kill - len(frames)) / 64000
        assert lost_s <= 1.0, f"lost {lost_s:.2f} s"
        assert frames == pcm[: len(frames)]  # what was kept is exactly what was sent
        assert stored.duration_ms == len(frames) // 4 * 1000 // 16000
        assert any(t.kind == "finalised" and t.data.get("recovered") for t in stored.trace)
        # Recovery is idempotent: a second restart changes nothing.
        srv.stop()
        srv.start()
        again = srv.repo.get_call(ext)
        assert again is not None and again.trace == stored.trace
    finally:
        srv.stop()


def test_sigterm_closes_open_calls_as_interrupted_and_exits_cleanly(tmp_path: Path) -> None:
    srv = make_server(tmp_path, scripted=True)
    srv.start()
    call = render(load_script(next(p for p in builtin_scripts() if "zh_cards_8k" in p.name)))
    pcm = call.pcm()[: 8000 * 4 * 3]  # 3 s, then the switch stays connected
    ext = f"term-{uuid.uuid4()}"

    async def stream_then_wait() -> int | None:
        async with connect(srv.url, subprotocols=["audio.drachtio.org"]) as ws:
            await ws.send(json.dumps({"callid": ext, "sampleRate": 8000, "channels": 2}))
            for i in range(0, len(pcm), 640):
                await ws.send(pcm[i : i + 640])
            await asyncio.sleep(1.0)
            assert srv.proc is not None
            srv.proc.terminate()  # SIGTERM while the call is open
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed:
                pass
            return ws.close_code

    try:
        assert asyncio.run(stream_then_wait()) == 1001  # going away
        assert srv.proc is not None and srv.proc.wait(30) == 0
        stored = srv.repo.get_call(ext)
        assert stored is not None
        assert (stored.status, stored.end_reason) == ("interrupted", "shutdown")
        with wave.open(str(srv.data_dir / "recordings" / stored.recording_path), "rb") as w:
            assert w.readframes(w.getnframes()) == pcm
    finally:
        srv.stop()
