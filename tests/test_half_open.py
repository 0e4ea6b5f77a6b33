"""A half-open peer (RELIABILITY.md §10 N2): the switch keeps TCP open but sends nothing.

Through the in-process server (real gateway, storage, alert service; ASR scripted), with the
default `alerts.media_stall_s` and small keepalive settings, a raw websocket client (the
handshake and frames written here, so nothing answers a ping behind the test's back) streams
2 s of a call in real time and then goes quiet:

* not reading at all (its transport paused: a real half-open peer, TCP up, nothing read);
* reading but never answering (it sees every ping and the close frame on the wire);
* alive but silent (a websockets client, which answers pings): that one is *not* dead, so it
  is closed 1001 at `stall_timeout_s`, as before.

Pass: `media_stalled` raised within 3 s of the last audio; a dead peer's connection closed
with 1011 within `ping_interval_s + ping_timeout_s`; the call finalised `interrupted/stalled`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from config.policy import AlertRuleSettings
from tests.inprocess_support import InProcessServer, in_process_server
from tests.runtime_support import script

# `serial` (scripts/test runs it alone, after the parallel pass):
# the stall alert is bounded at 3 s of wall time.
pytestmark = pytest.mark.serial

RATE, FRAME = 8000, 4  # 8 kHz stereo PCM16
PING_INTERVAL_S, PING_TIMEOUT_S, STALL_S = 1.0, 4.0, 2.0
GATEWAY = {"stall_timeout_s": STALL_S, "ping_interval_s": PING_INTERVAL_S,
           "ping_timeout_s": PING_TIMEOUT_S, "close_timeout_s": 1.0}  # fmt: skip
SLACK_S = 0.5  # a loaded CI machine


class RawClient:
    """A websocket client that does only what it is told: no automatic pongs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawClient:
        host, port = url.removeprefix("ws://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /audiofork HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: audio.drachtio.org\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + body)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked): (opcode, payload)."""
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)


async def _stream(send, ext: str) -> tuple[datetime, float]:  # type: ignore[no-untyped-def]
    """Metadata, then 2 s of a call in real time (100 ms a message); when the last went."""
    pcm = script("en_billing_8k.toml").pcm()[: 2 * RATE * FRAME]
    await send(json.dumps({"callid": ext, "sampleRate": RATE, "channels": 2}))
    step, start = RATE * FRAME // 10, time.monotonic()
    for i in range(0, len(pcm), step):
        await send(pcm[i : i + step])
        await asyncio.sleep(max(0.0, start + (i + step) / (RATE * FRAME) - time.monotonic()))
    return datetime.now(UTC), time.monotonic()


async def _raw_stream(client: RawClient, ext: str) -> tuple[datetime, float]:
    """`_stream` with pings answered while the call streams; from the last audio on, none."""

    async def send(message: str | bytes) -> None:
        if isinstance(message, str):
            client.send(0x1, message.encode())
        else:
            client.send(0x2, message)
        await client.writer.drain()

    async def pong() -> None:
        while True:
            opcode, payload = await client.frame()
            if opcode == 0x9:
                client.send(0xA, payload)

    ponging = asyncio.create_task(pong())
    try:
        return await _stream(send, ext)
    finally:
        ponging.cancel()  # never mid-frame: it is cancelled while awaiting the next one
        await asyncio.gather(ponging, return_exceptions=True)


def _stall_alert_s(srv: InProcessServer, call_id: str, last: datetime) -> float:
    [alert] = [a for a in srv.repo.list_alerts(call_id=call_id) if a.rule == "media_stalled"]
    return (alert.raised_at - last).total_seconds()


async def test_n2_half_open_peer_alerted_in_3_s_closed_1011_and_finalised(
    tmp_path: Path,
) -> None:
    assert AlertRuleSettings().media_stall_s + 0.25 <= 3.0  # the default, plus one tick
    async with in_process_server(tmp_path, gateway=GATEWAY) as srv:
        # Three peers at once (each waits out its own timeouts; the bounds are per call).

        async def not_reading() -> None:
            # 1. Not reading at all: TCP open, pings pile up unread in the socket buffers.
            half_open = await RawClient.open(srv.url)
            ext = f"n2-half-open-{uuid.uuid4()}"
            last, _ = await _raw_stream(half_open, ext)
            transport = half_open.writer.transport
            transport.pause_reading()  # type: ignore[attr-defined]
            call = await srv.wait_call(ext, timeout_s=20)
            assert (call.status, call.end_reason) == ("interrupted", "stalled")
            assert _stall_alert_s(srv, call.call_id, last) <= 3.0
            [stall] = [t for t in call.trace if t.kind == "stall"]
            assert stall.data["code"] == 1011, stall.data
            # Found dead within interval + timeout; the trace entry may wait for the close
            # timeout.
            bound = PING_INTERVAL_S + PING_TIMEOUT_S + GATEWAY["close_timeout_s"] + SLACK_S
            assert (stall.at - last).total_seconds() <= bound, (stall.at, last)
            assert (call.recording_frames or 0) >= 1.9 * RATE  # the audio before the silence
            transport.close()

        async def never_answering() -> None:
            # 2. Reading but never answering: the pings and the 1011 close frame, on the wire.
            mute = await RawClient.open(srv.url)
            ext = f"n2-mute-{uuid.uuid4()}"
            last, sent_at = await _raw_stream(mute, ext)
            pings, code, closed_after = 0, None, None
            async with asyncio.timeout(PING_INTERVAL_S + PING_TIMEOUT_S + 5):
                while code is None:
                    opcode, payload = await mute.frame()
                    pings += opcode == 0x9
                    if opcode == 0x8:
                        code, closed_after = struct.unpack("!H", payload[:2])[0], time.monotonic()
            assert code == 1011 and pings >= 1
            assert closed_after is not None
            assert closed_after - sent_at <= PING_INTERVAL_S + PING_TIMEOUT_S + SLACK_S
            mute.writer.close()
            call = await srv.wait_call(ext, timeout_s=10)
            assert (call.status, call.end_reason) == ("interrupted", "stalled")
            assert _stall_alert_s(srv, call.call_id, last) <= 3.0

        async def silent() -> None:
            # 3. Alive but silent (answers pings, sends nothing): closed 1001 at the stall
            # timeout.
            ext = f"n2-silent-{uuid.uuid4()}"
            async with connect(srv.url, subprotocols=["audio.drachtio.org"]) as ws:  # type: ignore[list-item]
                _, sent_at = await _stream(ws.send, ext)
                await asyncio.wait_for(ws.wait_closed(), STALL_S + 5)
                waited = time.monotonic() - sent_at
            assert ws.close_code == 1001 and STALL_S - 0.2 <= waited <= STALL_S + 1.5, waited
            call = await srv.wait_call(ext, timeout_s=10)
            assert (call.status, call.end_reason) == ("interrupted", "stalled")
            [stall] = [t for t in call.trace if t.kind == "stall"]
            assert stall.data["code"] == 1001

        await asyncio.gather(not_reading(), never_answering(), silent())
