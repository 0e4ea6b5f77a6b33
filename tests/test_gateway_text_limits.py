"""Text frames are bounded per call (issue 17 item 13).

100 text frames of 200 kB in 0.3 s once grew the database from 1.2 to 30 MB. Now a text frame
larger than `gateway.max_text_bytes` and frames beyond `max_text_rate` per second (after
`text_burst`) are counted in the call's media counts and not stored. Against the real gateway in
this process, with a real SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from storage.models import CallDetail
from tests.gateway_support import InProcessGateway, in_process_gateway

pytestmark = pytest.mark.slow


async def closed(gw: InProcessGateway, external_id: str) -> CallDetail:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        call = await asyncio.to_thread(gw.repo.get_call, external_id)
        if call is not None and any(t.kind == "finalised" for t in call.trace):
            return call
        await asyncio.sleep(0.05)
    raise AssertionError(f"{external_id} not finalised")


def test_big_and_fast_text_frames_are_counted_not_stored(tmp_path: Path) -> None:
    big = json.dumps({"event": "note", "text": "x" * 200_000})

    async def scenario() -> tuple[CallDetail, int, int, float]:
        async with in_process_gateway(tmp_path, max_text_rate=10, text_burst=20) as gw:
            db = gw.settings.data_dir / "callwatch.db"
            async with connect(gw.url + "/audiofork") as ws:
                await ws.send(json.dumps({"callSid": "txt", "sampleRate": 8000}))
                await ws.send(bytes(640))
                await asyncio.sleep(0.3)
                before = db.stat().st_size + _wal(db)
                t0 = time.monotonic()
                for _ in range(100):
                    await ws.send(big)
                for i in range(300):
                    await ws.send(json.dumps({"event": "note", "n": i}))
                await ws.send(bytes(640))
                elapsed = time.monotonic() - t0
            call = await closed(gw, "txt")
            return call, before, db.stat().st_size + _wal(db), elapsed

    call, before, after, elapsed = asyncio.run(scenario())
    (media,) = [t.data for t in call.trace if t.kind == "media"]
    assert media["text_oversized"] == 100
    stored = [t for t in call.trace if t.kind == "app_message"]
    allowed = 20 + int(elapsed * 10) + 1
    assert len(stored) <= allowed and media["text_dropped"] == 300 - len(stored)
    assert all(len(json.dumps(t.data)) < 4096 for t in stored)
    assert after - before < 2_000_000, f"database grew {after - before} bytes"


def _wal(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0
