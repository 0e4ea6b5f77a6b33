"""`kill -9` of a real server mid-call, then a restart (RELIABILITY.md C1): the call is marked
interrupted, its recording plays in a strict reader and holds the audio up to at most 1 s
before the kill, sample-exact (with audio redaction on, the audio ASR had not checked is
checked after the restart, not blanked: no card number was said), its transcript covers what
was said before, and no other call changed. And SIGTERM with calls open (C3).
The served process answers ASR with the scripted transcriber (no model to load at each of the
restarts; nothing here depends on the words)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
import wave
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ivr_sim import builtin_scripts, load_script, render, stream_call
from ivr_sim.stream import call_metadata
from tests.fixtures_server import LiveServer, make_server
from tests.runtime_support import transcript_gaps


def _snapshot(srv: LiveServer, ext: str) -> tuple[object, ...]:
    call = srv.repo.get_call(ext)
    assert call is not None
    wav = (srv.data_dir / "recordings" / call.recording_path).read_bytes()
    return call, srv.repo.get_analysis(call.call_id), hashlib.sha256(wav).hexdigest()


def test_kill9_mid_call_then_restart(tmp_path: Path) -> None:
    """RELIABILITY.md C1: a 60 s call, SIGKILL at 30 s, restart."""
    srv = make_server(tmp_path, scripted=True)
    srv.start()
    call = render(load_script(next(p for p in builtin_scripts() if "en_support_16k" in p.name)))
    one = call.pcm()
    pcm = (one * 2)[: 60 * 64000]  # 60 s of 16 kHz stereo
    ext = f"crash-{uuid.uuid4()}"
    sent_at_kill = 0
    # Another call, finished before the crash: it must come through it unchanged.
    other = render(load_script(next(p for p in builtin_scripts() if "zh_cards_8k" in p.name)))
    done = asyncio.run(stream_call(srv.url, other, pace=4.0, metadata=call_metadata(other)))
    srv.wait_call(done.external_id)
    before = _snapshot(srv, done.external_id)

    async def stream_until_killed() -> None:
        nonlocal sent_at_kill
        sent = 0
        async with connect(srv.url, subprotocols=["audio.drachtio.org"]) as ws:
            await ws.send(json.dumps({"callid": ext, "sampleRate": 16000, "channels": 2}))
            t0 = time.monotonic()
            try:
                for i in range(0, len(pcm), 1280):  # 20 ms, real time
                    if time.monotonic() - t0 > 30.0 and sent_at_kill == 0:
                        sent_at_kill = sent
                        srv.kill9()
                    await ws.send(pcm[i : i + 1280])
                    sent += len(pcm[i : i + 1280])
                    await asyncio.sleep(max(0.0, t0 + sent / 64000 - time.monotonic()))
            except ConnectionClosed:
                pass

    asyncio.run(stream_until_killed())
    assert sent_at_kill >= 30 * 64000
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
        # Audio redaction (issue 18): what ASR had not checked when the server died is
        # checked in the background after start (not blanked); wait for it to be done.
        deadline = time.monotonic() + 120
        while not any(t.kind == "audio_redacted" for t in stored.trace):
            assert time.monotonic() < deadline, stored.trace
            time.sleep(0.2)
            stored = srv.repo.get_call(ext)
            assert stored is not None
        [check] = [t for t in stored.trace if t.kind == "audio_redacted"]
        assert check.data["checked"] is True and check.data["masked_ms"] == 0, check.data
        with wave.open(str(path), "rb") as w:
            assert w.getnframes() * 4 == path.stat().st_size - 44  # the header says it all
            frames = w.readframes(w.getnframes())
        lost_s = (sent_at_kill - len(frames)) / 64000
        assert lost_s <= 1.0, f"lost {lost_s:.2f} s"
        assert len(frames) >= 29 * 64000
        assert frames == pcm[: len(frames)]  # what was kept is exactly what was sent
        assert stored.duration_ms == len(frames) // 4 * 1000 // 16000
        assert any(t.kind == "finalised" and t.data.get("recovered") for t in stored.trace)
        # The transcript covers what was said before 28 s (each party's last utterance, which
        # may still have been in ASR at the kill, excepted).
        have = {(s.party, s.start_ms, s.end_ms) for s in stored.segments}
        assert transcript_gaps(pcm, 16000, 28_000, have) == [], sorted(have)
        # No other call changed, and no temporary file is left.
        assert _snapshot(srv, done.external_id) == before
        assert [p.name for p in (srv.data_dir / "recordings").rglob("*")
                if p.is_file() and p.suffix != ".wav"] == []  # fmt: skip
        # Recovery is idempotent: a second restart changes nothing.
        srv.stop()
        srv.start()
        again = srv.repo.get_call(ext)
        assert again is not None and again.trace == stored.trace
    finally:
        srv.stop()


def test_sigterm_closes_open_calls_as_interrupted_and_exits_cleanly(tmp_path: Path) -> None:
    """RELIABILITY.md C3: three open calls and SIGTERM. Each call gets close 1001 and is
    finalised `interrupted/shutdown` with every frame sent; a new connection is refused; the
    process exits 0 within 15 s."""
    srv = make_server(tmp_path, scripted=True)
    srv.start()
    call = render(load_script(next(p for p in builtin_scripts() if "zh_cards_8k" in p.name)))
    pcm = call.pcm()[: 8000 * 4 * 3]  # 3 s, then the switch stays connected
    exts = [f"term-{uuid.uuid4()}" for _ in range(3)]
    opened = asyncio.Event()

    async def stream_then_wait(ext: str) -> int | None:
        async with connect(srv.url, subprotocols=["audio.drachtio.org"]) as ws:
            await ws.send(json.dumps({"callid": ext, "sampleRate": 8000, "channels": 2}))
            for i in range(0, len(pcm), 640):
                await ws.send(pcm[i : i + 640])
            opened.set()
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed:
                pass
            return ws.close_code

    async def late_caller() -> str:
        try:
            async with connect(srv.url, subprotocols=["audio.drachtio.org"], open_timeout=5) as ws:
                await ws.send(json.dumps({"callid": "late", "sampleRate": 8000, "channels": 2}))
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else None}"
        except (OSError, InvalidStatus, TimeoutError) as exc:
            return f"refused {type(exc).__name__}"
        return "accepted"

    async def scenario() -> tuple[list[int | None], str, float]:
        calls = [asyncio.create_task(stream_then_wait(e)) for e in exts]
        await opened.wait()
        await asyncio.sleep(1.0)
        assert srv.proc is not None
        srv.proc.terminate()  # SIGTERM while the three calls are open
        sent_at = time.monotonic()
        await asyncio.sleep(0.2)
        late = await late_caller()
        codes = list(await asyncio.gather(*calls))
        code = await asyncio.to_thread(srv.proc.wait, 30)
        assert code == 0
        return codes, late, time.monotonic() - sent_at

    try:
        codes, late, exit_s = asyncio.run(scenario())
        assert codes == [1001, 1001, 1001]  # going away
        assert late.startswith("refused") or late in ("closed 1001", "closed 1012"), late
        assert exit_s < 15.0
        for ext in exts:
            stored = srv.repo.get_call(ext)
            assert stored is not None
            assert (stored.status, stored.end_reason) == ("interrupted", "shutdown")
            with wave.open(str(srv.data_dir / "recordings" / stored.recording_path), "rb") as w:
                assert w.readframes(w.getnframes()) == pcm
        assert srv.repo.get_call("late") is None
    finally:
        srv.stop()
