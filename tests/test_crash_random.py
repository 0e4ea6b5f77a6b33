"""`kill -9` at random points, again and again (RELIABILITY.md §10 C2).

A real `callwatch serve` process takes a 60 s two-party call (16 kHz, in real time) and is
killed with SIGKILL at a uniformly random moment of it, then restarted on the same
data directory; every fourth run instead kills it just after the switch hangs up, while the
call is being finalised. Each run must meet C1's criteria (tests/test_crash_recovery.py): the
call is never left `active` (killed mid-call: `interrupted/server_crash`); its recording plays
in the strict stdlib reader, holds exactly the audio sent up to what it kept, and loses at most
1 s + one flush interval; its transcript covers what was said until 2 s before the kill (each
party's last utterance excepted); no temporary file is left. Across runs: recovery is idempotent and
no earlier call changes (its row, trace and recording checksum are the same at every start).

`long` only (20 runs, `CALLWATCH_C2_RUNS`, about 17 minutes here): `scripts/test --long`.
The per-commit suite keeps C1 (tests/test_crash_recovery.py), one kill at a known moment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
import uuid
import wave
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ivr_sim import builtin_scripts, load_script, render
from tests.fixtures_server import LiveServer, make_server
from tests.runtime_support import transcript_gaps

pytestmark = [pytest.mark.long]
RATE, BYTES_PER_S, PACE = 16000, 16000 * 4, 1.0  # real time, as C1
CALL_S = 60.0
FLUSH_S = 0.5  # recording.flush_interval_s (the default)


def _runs() -> int:
    return int(os.environ.get("CALLWATCH_C2_RUNS", "20"))


def _call_pcm() -> bytes:
    call = render(load_script(next(p for p in builtin_scripts() if "en_support_16k" in p.name)))
    one = call.pcm()
    need = int(CALL_S * BYTES_PER_S)
    return (one * (need // len(one) + 1))[:need]


async def _stream(srv: LiveServer, pcm: bytes, ext: str, kill_at_s: float | None) -> int:
    """Stream until the kill (at `kill_at_s` of call time; None: hang up, then kill during
    finalisation). Returns the bytes sent before the kill."""
    sent, step = 0, 1280  # 20 ms
    async with connect(srv.url, subprotocols=["audio.drachtio.org"]) as ws:
        await ws.send(json.dumps({"callid": ext, "sampleRate": RATE, "channels": 2}))
        t0 = time.monotonic()
        try:
            for i in range(0, len(pcm), step):
                if kill_at_s is not None and sent >= kill_at_s * BYTES_PER_S:
                    srv.kill9()
                    return sent
                await ws.send(pcm[i : i + step])
                sent += len(pcm[i : i + step])
                await asyncio.sleep(max(0.0, t0 + sent / BYTES_PER_S / PACE - time.monotonic()))
            await ws.send(b"")  # graceful hang-up ...
            await asyncio.sleep(random.uniform(0.0, 0.3))
        except ConnectionClosed:
            pass
    srv.kill9()  # ... and the kill lands while the call is being finalised
    return sent


def _fingerprint(srv: LiveServer, ext: str) -> tuple[object, ...]:
    call = srv.repo.get_call(ext)
    assert call is not None
    path = srv.data_dir / "recordings" / call.recording_path
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return (call.status, call.end_reason, call.duration_ms, call.recording_frames,
            tuple((t.seq, t.kind, t.media_ms) for t in call.trace), digest)  # fmt: skip


def _checked(srv: LiveServer, timeout_s: float = 180.0) -> None:
    """Until start-up has checked every recovered recording's unchecked audio for card numbers
    (monitor/runtime/redaction_check.py: a background task after the server is up, ASR in the
    catch-up lane): its journal, `<recording>.redact`, is dropped last. Until then the call's
    segments and recording are still being completed, so nothing is compared before."""
    deadline = time.monotonic() + timeout_s
    while journals := list((srv.data_dir / "recordings").rglob("*.redact")):
        assert time.monotonic() < deadline, f"still unchecked after {timeout_s} s: {journals}"
        time.sleep(0.5)


def test_c2_kill9_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CALLWATCH_C2_SEED", "2")))
    pcm = _call_pcm()
    srv = make_server(tmp_path)
    before: dict[str, tuple[object, ...]] = {}
    try:
        for run in range(_runs()):
            srv.start()  # recovery of the previous run happens here
            for ext, fp in before.items():  # idempotent, and no other call changed
                assert _fingerprint(srv, ext) == fp, (run, ext)
            ext = f"c2-{run}-{uuid.uuid4()}"
            kill_at = None if run % 4 == 3 else rng.uniform(1.0, CALL_S - 1.0)
            sent = asyncio.run(_stream(srv, pcm, ext, kill_at))
            srv.start()
            _checked(srv)
            call = srv.repo.get_call(ext)
            assert call is not None and call.status != "active", (run, kill_at)
            if kill_at is not None:
                assert (call.status, call.end_reason) == ("interrupted", "server_crash")
            path = srv.data_dir / "recordings" / call.recording_path
            with wave.open(str(path), "rb") as w:  # strict reader, header = data on disk
                frames = w.readframes(w.getnframes())
                assert w.getnframes() * 4 == len(frames) == path.stat().st_size - 44
            assert frames == pcm[: len(frames)], run
            lost_s = (sent - len(frames)) / BYTES_PER_S
            assert lost_s <= 1.0 + FLUSH_S, (run, kill_at, lost_s)
            assert any(t.kind == "finalised" for t in call.trace)
            have = {(s.party, s.start_ms, s.end_ms) for s in call.segments}
            said_by = int(min(sent / BYTES_PER_S - 2.0, CALL_S) * 1000)  # C1: 28 s of 30
            assert transcript_gaps(pcm, RATE, said_by, have) == [], (run, kill_at)
            leftovers = [p.name for p in (srv.data_dir / "recordings").rglob("*")
                         if p.is_file() and p.suffix != ".wav"]  # fmt: skip
            assert leftovers == [], leftovers
            before[ext] = _fingerprint(srv, ext)
            srv.stop()
    finally:
        srv.stop()
