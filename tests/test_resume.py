"""Reconnect and resume (RELIABILITY.md §10 N3).

Through the in-process server (real gateway, call core, storage; ASR scripted) with
`gateway.resume_grace_s = 5`: a switch streams 20 s of a two-party call, its TCP connection
is reset (no close frame), and within 5 s it reconnects with the same call id and goes on
where its clock is (Twilio: `timestamp` and `sequenceNumber` continued; an audio fork: no
positions, the gateway measures the gap by the wall clock). Pass: one call, one recording:
the first 20 s, then silence as long as the real gap (±20 ms), then the rest, sample for
sample; the gap counted in the call's media counts and traced. Without a reconnect the call
ends `interrupted/transport` once the grace runs out.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from monitor.wire import fields as f
from monitor.wire.twilio import TwilioEncoder
from storage.models import CallDetail
from tests.inprocess_support import InProcessServer, in_process_server
from tests.runtime_support import script

# `serial` (scripts/test runs it alone, after the parallel pass):
# the filled gap must equal the real (wall-clock) gap within 20 ms.
pytestmark = pytest.mark.serial

RATE, FRAME_MS, CUT_S = 8000, 20, 20
STEP = RATE * FRAME_MS // 1000  # samples per 20 ms message
TOLERANCE = RATE * 20 // 1000  # ±20 ms
GATEWAY = {"resume_grace_s": 5.0}


def _source() -> np.ndarray:
    return np.frombuffer(script("en_billing_8k.toml").pcm(), "<i2").reshape(-1, 2)


def _recording(srv: InProcessServer, call: CallDetail) -> np.ndarray:
    with wave.open(str(srv.data_dir / "recordings" / call.recording_path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())


def _abort(ws: ClientConnection) -> None:
    assert ws.transport is not None
    ws.transport.abort()  # a TCP reset, no close frame: the switch's network went away


async def _paced(sends: list, pace: float) -> tuple[float, float]:  # type: ignore[type-arg]
    """Run each send at `pace` x real time (20 ms a message); (first, last) send times."""
    start = time.monotonic()
    for n, send in enumerate(sends):
        await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 / pace - time.monotonic()))
        await send()
    return start, time.monotonic()


def _check_one_recording(
    srv: InProcessServer, call: CallDetail, before: np.ndarray, after: np.ndarray, gap: int
) -> int:
    """The recording is `before`, silence of `gap` ±20 ms, `after`: returns the gap found."""
    got = _recording(srv, call)
    cut = len(before)
    assert np.array_equal(got[:cut], before)
    found = len(got) - cut - len(after)
    assert abs(found - gap) <= TOLERANCE, (found, gap)
    assert not got[cut : cut + found].any()
    assert np.array_equal(got[cut + found :], after)
    return found


@pytest.mark.parametrize("stream", ["continued", "restarted"])
async def test_n3_twilio_reconnect_is_one_recording_with_the_gap_silent(
    tmp_path: Path, stream: str
) -> None:
    """`continued`: the switch goes on with its `timestamp` and `sequenceNumber` (the gap is
    where its clock says); `restarted`: a new stream, counting from 0 again (the gap is where
    the wall clock says)."""
    pcm = _source()
    ulaw = {  # what Twilio's μ-law makes of each track, as the recording holds it
        track: np.frombuffer(
            f.decode_payload("PCMU", f.encode_payload("PCMU", pcm[:, ch].tobytes())), "<i2"
        )
        for track, ch in (("inbound", 0), ("outbound", 1))
    }
    ext = f"CA{uuid.uuid4().hex}"
    enc = TwilioEncoder(stream_sid="MZ" + uuid.uuid4().hex, call_sid=ext)
    cut = CUT_S * RATE
    async with in_process_server(tmp_path, gateway=GATEWAY) as srv:

        def media(ws: ClientConnection, i: int, stamp_ms: int):  # type: ignore[no-untyped-def]
            async def send() -> None:
                for track in ("inbound", "outbound"):
                    chunk = pcm[i : i + STEP, 0 if track == "inbound" else 1]
                    await ws.send(enc.media(track, stamp_ms, chunk.tobytes()))

            return send

        ws = await connect(srv.url + "/twilio")
        await ws.send(enc.connected())
        await ws.send(enc.start(["inbound", "outbound"], {}))
        _, last_sent = await _paced(
            [media(ws, i, i * 1000 // RATE) for i in range(0, cut, STEP)], pace=8
        )
        await asyncio.sleep(0.2)  # the bytes leave our socket, then the network goes
        _abort(ws)
        await asyncio.sleep(1.5)
        if stream == "restarted":
            enc = TwilioEncoder(stream_sid="MZ" + uuid.uuid4().hex, call_sid=ext)
        async with connect(srv.url + "/twilio") as ws:
            await ws.send(enc.connected())
            await ws.send(enc.start(["inbound", "outbound"], {}))  # seq continues (or not)
            # Continued: the switch's clock ran on, its next audio is stamped where it is now
            # (the audio it could not send: from its last message to this one's start).
            gap_ms = int((time.monotonic() - last_sent) * 1000) - FRAME_MS
            shift = gap_ms if stream == "continued" else -CUT_S * 1000
            sends = [media(ws, i, i * 1000 // RATE + shift)
                     for i in range(cut, len(pcm) - len(pcm) % STEP, STEP)]  # fmt: skip
            first, _ = await _paced(sends, pace=8)
            await ws.send(enc.stop())
        if stream == "restarted":  # placed by the wall clock, as a real-time switch sends
            gap_ms = int(round((first - last_sent) * 1000)) - FRAME_MS
        call = await srv.wait_call(ext, timeout_s=20)
        assert len(srv.repo.call_ids_for_external(ext)) == 1  # one call, not two
    assert (call.status, call.end_reason) == ("completed", "normal")
    channel = {p.party: p.channel for p in call.parties}
    end = len(pcm) - len(pcm) % STEP
    before = np.zeros((cut, 2), "<i2")
    after = np.zeros((end - cut, 2), "<i2")
    for track, party in (("inbound", "customer"), ("outbound", "agent")):
        before[:, channel[party]] = ulaw[track][:cut]
        after[:, channel[party]] = ulaw[track][cut:end]
    gap = gap_ms * RATE // 1000
    found = _check_one_recording(srv, call, before, after, gap)
    [media_counts] = [t for t in call.trace if t.kind == "media"]
    counts = media_counts.data
    assert counts["resumes"] == 1 and counts["resume_gap_frames"] == found
    assert counts["sequence_gaps"] == 0  # the sequence continued across the reconnect
    kinds = [t.kind for t in call.trace]
    assert kinds.index("connection_lost") < kinds.index("reconnected") < kinds.index("resume_gap")
    [reconnected] = [t for t in call.trace if t.kind == "reconnected"]
    assert 1500 <= reconnected.data["after_ms"] < 5000


async def test_n3_audio_fork_reconnect_fills_the_wall_clock_gap(tmp_path: Path) -> None:
    pcm = _source()
    ext = f"fork-{uuid.uuid4()}"
    meta = json.dumps({"callid": ext, "sampleRate": RATE, "channels": 2})
    cut = CUT_S * RATE
    end = len(pcm) - len(pcm) % STEP
    async with in_process_server(tmp_path, gateway=GATEWAY) as srv:

        def chunk(ws: ClientConnection, i: int):  # type: ignore[no-untyped-def]
            async def send() -> None:
                await ws.send(pcm[i : i + STEP].tobytes())

            return send

        ws = await connect(srv.url, subprotocols=["audio.drachtio.org"])  # type: ignore[list-item]
        await ws.send(meta)
        _, last_sent = await _paced([chunk(ws, i) for i in range(0, cut, STEP)], pace=8)
        await asyncio.sleep(0.2)
        _abort(ws)
        await asyncio.sleep(1.5)
        async with connect(srv.url, subprotocols=["audio.drachtio.org"]) as ws:  # type: ignore[list-item]
            await ws.send(meta)
            # A switch streaming in real time: each message is sent once its 20 ms are heard,
            # so the audio it could not send spans last send .. first send - 20 ms.
            first, _ = await _paced([chunk(ws, i) for i in range(cut, end, STEP)], pace=8)
            await ws.send(b"")  # the fork's end of stream
        call = await srv.wait_call(ext, timeout_s=20)
    assert (call.status, call.end_reason) == ("completed", "normal")
    gap = int(round((first - last_sent - FRAME_MS / 1000) * RATE))
    found = _check_one_recording(srv, call, pcm[:cut], pcm[cut:end], gap)
    [media_counts] = [t for t in call.trace if t.kind == "media"]
    assert media_counts.data["resumes"] == 1
    assert media_counts.data["resume_gap_frames"] == found


async def test_no_reconnect_within_the_grace_ends_the_call_interrupted(tmp_path: Path) -> None:
    ext = f"gone-{uuid.uuid4()}"
    grace = {"resume_grace_s": 1.0}
    async with in_process_server(tmp_path, gateway=grace) as srv:
        ws = await connect(srv.url, subprotocols=["audio.drachtio.org"])  # type: ignore[list-item]
        await ws.send(json.dumps({"callid": ext, "sampleRate": RATE, "channels": 2}))
        await ws.send(_source()[:RATE].tobytes())
        await asyncio.sleep(0.2)
        _abort(ws)
        dropped = time.monotonic()
        call = await srv.wait_call(ext, timeout_s=10)
        waited = time.monotonic() - dropped
    assert (call.status, call.end_reason) == ("interrupted", "transport")
    assert 0.9 <= waited < 3.0, waited
    assert "connection_lost" in [t.kind for t in call.trace]
    assert call.recording_frames == RATE
