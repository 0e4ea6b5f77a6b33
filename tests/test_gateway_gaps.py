"""Claimed gaps cannot stall the gateway (issue 17 item 1).

Two Twilio `media` messages (2.8 kB each) stamped 30 minutes ahead once made the server
synthesise the whole gap as silence in one go: the event loop stopped for 17 s, a 57 MB WAV
was written, and a call streaming correctly next to it was stalled and its recording changed.
Now a message may open at most `gateway.max_gap_s` of silence (else close 1008, the audio so
far kept), filled silence counts against `max_audio_rate`, and long fills reach the call in
pieces. Against the real gateway in this process: the good call's recording is sample-exact and
the event loop never lags 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ivr_sim import builtin_scripts, load_script, render
from ivr_sim.protocols import audio_8k
from monitor.wire import fields as f
from monitor.wire.audiohook import AudioHookEncoder
from monitor.wire.twilio import TwilioEncoder
from storage.models import CallDetail
from storage.repository import Repository
from tests.gateway_support import InProcessGateway, LoopLag, in_process_gateway

# `serial`: each test bounds the event loop's lag, which other tests running beside it on a
# 2-core box would measure too.
pytestmark = [pytest.mark.slow, pytest.mark.serial]
AHEAD_MS = 30 * 60 * 1000
#: Attempts at a wall-clock bound before it counts as missed (see the repeated-gaps test).
ATTEMPTS = 3


def speech_8k(seconds: float) -> np.ndarray:
    call = render(load_script(next(p for p in builtin_scripts() if "en_billing_8k" in p.name)))
    return audio_8k(call)[: int(seconds * 8000)]


async def wait_closed(repo: Repository, external_id: str, timeout_s: float = 30.0) -> CallDetail:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        call = await asyncio.to_thread(repo.get_call, external_id)
        if call is not None and call.status != "active":
            return call
        await asyncio.sleep(0.1)
    raise TimeoutError(f"call {external_id} still active")


def read_wav(gw: InProcessGateway, call: CallDetail) -> np.ndarray:
    with wave.open(str(gw.settings.recordings_dir / call.recording_path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, w.getnchannels())


async def good_twilio_call(url: str, audio: np.ndarray, sid: str) -> None:
    enc = TwilioEncoder(stream_sid="MZgood", call_sid=sid)
    async with connect(url + "/twilio") as ws:
        await ws.send(enc.start(["inbound", "outbound"], {}))
        t0 = time.monotonic()
        for n, i in enumerate(range(0, audio.shape[0], 160)):
            await ws.send(enc.media("inbound", i // 8, audio[i : i + 160, 0].tobytes()))
            await ws.send(enc.media("outbound", i // 8, audio[i : i + 160, 1].tobytes()))
            await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.02 - time.monotonic()))  # real time
        await ws.send(enc.stop())
        await ws.wait_closed()


def attack_messages(sid: str) -> list[str]:
    """`start`, one honest 250 ms chunk, then the two 2.8 kB chunks stamped 30 min ahead."""
    enc = TwilioEncoder(stream_sid="MZbad", call_sid=sid)
    chunk = np.full(2000, 1200, dtype="<i2").tobytes()
    out = [enc.start(["inbound"], {}), enc.media("inbound", 0, chunk)]
    out += [enc.media("inbound", AHEAD_MS + k * 250, chunk) for k in range(2)]
    assert all(2700 < len(m) < 2900 for m in out[2:])
    return out


async def attack(url: str, messages: list[str]) -> tuple[int | None, str]:
    async with connect(url + "/twilio") as ws:
        for message in messages[:2]:
            await ws.send(message)
        await asyncio.sleep(0.3)
        try:
            for message in messages[2:]:
                await ws.send(message)
            await asyncio.wait_for(ws.wait_closed(), 10)
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason or ""


def test_claimed_gap_closes_the_call_and_leaves_the_others_alone(tmp_path: Path) -> None:
    audio = speech_8k(3.0)

    async def scenario() -> tuple[float, CallDetail, CallDetail, np.ndarray, np.ndarray]:
        async with in_process_gateway(tmp_path) as gw, LoopLag() as lag:
            good = asyncio.create_task(good_twilio_call(gw.url, audio, "CAgood"))
            await asyncio.sleep(1.0)  # the attack lands mid-call
            code, reason = await attack(gw.url, attack_messages("CAbad"))
            await good
            good_call = await wait_closed(gw.repo, "CAgood")
            bad_call = await wait_closed(gw.repo, "CAbad")
            assert code == 1008 and "max_gap_s" in reason, (code, reason)
            return lag.worst_s, good_call, bad_call, read_wav(gw, good_call), read_wav(gw, bad_call)

    worst, good_call, bad_call, good_wav, bad_wav = asyncio.run(scenario())
    assert worst < 0.100, f"event loop stalled {worst * 1000:.0f} ms"
    assert good_call.status == "completed" and good_call.end_reason == "normal"
    # Twilio carries μ-law: the recording is exactly what the switch sent, decoded.
    sent = np.stack(
        [
            np.frombuffer(f.decode_payload("PCMU", f.encode_payload("PCMU", c.tobytes())), "<i2")
            for c in (np.ascontiguousarray(audio[:, 0]), np.ascontiguousarray(audio[:, 1]))
        ],
        axis=1,
    )
    np.testing.assert_array_equal(good_wav, sent)
    # The attacker's call is closed as a protocol error, its honest 250 ms kept, nothing more.
    assert (bad_call.status, bad_call.end_reason) == ("interrupted", "protocol_error")
    assert bad_wav.shape == (2000, 1)
    errors = [t.data["reason"] for t in bad_call.trace if t.kind == "protocol_error"]
    assert len(errors) == 1 and "max_gap_s" in errors[0]


def test_repeated_gaps_under_the_message_cap_are_stopped_by_the_rate_limit(
    tmp_path: Path,
) -> None:
    """Each jump under `max_gap_s` but the silence they add up to faster than real time: the
    filled audio counts against `max_audio_rate`, so the call is closed within the burst."""
    chunk = np.zeros(160, dtype="<i2").tobytes()

    async def scenario(n: int) -> tuple[tuple[int | None, str], CallDetail, int, float]:
        enc = TwilioEncoder(stream_sid="MZ", call_sid=f"CAjumps{n}")
        async with in_process_gateway(tmp_path / str(n)) as gw, LoopLag() as lag:
            msgs = [enc.start(["inbound"], {})]
            msgs += [enc.media("inbound", k * 50_000, chunk) for k in range(40)]  # 50 s jumps
            result = await attack(gw.url, msgs)
            call = await wait_closed(gw.repo, f"CAjumps{n}")
            frames = read_wav(gw, call).shape[0]
            return result, call, frames, lag.worst_s

    # The loop-lag bound is repeated on a miss, as N9 and B1 are (test_load_isolation): work
    # that grows with the claimed gaps stalls every attempt; the box's own jitter does not.
    stalls = []
    for n in range(ATTEMPTS):
        (code, reason), call, frames, worst_s = asyncio.run(scenario(n))
        stalls.append(round(worst_s * 1000))
        if worst_s < 0.100:
            break
    assert min(stalls) < 100, f"event loop stalled {stalls} ms"
    assert code == 1008 and "real time" in reason, (code, reason)
    assert call.end_reason == "protocol_error"
    assert frames <= 30 * 8000  # the 20 s burst allowance and a little wall time, no more


def test_audiohook_discarded_span_over_the_cap_closes_1008(tmp_path: Path) -> None:
    """AudioHook's `discarded` (and `position`) are claims too: one over `max_gap_s` closes
    the call before any silence is made; the audio so far is kept."""
    sid = "4d8a4d47-3f5c-4c0e-9a55-0b5a5b0e1d2a"
    enc = AudioHookEncoder(session_id=sid)

    async def scenario() -> tuple[int | None, str, CallDetail, int]:
        async with in_process_gateway(tmp_path, max_gap_s=10) as gw:
            async with connect(gw.url + "/audiohook") as ws:
                await ws.send(enc.open(conversation_id="conv-gap", ani="1", dnis="2"))
                json.loads(await ws.recv())  # opened
                await ws.send(enc.audio(np.full(1600, 300, "<i2").tobytes()))  # 100 ms stereo
                await ws.send(enc.paused())
                await ws.send(enc.resumed(3000.0))
                await asyncio.wait_for(ws.wait_closed(), 10)
                code, reason = ws.close_code, ws.close_reason or ""
            call = await wait_closed(gw.repo, "conv-gap")
            return code, reason, call, read_wav(gw, call).shape[0]

    code, reason, call, frames = asyncio.run(scenario())
    assert code == 1008 and "max_gap_s" in reason, (code, reason)
    assert call.end_reason == "protocol_error" and frames == 800


def test_an_allowed_gap_is_filled_in_pieces(tmp_path: Path) -> None:
    """A 55 s jump (under `max_gap_s`, within the rate limit after 5 s of real time) is filled
    with silence so the recording stays on call time - in pieces, so the call next to it and
    the loop never wait for the whole gap's analysis."""
    enc = TwilioEncoder(stream_sid="MZj", call_sid="CAjump")
    chunk = np.full(160, 900, dtype="<i2").tobytes()
    audio = speech_8k(7.0)

    async def jumper(url: str) -> None:
        async with connect(url + "/twilio") as ws:
            await ws.send(enc.start(["inbound", "outbound"], {}))
            for k in range(270):  # 5.4 s in real time, then every chunk 55 s later
                t = k * 20 if k < 250 else 55_000 + k * 20
                await ws.send(enc.media("inbound", t, chunk))
                await ws.send(enc.media("outbound", t, chunk))
                await asyncio.sleep(0.02)
            await ws.send(enc.stop())
            await ws.wait_closed()

    async def scenario() -> tuple[float, CallDetail, np.ndarray, np.ndarray]:
        async with in_process_gateway(tmp_path) as gw, LoopLag() as lag:
            good = asyncio.create_task(good_twilio_call(gw.url, audio, "CAgood"))
            await jumper(gw.url)
            await good
            good_wav = read_wav(gw, await wait_closed(gw.repo, "CAgood"))
            jumped = await wait_closed(gw.repo, "CAjump")
            return lag.worst_s, jumped, read_wav(gw, jumped), good_wav

    worst, jumped, wav, good_wav = asyncio.run(scenario())
    assert worst < 0.100, f"event loop stalled {worst * 1000:.0f} ms"
    assert (jumped.status, jumped.end_reason) == ("completed", "normal")
    assert wav.shape[0] == (55_000 + 270 * 20) * 8  # 5 s + the 55 s gap + 0.4 s
    assert not wav[5 * 8000 : 60 * 8000].any() and wav[: 5 * 8000].all()  # silence = the gap
    assert good_wav.shape[0] == audio.shape[0]
