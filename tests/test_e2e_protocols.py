"""End to end over every switch protocol: `ivr_sim` streams the same real two-party IVR call
(Asterisk prompts as the IVR/agent, a DTMF menu choice, a queue wait with real music on hold,
LJ Speech as the customer) over audio fork, Twilio, AudioHook and AudioSocket into one real
server. Each stored call has both parties on their own channels, the recording equals what the
protocol carried sample for sample (G.711 round trip for Twilio/AudioHook), the switch's events
are in the trace, the media counts are stored, and the transcripts match the audio-fork call's.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_quality.g711 import round_trip
from evaluation.scoring import wer
from ivr_sim import RenderedCall, render, stream_call
from ivr_sim.protocols import audio_8k
from ivr_sim.script import script_from_dict
from tests.fixtures_server import LiveServer

pytestmark = pytest.mark.slow
PROTOCOLS = ("audiofork", "twilio", "audiohook", "audiosocket")


@functools.cache
def ivr_call() -> RenderedCall:
    return render(script_from_dict({
        "name": "ivr-cards", "sample_rate": 8000,
        "metadata": {"agent": "1031", "queue": "cards", "from": "+14155550142"},
        "turn": [
            {"party": "agent", "audio": "en/asterisk_agent-pass.flac", "ivr": "prompt",
             "pause": 0.3},
            {"party": "customer", "dtmf": "1", "pause": 0.5},
            {"party": "agent", "audio": "noise/moh_macroform-cold_day_30s.flac", "ivr": "hold",
             "seconds": 2.5, "queue": "cards", "pause": 0.3},
            {"party": "agent", "audio": "en/asterisk_queue-youarenext.flac", "pause": 0.3},
            {"party": "customer", "audio": "en/ljspeech_LJ001-0013.flac", "pause": 0.6},
        ],
    }))  # fmt: skip


def expected_recording(protocol: str, joined_at: dict[int, int] | None = None) -> np.ndarray:  # type: ignore[type-arg]
    """What the recording must hold, to the sample. `joined_at` (channel -> sample) shifts
    an AudioSocket leg that the server saw join late: its audio starts at the call's time
    then, silence before it (by design: a real leg joining late is late)."""
    audio = audio_8k(ivr_call())
    audio = round_trip(audio, "PCMU") if protocol in ("twilio", "audiohook") else audio
    if not joined_at or not any(joined_at.values()):
        return audio
    n = audio.shape[0]
    out = np.zeros((n + max(joined_at.values()), audio.shape[1]), dtype=audio.dtype)
    for ch in range(audio.shape[1]):
        at = joined_at.get(ch, 0)
        out[at : at + n, ch] = audio[:, ch]
    return out


def test_the_same_ivr_call_over_every_protocol(server: LiveServer) -> None:
    call = ivr_call()
    assert server.audiosocket is not None
    tcp = f"tcp://{server.audiosocket[0]}:{server.audiosocket[1]}"

    async def go() -> list[str]:
        reports = await asyncio.gather(*(
            stream_call(tcp if p == "audiosocket" else server.url, call, pace=0, protocol=p)
            for p in PROTOCOLS))  # fmt: skip
        return [r.external_id for r in reports]

    stored = {p: server.wait_call(ext) for p, ext in zip(PROTOCOLS, asyncio.run(go()), strict=True)}
    texts: dict[str, dict[str, str]] = {}
    for protocol, got in stored.items():
        assert (got.status, got.end_reason, got.protocol) == ("completed", "normal", protocol)
        assert {p.party: p.channel for p in got.parties} == {"customer": 0, "agent": 1}
        rec, rate = sf.read(server.data_dir / "recordings" / got.recording_path, dtype="int16",
                            always_2d=True)  # fmt: skip
        assert rate == 8000
        joined_at = {
            {"customer": 0, "agent": 1}[str(t.party)]: t.data["at_sample"]
            for t in got.trace
            if t.kind == "leg_joined"
        }
        assert (protocol == "audiosocket") == bool(joined_at)
        if any(joined_at.values()):  # a loaded server read one leg's UUID late
            print(f"audiosocket legs joined at samples {joined_at}")
        assert np.array_equal(rec, expected_recording(protocol, joined_at)), protocol

        kinds = [t.kind for t in got.trace]
        assert kinds[:3] == ["connected", "metadata", "media_format"], kinds
        dtmf = [t for t in got.trace if t.kind == "dtmf"]
        assert [t.data["digit"] for t in dtmf] == ["*"], protocol  # masked (PCI: never "1")
        pressed = next(e.at_s for e in call.events if e.kind == "dtmf")
        assert dtmf[0].media_ms is not None and abs(dtmf[0].media_ms / 1000 - pressed) < 0.3
        analysis = server.repo.get_analysis(got.call_id)
        summary = analysis.result("quality_party", "agent")
        assert summary is not None and summary["codec"] == (
            "PCMU" if protocol in ("twilio", "audiohook") else "L16"
        )
        media = analysis.result("media")
        assert media is not None and media["protocol"] == protocol
        assert media["received_frames"] >= rec.shape[0] * 0.99
        if protocol == "audiofork":  # the only protocol that carries IVR app events
            for kind in ("ivr_prompt", "queue", "hold_started", "hold_ended"):
                assert kind in kinds, kind
        texts[protocol] = {
            party: " ".join(s.text for s in got.segments if s.party == party)
            for party in ("customer", "agent")
        }
    for protocol in PROTOCOLS[1:]:
        for party in ("customer", "agent"):
            ref = call.reference(party)
            ours, base = wer(ref, texts[protocol][party]), wer(ref, texts["audiofork"][party])
            print(f"{protocol} {party}: wer {ours:.3f} (audio fork {base:.3f})")
            assert ours <= base + 0.15, (protocol, party, texts[protocol], texts["audiofork"])


def test_ivr_sim_cli_streams_over_each_protocol(server: LiveServer, tmp_path: Path) -> None:
    """`callwatch-sim --protocol X` reaches the server (short call, no transcript checks)."""
    import subprocess
    import sys

    assert server.audiosocket is not None
    for protocol in ("twilio", "audiosocket"):
        url = (f"tcp://{server.audiosocket[0]}:{server.audiosocket[1]}"
               if protocol == "audiosocket" else server.url)  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "ivr_sim", "--url", url, "--protocol", protocol,
             "--customer", str(Path(__file__).parent / "data/speech/en/ljspeech_LJ001-0013.flac"),
             "--calls", "1", "--pace", "0"],
            capture_output=True, text=True, env=server.env, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        ext = out.stdout.rsplit("switch call id ", 1)[1].split()[0]
        assert server.wait_call(ext).protocol == protocol


# -- conformance: each protocol's documented example, verbatim, against the real server --------
def _recording(server: LiveServer, rel: str) -> np.ndarray:  # type: ignore[type-arg]
    rec, _ = sf.read(server.data_dir / "recordings" / rel, dtype="int16", always_2d=True)
    return rec


def test_documented_examples_make_the_documented_calls(server: LiveServer) -> None:
    import json
    import uuid

    from websockets.asyncio.client import connect

    from audio_quality.g711 import ulaw_decode
    from tests.test_wire_audiohook import CLOSE, OPEN, PING
    from tests.test_wire_audiosocket import AUDIO, EXAMPLE
    from tests.test_wire_twilio import EXAMPLE as TWILIO

    call_sid = f"CA{uuid.uuid4().hex}"
    conversation = str(uuid.uuid4())
    leg = uuid.uuid4().hex[:-1] + "3"  # odd last digit: the agent leg
    fork_id = f"7f3c-{uuid.uuid4()}@10.1.2.3"

    async def go() -> list[dict]:  # type: ignore[type-arg]
        replies = []
        async with connect(server.url + "/twilio") as ws:
            for m in TWILIO:
                await ws.send(m.replace("CA33", call_sid))
            await ws.wait_closed()
        async with connect(server.url + "/audiohook") as ws:
            await ws.send(OPEN.replace("090eaa2f", conversation))
            replies.append(json.loads(await ws.recv()))
            await ws.send(bytes([0x10, 0xE0]) * 800)  # 100 ms, customer then agent bytes
            await ws.send(PING)
            replies.append(json.loads(await ws.recv()))
            await ws.send(CLOSE)
            replies.append(json.loads(await ws.recv()))
            await ws.wait_closed()
        assert server.audiosocket is not None
        reader, writer = await asyncio.open_connection(*server.audiosocket)
        writer.write(EXAMPLE.replace(bytes.fromhex("40325ec25efd4bd3805f53576e581d13"),
                                     bytes.fromhex(leg)))  # fmt: skip
        await reader.read()
        writer.close()
        async with connect(server.url, subprotocols=["audio.drachtio.org"]) as ws:
            assert ws.subprotocol == "audio.drachtio.org"
            await ws.send(json.dumps({"callid": fork_id, "from": "13800138000", "to": "95588",
                                      "agent": "1024", "queue": "cards"}))  # fmt: skip
            await ws.send(b"\x01\x00\x02\x00" * 160)
            await ws.send('{"event":"dtmf","digit":"1"}')
            await ws.send(b"")
        return replies

    opened, pong, closed = asyncio.run(go())
    assert (opened["type"], pong["type"], closed["type"]) == ("opened", "pong", "closed")
    assert opened["parameters"]["media"][0]["channels"] == ["external", "internal"]
    assert (pong["clientseq"], closed["clientseq"]) == (2, 3)

    twilio = server.wait_call(call_sid)
    assert (twilio.status, twilio.agent_id, twilio.protocol) == ("completed", "1024", "twilio")
    rec = _recording(server, twilio.recording_path)
    # timestamp "5" = 5 ms into the stream: 40 samples of silence, then the 20 ms chunk.
    assert rec.shape == (200, 2) and not rec[:40].any()
    assert (rec[40:, 0] == ulaw_decode(np.array([0x7E], np.uint8))[0]).all()
    assert (rec[40:, 1] == ulaw_decode(np.array([0xFF], np.uint8))[0]).all()
    kinds = [t.kind for t in twilio.trace]
    assert {"switch_connected", "media_format", "stop", "media"} <= set(kinds)

    hook = server.wait_call(conversation)
    assert (hook.status, hook.caller, hook.callee) == ("completed", "+8613800138000",
                                                      "+864008001234")  # fmt: skip
    rec = _recording(server, hook.recording_path)
    assert rec.shape == (800, 2)
    assert (rec[:, 0] == ulaw_decode(np.array([0x10], np.uint8))[0]).all()
    assert (rec[:, 1] == ulaw_decode(np.array([0xE0], np.uint8))[0]).all()

    key = str(uuid.UUID(leg[:-1] + "2"))
    sock = server.wait_call(key)
    assert (sock.status, sock.end_reason, sock.protocol) == ("completed", "normal", "audiosocket")
    rec = _recording(server, sock.recording_path)
    assert np.array_equal(rec[:, 1], np.frombuffer(AUDIO, "<i2")) and not rec[:, 0].any()
    assert [(t.party, t.data["digit"]) for t in sock.trace if t.kind == "dtmf"] == [("agent", "*")]

    fork = server.wait_call(fork_id)
    assert (fork.status, fork.queue, fork.caller) == ("completed", "cards", "13800138000")
    rec = _recording(server, fork.recording_path)
    assert rec.shape == (160, 2) and (rec[:, 0] == 1).all() and (rec[:, 1] == 2).all()
    assert [t.data["digit"] for t in fork.trace if t.kind == "dtmf"] == ["*"]
    assert "graceful_shutdown" in [t.kind for t in fork.trace]


def test_a_stalled_audiosocket_leg_ends_its_call_interrupted(server: LiveServer) -> None:
    """One leg sends its UUID and 1 s of audio, then nothing with the socket open: within the
    stall timeout (5 s) plus a little the call is finalised as interrupted, audio kept."""
    import time
    import uuid

    from monitor.wire.audiosocket import AudioSocketEncoder

    leg = uuid.UUID(uuid.uuid4().hex[:-1] + "0")
    pcm = (np.arange(8000, dtype="<i2") % 200).tobytes()

    async def go() -> float:
        assert server.audiosocket is not None
        reader, writer = await asyncio.open_connection(*server.audiosocket)
        writer.write(AudioSocketEncoder.uuid(leg))
        for i in range(0, len(pcm), 320):
            writer.write(AudioSocketEncoder.audio(pcm[i : i + 320]))
        await writer.drain()
        t0 = time.monotonic()
        await asyncio.wait_for(reader.read(), 20)  # the server hangs up on us
        writer.close()
        return time.monotonic() - t0

    waited = asyncio.run(go())
    assert waited < 8.0
    stored = server.wait_call(str(leg))
    assert (stored.status, stored.end_reason) == ("interrupted", "stalled")
    assert stored.duration_ms == 1000
    assert np.array_equal(_recording(server, stored.recording_path)[:, 0],
                          np.frombuffer(pcm, "<i2"))  # fmt: skip
    assert "stall" in [t.kind for t in stored.trace]
