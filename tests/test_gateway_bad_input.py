"""Bad input at the gateway: a clear close code and reason, a log line, nothing received lost,
the call marked interrupted, and other calls untouched. Against the whole server in process
(tests/inprocess_support.py: real websockets and AudioSocket on port 0, real SQLite, its log
as `serve` prints it), with the scripted transcriber: nothing here depends on the words."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
import wave
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ivr_sim import builtin_scripts, load_script, render, stream_call
from tests.inprocess_support import ThreadedServer, threaded_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    with threaded_server(tmp_path_factory.mktemp("bad-input")) as srv:
        yield srv


async def _expect_close(url: str, *messages: str | bytes) -> tuple[int, str]:
    async with connect(url, subprotocols=["audio.drachtio.org"], max_size=None) as ws:
        try:
            for m in messages:
                await ws.send(m)
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code is not None
        return ws.close_code, ws.close_reason or ""


@pytest.mark.parametrize(
    ("messages", "code", "reason"),
    [
        (["{not json"], 1007, "metadata is not JSON"),
        (['{"callid":"x","sampleRate":44100}'], 1003, "unsupported sample rate 44100"),
        (['{"callid":"x","sampleRate":8000,"channels":3}'], 1003, "unsupported channel count 3"),
        ([b"\x00\x01" * 320], 1008, "audio before metadata"),
        ([], 1008, "no metadata within"),
    ],
    ids=["invalid-json", "sample-rate", "channels", "audio-first", "metadata-timeout"],
)
def test_rejected_before_the_call_starts(
    server: ThreadedServer, messages: list[str | bytes], code: int, reason: str
) -> None:
    got_code, got_reason = asyncio.run(_expect_close(server.url, *messages))
    assert got_code == code
    assert reason in got_reason
    assert reason in server.log()  # the operator sees it too


def _audio(seconds: float, rate: int = 8000) -> bytes:
    call = render(load_script(next(p for p in builtin_scripts() if "en_billing_8k" in p.name)))
    return call.pcm()[: int(seconds * rate) * 4]


def _recording(server: ThreadedServer, call) -> bytes:  # type: ignore[no-untyped-def]
    with wave.open(str(server.data_dir / "recordings" / call.recording_path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        return w.readframes(w.getnframes())


def test_oversized_message_closes_1009_and_keeps_the_audio(server: ThreadedServer) -> None:
    ext = f"big-{uuid.uuid4()}"
    pcm = _audio(3.0)

    async def go() -> int | None:
        async with connect(server.url, subprotocols=["audio.drachtio.org"], max_size=None) as ws:
            await ws.send(json.dumps({"callid": ext, "sampleRate": 8000, "channels": 2}))
            for i in range(0, len(pcm), 640):
                await ws.send(pcm[i : i + 640])
            await ws.send(b"\x00" * (300 * 1024))  # over the 256 KiB default
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed:
                pass
            return ws.close_code

    assert asyncio.run(go()) == 1009
    call = server.wait_call(ext)
    assert (call.status, call.end_reason) == ("interrupted", "message_too_big")
    assert _recording(server, call) == pcm


def test_client_vanishing_without_close_frame(server: ThreadedServer) -> None:
    ext = f"vanish-{uuid.uuid4()}"
    pcm = _audio(4.0)

    async def go() -> None:
        ws = await connect(server.url, subprotocols=["audio.drachtio.org"])
        await ws.send(json.dumps({"callid": ext, "sampleRate": 8000, "channels": 2}))
        for i in range(0, len(pcm), 640):
            await ws.send(pcm[i : i + 640])
        await asyncio.sleep(0.5)  # let the bytes leave the socket before we cut it
        ws.transport.abort()  # TCP reset, no close frame: a crashed switch

    asyncio.run(go())
    call = server.wait_call(ext)
    assert (call.status, call.end_reason) == ("interrupted", "transport")
    assert _recording(server, call) == pcm
    assert call.duration_ms == 4000
    assert "connection dropped without a close frame" in server.log()


def test_bad_calls_do_not_affect_a_good_call_running_alongside(server: ThreadedServer) -> None:
    good = render(load_script(next(p for p in builtin_scripts() if "en_billing_8k" in p.name)))

    async def go() -> str:
        async def noise() -> None:
            for _ in range(5):
                await _expect_close(server.url, "{bad")
                await _expect_close(server.url, b"\x00" * 640)
                await _expect_close(server.url, '{"callid":"x","sampleRate":11025}')
                await asyncio.sleep(0.2)

        report, _ = await asyncio.gather(stream_call(server.url, good, pace=4.0), noise())
        assert report.close_code == 1000 and report.subprotocol == "audio.drachtio.org"
        return report.external_id

    ext = asyncio.run(go())
    call = server.wait_call(ext)
    assert (call.status, call.end_reason) == ("completed", "normal")
    assert _recording(server, call) == good.pcm()
    assert {s.party for s in call.segments} == {"customer", "agent"}


def _junk(rng: random.Random, protocol: str) -> list[str | bytes]:
    """Random messages shaped like the protocol's (right event names, wrong everything else)."""
    names = {"twilio": ["connected", "start", "media", "dtmf", "stop", "zzz"],
             "audiohook": ["open", "ping", "paused", "resumed", "close", "zzz"],
             "audiofork": ["dtmf", "paused", "resumed", "hold"]}[protocol]  # fmt: skip
    key = "event" if protocol != "audiohook" else "type"
    out: list[str | bytes] = []
    for _ in range(rng.randint(1, 6)):
        roll = rng.random()
        if roll < 0.3:
            out.append(rng.randbytes(rng.randint(0, 900)))
        elif roll < 0.5:
            out.append("".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 40))))
        else:
            doc = {
                key: rng.choice(names),
                "seq": rng.randint(-1, 3),
                "sequenceNumber": "1",
                "media": rng.choice([{}, {"track": "inbound", "payload": "!!"}, [1], None]),
                "start": rng.choice(
                    [{}, {"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}, 7]
                ),
                "parameters": rng.choice([{}, {"media": [{"format": "PCMU"}]}, "x"]),
            }
            out.append(json.dumps(doc))
    return out


async def _send_junk(url: str, messages: list[str | bytes]) -> None:
    try:
        async with connect(url, max_size=None) as ws:
            for m in messages:
                await ws.send(m)
            await asyncio.wait_for(ws.recv(), 1)
    except (ConnectionClosed, TimeoutError):
        pass


async def _send_tcp_junk(host: str, port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    try:
        await asyncio.wait_for(reader.read(), 8)
    except TimeoutError:
        pass
    writer.close()


def test_random_input_on_every_protocol_never_touches_a_good_call(server: ThreadedServer) -> None:
    """Property test at the server: 20 random message sequences per websocket protocol and
    random AudioSocket byte streams, while a good call streams; the server keeps serving and
    the good call is stored whole."""
    good = render(load_script(next(p for p in builtin_scripts() if "en_billing_8k" in p.name)))
    rng = random.Random(20261121)
    assert server.audiosocket is not None
    host, port = server.audiosocket

    async def go() -> str:
        # The same seeded sequences as ever, drawn up front; sent ten connections at a time
        # (each waits up to 1 s, or 8 s on AudioSocket, for the server to close it), so the
        # noise overlaps the good call instead of outlasting it.
        sends = [
            _send_junk(server.url + path, _junk(rng, protocol))
            for _ in range(20)
            for protocol, path in (("audiofork", "/"), ("twilio", "/twilio"),
                                   ("audiohook", "/audiohook"))
        ]  # fmt: skip
        for _ in range(10):
            head = bytes([1, 0, 16]) + rng.randbytes(16) if rng.random() < 0.5 else b""
            sends.append(_send_tcp_junk(host, port, head + rng.randbytes(rng.randint(0, 400))))

        async def noise() -> None:
            for i in range(0, len(sends), 10):
                await asyncio.gather(*sends[i : i + 10])

        report, _ = await asyncio.gather(stream_call(server.url, good, pace=2.0), noise())
        return report.external_id

    ext = asyncio.run(go())
    call = server.wait_call(ext)
    assert (call.status, call.end_reason) == ("completed", "normal")
    assert _recording(server, call) == good.pcm()
    assert "Traceback" not in server.log()
