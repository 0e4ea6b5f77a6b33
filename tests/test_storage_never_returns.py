"""The database never returns during a call (RELIABILITY.md S2), on a real `callwatch serve`.

The SQLite database is locked (`BEGIN EXCLUSIVE` from another connection) from before the call
opens until after the server has stopped: no row of the call can be written. The audio lands
on disk regardless; the storage writer journals the call's rows on disk
(`<data_dir>/journal/<call_id>.jsonl`, 0600: its local manifest, with the recording path) and
the stop is not held up by the database. A restart with the database up imports the journal:
the call, its segments, its end and its recording path are in the database once, the journal
is gone, and a second restart changes nothing. A call whose server is killed (`kill -9`) during
the outage comes back too: imported, then recovered as `interrupted/server_crash`.

The served process answers ASR with the scripted transcriber (no model at each restart).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import time
import uuid
import wave
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from ivr_sim import builtin_scripts, load_script, render, stream_call
from ivr_sim.stream import call_metadata
from monitor.runtime.storage_journal import decode
from storage import records as rec
from tests.fixtures_server import LiveServer, make_server


def _journal(srv: LiveServer) -> dict[str, list[rec.Record]]:
    """The journal's rows per file name."""
    d = srv.data_dir / "journal"
    out = {}
    for path in sorted(d.glob("*.jsonl")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        out[path.name] = [decode(line) for line in path.read_text().splitlines()]
    return out


def _lock(db: Path) -> sqlite3.Connection:
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    return lock


def _wait(cond: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_call_through_a_database_that_never_returns_is_imported_at_the_next_start(
    tmp_path: Path,
) -> None:
    srv = make_server(tmp_path, scripted=True, CALLWATCH_STORAGE__CLOSE_TIMEOUT_S="2")
    srv.start()
    call = render(load_script(next(p for p in builtin_scripts() if "zh_cards_8k" in p.name)))
    meta = call_metadata(call)
    ext = str(meta["callid"])
    lock = _lock(srv.db_path)
    try:
        asyncio.run(stream_call(srv.url, call, pace=4.0, metadata=meta))

        def closed_in_journal() -> bool:
            rows = [r for rs in _journal(srv).values() for r in rs]
            return any(isinstance(r, rec.CallClosed) for r in rows)

        _wait(closed_in_journal, 30.0)  # journaled while the process runs: a crash keeps it
        t0 = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - t0 < 20.0  # the stop is not held up by the database
        [(name, rows)] = _journal(srv).items()
        [opened] = [r for r in rows if isinstance(r, rec.CallOpened)]
        assert opened.external_id == ext and name == f"{opened.call_id}.jsonl"
        assert [r for r in rows if isinstance(r, rec.SegmentAdded)]
        assert srv.repo.get_call(ext) is None  # nothing reached the database
        recording = srv.data_dir / "recordings" / opened.recording_path
        with wave.open(str(recording), "rb") as w:  # the audio is on disk, whole
            assert w.readframes(w.getnframes()) == call.pcm()
    finally:
        lock.rollback()
        lock.close()

    srv.start()  # the database is up again
    try:
        stored = srv.wait_call(ext, timeout_s=30.0)
        assert (stored.status, stored.end_reason) == ("completed", "normal")
        assert stored.recording_path == opened.recording_path
        journaled = [(r.party, r.start_ms, r.text) for r in rows if isinstance(r, rec.SegmentAdded)]
        got = [(s.party, s.start_ms, s.text) for s in stored.segments]
        assert len(got) == len(set(got)) and sorted(got) == sorted(journaled)
        assert not _journal(srv)
        assert "imported a call's rows from the storage journal" in srv.log()
        trace = [(t.seq, t.kind) for t in stored.trace]
    finally:
        srv.stop()
    srv.start()  # a second start changes nothing: no duplicate, nothing recovered
    try:
        again = srv.repo.get_call(ext)
        assert again is not None and [(t.seq, t.kind) for t in again.trace] == trace
        assert len(again.segments) == len(stored.segments)
    finally:
        srv.stop()


def test_a_crash_during_the_outage_keeps_the_call(tmp_path: Path) -> None:
    srv = make_server(tmp_path, scripted=True)
    srv.start()
    call = render(load_script(next(p for p in builtin_scripts() if "zh_cards_8k" in p.name)))
    pcm = call.pcm()
    ext = f"s2-{uuid.uuid4()}"
    sent = 0
    lock = _lock(srv.db_path)
    try:

        async def stream_then_crash() -> None:
            # Real time until the journal holds the call, then kill -9 mid-call.
            nonlocal sent
            async with connect(srv.url, subprotocols=[Subprotocol("audio.drachtio.org")]) as ws:
                await ws.send(json.dumps({"callid": ext, "sampleRate": 8000, "channels": 2}))
                for i in range(0, len(pcm), 640):
                    await ws.send(pcm[i : i + 640])
                    sent = i + 640
                    await asyncio.sleep(0.02)
                    if sent % 32_000 == 0 and _journal(srv) and sent >= 4 * 32_000:
                        await asyncio.sleep(0.5)
                        srv.kill9()
                        return
                raise AssertionError("the journal never started")

        asyncio.run(stream_then_crash())
        [rows] = _journal(srv).values()
        [opened] = [r for r in rows if isinstance(r, rec.CallOpened)]
    finally:
        lock.rollback()
        lock.close()
    srv.start()
    try:
        stored = srv.wait_call(ext, timeout_s=30.0)
        assert (stored.status, stored.end_reason) == ("interrupted", "server_crash")
        assert stored.recording_path == opened.recording_path
        with wave.open(str(srv.data_dir / "recordings" / stored.recording_path), "rb") as w:
            got = w.readframes(w.getnframes())
        assert len(got) >= sent - 32_000 and pcm.startswith(got)  # ≤ 1 s lost
        assert not _journal(srv)
    finally:
        srv.stop()
