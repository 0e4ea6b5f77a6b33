"""The hardened gateway, against one whole server in process (tests/inprocess_support.py:
real sockets on port 0, its log as `serve` prints it; ASR scripted, since nothing here
depends on the words) with TLS (a self-signed certificate made here with openssl),
credentials for every protocol and small limits: each authentication failure is
refused before any audio (HTTP 401; AudioSocket: socket closed) with a log line that holds no
secret; the right credentials stream a call over wss://; and the limits hold - concurrent calls,
audio faster than real time, a stalled peer finalised as interrupted within seconds - without
touching a call running next to them."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ivr_sim import builtin_scripts, load_script, render, stream_call
from ivr_sim.protocols import audio_8k
from monitor.wire.audiohook import AudioHookEncoder
from monitor.wire.audiosocket import AudioSocketEncoder
from monitor.wire.auth import sign_audiohook, twilio_signature
from monitor.wire.twilio import TwilioEncoder
from tests.inprocess_support import ThreadedServer

TOKEN, BASIC, TWILIO = "fork-token-5f2c", "fs:pw-81d0", "twilio-token-77aa"
SECRET = base64.b64encode(b"audiohook-client-secret-0123456").decode()
PUBLIC = "wss://qa.example.com"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    config = tmp / "callwatch.toml"
    config.write_text(f"""
[gateway]
tls_cert_file = "{cert}"
tls_key_file = "{key}"
max_calls = 3
stall_timeout_s = 2.0
max_audio_rate = 2.0
audio_burst_s = 3.0
metadata_timeout_s = 2.0
[switch_auth]
require = true
audiofork_tokens = ["{TOKEN}"]
audiofork_basic = ["{BASIC}"]
twilio_auth_token = "{TWILIO}"
twilio_public_url = "{PUBLIC}"
audiohook_api_keys = {{"key-1" = "{SECRET}"}}
audiosocket_allow = ["10.99.0.0/16"]
""")
    srv = ThreadedServer(tmp, config=config)
    srv.start()
    srv.cert = cert  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def client_tls(server: ThreadedServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))  # type: ignore[attr-defined]


def short_call(seconds: float = 3.0):  # type: ignore[no-untyped-def]
    call = render(load_script(next(p for p in builtin_scripts() if "en_billing_8k" in p.name)))
    return call.__class__(call.script, call.audio[: int(seconds * 8000)], call.turns)


async def refused(server: ThreadedServer, path: str, headers: dict[str, str]) -> int:
    try:
        async with connect(server.url + path, ssl=client_tls(server), additional_headers=headers):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def audiohook_headers(server: ThreadedServer, *, secret: str = SECRET, key: str = "key-1",
                      sign: bool = True) -> dict[str, str]:  # fmt: skip
    base = {"Audiohook-Organization-Id": "d7934305", "Audiohook-Session-Id": str(uuid.uuid4()),
            "Audiohook-Correlation-Id": str(uuid.uuid4()), "X-API-KEY": key}  # fmt: skip
    if not sign:
        return base
    host = server.url.split("://", 1)[1]
    return base | sign_audiohook(base, target="/audiohook", authority=host, api_key=key,
                                 secret=secret, created=int(time.time()))  # fmt: skip


def test_every_authentication_failure_is_refused_without_leaking(
    tls_server: ThreadedServer,
) -> None:
    srv = tls_server
    wrong_secret = base64.b64encode(b"not-the-secret-at-all-0123456789").decode()
    cases = {
        "fork-none": ("/audiofork", {}),
        "fork-bearer": ("/audiofork", {"Authorization": "Bearer wrong"}),
        "fork-basic": ("/", {"Authorization": "Basic " + base64.b64encode(b"fs:no").decode()}),
        "twilio-none": ("/twilio", {}),
        "twilio-https-url": ("/twilio", {"X-Twilio-Signature": twilio_signature(
            TWILIO, "https://qa.example.com/twilio")}),
        "audiohook-key": ("/audiohook", audiohook_headers(srv, key="nope", sign=False)),
        "audiohook-unsigned": ("/audiohook", audiohook_headers(srv, sign=False)),
        "audiohook-bad-sig": ("/audiohook", audiohook_headers(srv, secret=wrong_secret)),
    }  # fmt: skip
    for name, (path, headers) in cases.items():
        t0 = time.monotonic()
        assert asyncio.run(refused(srv, path, headers)) == 401, name
        if path == "/audiohook":
            assert time.monotonic() - t0 >= 0.5, name  # failures are answered slowly
    assert asyncio.run(refused(srv, "/nowhere", {})) == 404

    async def audiosocket() -> bytes:
        assert srv.audiosocket is not None
        reader, writer = await asyncio.open_connection(*srv.audiosocket)
        writer.write(AudioSocketEncoder.uuid(uuid.uuid4()) + AudioSocketEncoder.audio(b"\0" * 320))
        try:
            data = await asyncio.wait_for(reader.read(), 5)  # closed by the server
        except ConnectionResetError:
            data = b""  # closed while our audio was unread: a reset
        writer.close()
        return data

    assert asyncio.run(audiosocket()) == b""  # 127.0.0.1 is not in the allow-list
    time.sleep(0.3)
    log = srv.log()
    assert log.count("switch authentication failed") >= len(cases)
    assert "audiosocket peer refused" in log
    for secret in (TOKEN, "pw-81d0", TWILIO, SECRET, wrong_secret, "Bearer wrong"):
        assert secret not in log


def test_right_credentials_stream_over_tls(tls_server: ThreadedServer) -> None:
    srv = tls_server
    call = short_call(2.0)
    tls = client_tls(srv)

    async def fork() -> str:
        ext = f"tls-{uuid.uuid4()}"
        async with connect(
            srv.url + "/audiofork",
            ssl=tls,
            subprotocols=["audio.jambonz.org"],
            additional_headers={"Authorization": f"Bearer {TOKEN}"},
        ) as ws:
            assert ws.subprotocol == "audio.jambonz.org"
            # The client offered permessage-deflate (websockets' default): not negotiated.
            assert ws.request is not None and "permessage-deflate" in str(
                ws.request.headers.get("Sec-WebSocket-Extensions")
            )
            assert ws.response is not None
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            await ws.send(json.dumps({"callSid": ext, "sampleRate": 8000, "mixType": "stereo"}))
            for i in range(0, len(call.pcm()), 640):
                await ws.send(call.pcm()[i : i + 640])
                await asyncio.sleep(0.004)
        return ext

    async def twilio() -> str:
        ext = f"CA{uuid.uuid4().hex}"
        enc = TwilioEncoder(stream_sid="MZ1", call_sid=ext)
        sig = twilio_signature(TWILIO, PUBLIC + "/twilio?tenant=a")
        async with connect(
            srv.url + "/twilio?tenant=a", ssl=tls, additional_headers={"X-Twilio-Signature": sig}
        ) as ws:
            await ws.send(enc.start(["inbound", "outbound"], {"agentId": "7"}))
            audio = audio_8k(call)
            for i in range(0, audio.shape[0], 160):
                await ws.send(enc.media("inbound", i // 8, audio[i : i + 160, 0].tobytes()))
                await ws.send(enc.media("outbound", i // 8, audio[i : i + 160, 1].tobytes()))
                await asyncio.sleep(0.004)
            await ws.send(enc.stop())
            await ws.wait_closed()
        return ext

    async def audiohook() -> str:
        ext = str(uuid.uuid4())
        enc = AudioHookEncoder(session_id=str(uuid.uuid4()))
        async with connect(
            srv.url + "/audiohook", ssl=tls, additional_headers=audiohook_headers(srv)
        ) as ws:
            await ws.send(enc.open(conversation_id=ext, ani="+1", dnis="+2"))
            assert enc.receive(str(await ws.recv()))["type"] == "opened"
            audio = audio_8k(call)
            for i in range(0, audio.shape[0], 800):
                await ws.send(enc.audio(audio[i : i + 800].tobytes()))
                await asyncio.sleep(0.02)
            await ws.send(enc.close())
            assert enc.receive(str(await ws.recv()))["type"] == "closed"
        return ext

    for name, go in (("audiofork", fork), ("twilio", twilio), ("audiohook", audiohook)):
        stored = srv.wait_call(asyncio.run(go()), timeout_s=120)
        assert (stored.status, stored.end_reason, stored.protocol) == ("completed", "normal", name)
        assert stored.duration_ms == 2000


def test_limits_hold_and_leave_the_other_call_alone(tls_server: ThreadedServer) -> None:
    srv = tls_server
    tls = client_tls(srv)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    good = short_call(4.0)

    async def flood() -> tuple[int | None, str]:
        async with connect(srv.url, ssl=tls, additional_headers=auth, max_size=None) as ws:
            await ws.send(json.dumps({"callid": f"flood-{uuid.uuid4()}", "sampleRate": 8000}))
            try:
                for _ in range(100):  # 20 s of audio as fast as the socket takes it
                    await ws.send(b"\x01\x00" * 3200)
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed:
                pass
            return ws.close_code, ws.close_reason or ""

    async def stall() -> tuple[str, float, int | None]:
        ext = f"CA{uuid.uuid4().hex}"
        enc = TwilioEncoder(stream_sid="MZ2", call_sid=ext)
        sig = twilio_signature(TWILIO, PUBLIC + "/twilio")
        async with connect(
            srv.url + "/twilio", ssl=tls, additional_headers={"X-Twilio-Signature": sig}
        ) as ws:
            await ws.send(enc.start(["inbound", "outbound"], {}))
            for i in range(25):  # 0.5 s of audio, then nothing (the socket stays open)
                await ws.send(enc.media("inbound", i * 20, b"\x00\x01" * 160))
            t0 = time.monotonic()
            await asyncio.wait_for(ws.wait_closed(), 15)
            return ext, time.monotonic() - t0, ws.close_code

    async def crowd() -> list[int]:
        opened = [await connect(srv.url, ssl=tls, additional_headers=auth) for _ in range(3)]
        try:
            for ws in opened:
                await ws.send(json.dumps({"callid": f"crowd-{uuid.uuid4()}"}))
            await asyncio.sleep(0.3)
            status = await refused(srv, "/", auth)
        finally:
            for ws in opened:
                await ws.close()
        return [status]

    async def everything() -> tuple:  # type: ignore[type-arg]
        return await asyncio.gather(
            stream_call(srv.url, good, pace=1.5, headers=auth, ssl=tls), flood(), stall()
        )

    report, (code, reason), (stalled_ext, waited, stall_code) = asyncio.run(everything())
    assert code == 1008 and "faster than 2x real time" in reason
    assert stall_code == 1001 and waited < 4.0  # 2 s stall timeout, found within seconds
    stalled = srv.wait_call(stalled_ext)
    assert (stalled.status, stalled.end_reason) == ("interrupted", "stalled")
    assert "stall" in [t.kind for t in stalled.trace]
    ok = srv.wait_call(report.external_id)
    assert (ok.status, ok.end_reason, ok.duration_ms) == ("completed", "normal", 4000)
    assert np.frombuffer(good.pcm(), "<i2").size == ok.duration_ms * 16  # every sample kept
    assert asyncio.run(crowd()) == [503]


@pytest.mark.serial  # the gap is filled by the server's wall clock: a busy box shortens it
def test_marked_fork_pause_is_filled_with_silence_and_not_a_stall(
    tls_server: ThreadedServer,
) -> None:
    """FreeSWITCH sends nothing while paused: with the app's pause marker the call neither
    stalls (2 s stall timeout, 2.5 s pause) nor loses call time (the gap becomes silence)."""
    srv = tls_server
    pcm = short_call(1.0).pcm()
    ext = f"pause-{uuid.uuid4()}"

    async def go() -> None:
        async with connect(
            srv.url,
            ssl=client_tls(srv),
            subprotocols=["audio.drachtio.org"],
            additional_headers={"Authorization": f"Bearer {TOKEN}"},
        ) as ws:
            await ws.send(json.dumps({"callid": ext, "sampleRate": 8000, "channels": 2}))
            await ws.send(pcm)
            await ws.send('{"event":"paused"}')
            await asyncio.sleep(2.5)
            await ws.send('{"event":"resumed"}')
            await ws.send(pcm)
            await ws.send(b"")

    asyncio.run(go())
    stored = srv.wait_call(ext)
    assert (stored.status, stored.end_reason) == ("completed", "normal")
    assert 4400 <= stored.duration_ms <= 4800, stored.duration_ms
    resumed = next(t for t in stored.trace if t.kind == "resumed")
    filled = resumed.data["filled_samples"]
    assert 2.4 * 8000 <= filled <= 2.8 * 8000
    import wave

    with wave.open(str(srv.data_dir / "recordings" / stored.recording_path), "rb") as w:
        audio = w.readframes(w.getnframes())
    assert audio == pcm + bytes(4 * filled) + pcm
    media = srv.repo.get_analysis(stored.call_id).result("media")
    assert media is not None and media["filled_frames"] == filled
