"""Reordered, duplicated and dropped media, end to end (RELIABILITY.md §10 N4).

Twilio Media Streams carries each party as its own track with a media timestamp, and its
frames may arrive out of order, twice or never. Two calls go through the real gateway in this
process (tests/gateway_support.py) from the same 8 s of two-party audio: one clean, one with,
per track, its 20 ms frames shuffled within windows of 5, 2 % of them sent twice and 1 %
never sent. The perturbed call's recording must equal the clean one with exactly the dropped
frames silent, sample for sample, and its media counts must equal what was injected.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
import wave
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect

from monitor.wire.twilio import TwilioEncoder
from storage.models import CallDetail
from tests.gateway_support import InProcessGateway, in_process_gateway
from tests.runtime_support import script

FRAME = 160  # samples: 20 ms at 8 kHz
TRACKS = ("inbound", "outbound")


def _plan(frames: int, rng: random.Random) -> tuple[list[int], set[int], list[int]]:
    """Send order of frame indexes for one track: shuffled within windows of 5, 2 % twice,
    1 % never (isolated frames away from the ends). Returns (order, dropped, duplicated)."""
    candidates = list(range(10, frames - 10, 3))  # 3 apart: never two adjacent drops
    dropped = set(rng.sample(candidates, frames // 100))
    order: list[int] = []
    for start in range(0, frames, 5):
        window = [i for i in range(start, min(start + 5, frames)) if i not in dropped]
        rng.shuffle(window)
        order += window
    duplicated = rng.sample([i for i in range(frames) if i not in dropped], frames * 2 // 100)
    for i in duplicated:  # the copy follows the original within a few frames
        at = order.index(i) + 1 + rng.randrange(3)
        order.insert(min(at, len(order)), i)
    return order, dropped, duplicated


def _reordered(order: list[int], duplicated: list[int]) -> int:
    """Frames that arrive after a later one (the timeline's `reordered`): first copies only."""
    seen: set[int] = set()
    count, latest = 0, -1
    for i in order:
        if i in seen:
            continue
        seen.add(i)
        count += i < latest
        latest = max(latest, i)
    return count


async def _stream(gw: InProcessGateway, pcm: np.ndarray, plans: dict[str, list[int]]) -> str:
    ext = f"CA{uuid.uuid4().hex}"
    enc = TwilioEncoder(stream_sid="MZ" + uuid.uuid4().hex, call_sid=ext)
    track_audio = {"inbound": pcm[:, 0], "outbound": pcm[:, 1]}
    async with connect(gw.url + "/twilio") as ws:
        await ws.send(enc.connected())
        await ws.send(enc.start(list(TRACKS), {}))
        start = time.monotonic()
        for n, (a, b) in enumerate(zip(plans["inbound"], plans["outbound"], strict=False)):
            for track, i in (("inbound", a), ("outbound", b)):
                chunk = track_audio[track][i * FRAME : (i + 1) * FRAME]
                await ws.send(enc.media(track, i * 20, chunk.tobytes()))
            # 1.5x real time: under the gateway's audio rate limit
            await asyncio.sleep(max(0.0, start + n * 0.02 / 1.5 - time.monotonic()))
        await ws.send(enc.stop())
    return ext


async def _stored(gw: InProcessGateway, ext: str) -> CallDetail:
    for _ in range(200):
        call = await asyncio.to_thread(gw.repo.get_call, ext)
        if call is not None and any(t.kind == "finalised" for t in call.trace):
            return call
        await asyncio.sleep(0.1)
    raise TimeoutError(ext)


def _audio(gw: InProcessGateway, call: CallDetail) -> np.ndarray:
    with wave.open(str(gw.settings.recordings_dir / call.recording_path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())


async def test_reorder_duplicate_drop_are_fixed_and_counted(tmp_path: Path) -> None:
    pcm = np.frombuffer(script("en_billing_8k.toml").pcm(), "<i2").reshape(-1, 2)[: 8 * 8000]
    frames = len(pcm) // FRAME
    rng = random.Random(17)
    plans = {t: _plan(frames, rng) for t in TRACKS}
    async with in_process_gateway(tmp_path) as gw:
        clean_ext, bad_ext = await asyncio.gather(
            _stream(gw, pcm, {t: list(range(frames)) for t in TRACKS}),
            _stream(gw, pcm, {t: plans[t][0] for t in TRACKS}),
        )
        clean, bad = await _stored(gw, clean_ext), await _stored(gw, bad_ext)
        assert (bad.status, bad.end_reason) == ("completed", "normal")
        expected = _audio(gw, clean).copy()
        channel = {p.party: p.channel for p in bad.parties}
        track_party = {"inbound": "customer", "outbound": "agent"}
        for track in TRACKS:
            for i in plans[track][1]:
                expected[i * FRAME : (i + 1) * FRAME, channel[track_party[track]]] = 0
        got = _audio(gw, bad)
        assert got.shape == expected.shape and np.array_equal(got, expected)
        [media] = [t for t in bad.trace if t.kind == "media"]
        for track in TRACKS:
            order, dropped, duplicated = plans[track]
            counts = media.data["parties"][track_party[track]]
            assert counts == {
                "chunks": len(order),
                "duplicates": len(duplicated),
                "reordered": _reordered(order, duplicated),
                "late": 0,
                "gaps": len(dropped),
                "gap_samples": len(dropped) * FRAME,
            }, track
