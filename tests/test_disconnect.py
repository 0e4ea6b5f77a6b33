"""An abrupt disconnect mid-call (RELIABILITY.md §10 N1).

The switch's TCP connection is reset 20 s into a call (no close frame, as when a switch
crashes). Through the in-process runtime (tests/runtime_support.py: real gateway, SQLite, bus,
board hub; ASR scripted): within 3 s the call is stored `interrupted/transport`; it keeps at
least 19.5 s of audio, sample for sample; the board's card says it ended and why; and the
process's open file descriptors are back to where they were before the call (± 2).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import wave

from websockets.asyncio.client import connect

from tests.runtime_support import Rig, rig_factory, script, until

__all__ = ["rig_factory"]  # the fixture

RATE, FRAME = 8000, 4  # 8 kHz stereo PCM16


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_abrupt_disconnect_at_20_s(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = await rig_factory()
    pcm = script("en_billing_8k.toml").pcm()[: 20 * RATE * FRAME]
    ext = f"n1-{uuid.uuid4()}"
    await asyncio.sleep(0.2)
    baseline = _fds()
    ws = await connect(rig.gateway.url, subprotocols=["audio.drachtio.org"])
    await ws.send(json.dumps({"callid": ext, "sampleRate": RATE, "channels": 2}))
    step, start = 640, time.monotonic()
    for i in range(0, len(pcm), step):  # at 4x real time: 5 s for 20 s of call
        await ws.send(pcm[i : i + step])
        await asyncio.sleep(max(0.0, start + (i + step) / (4 * RATE * FRAME) - time.monotonic()))
    await asyncio.sleep(0.3)  # the bytes leave our socket; then a reset, no close frame
    assert ws.transport is not None
    ws.transport.abort()
    cut = time.monotonic()

    async def interrupted() -> bool:
        got = await rig.call(ext)
        return got is not None and got.status != "active"

    assert await until(interrupted, 3.0) <= 3.0
    stored = await rig.call(ext)
    assert stored is not None and (stored.status, stored.end_reason) == ("interrupted", "transport")
    assert time.monotonic() - cut < 3.5
    frames = stored.recording_frames or 0
    assert frames >= 19.5 * RATE
    with wave.open(str(rig.settings.recordings_dir / stored.recording_path), "rb") as w:
        assert w.readframes(w.getnframes()) == pcm[: frames * FRAME]
    # The board: the card says the call ended, and why.

    async def on_board() -> bool:
        card = rig.hub.state.calls.get(stored.call_id)
        return card is not None and card.to_json()["status"] == "interrupted"

    await until(on_board, 2.0)
    assert rig.hub.state.calls[stored.call_id].to_json()["end_reason"] == "transport"

    # Nothing leaks: the call's socket and recording file are closed once it is finalised.
    async def settled() -> bool:
        return not rig.gateway.calls and abs(_fds() - baseline) <= 2

    await until(settled, 10.0)
