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

from asr.scoring import wer
from audio_quality.g711 import round_trip
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


def expected_recording(protocol: str) -> np.ndarray:  # type: ignore[type-arg]
    audio = audio_8k(ivr_call())
    return round_trip(audio, "PCMU") if protocol in ("twilio", "audiohook") else audio


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
        assert np.array_equal(rec, expected_recording(protocol)), protocol

        kinds = [t.kind for t in got.trace]
        assert kinds[:3] == ["connected", "metadata", "media_format"], kinds
        dtmf = [t for t in got.trace if t.kind == "dtmf"]
        assert [t.data["digit"] for t in dtmf] == ["1"], protocol
        pressed = next(e.at_s for e in call.events if e.kind == "dtmf")
        assert dtmf[0].media_ms is not None and abs(dtmf[0].media_ms / 1000 - pressed) < 0.3
        media = server.repo.get_analysis(got.call_id).result("media")
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
    """`callwatch sim --protocol X` reaches the server (short call, no transcript checks)."""
    import subprocess
    import sys

    assert server.audiosocket is not None
    for protocol in ("twilio", "audiosocket"):
        url = (f"tcp://{server.audiosocket[0]}:{server.audiosocket[1]}"
               if protocol == "audiosocket" else server.url)  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "monitor.cli", "sim", "--url", url, "--protocol", protocol,
             "--customer", str(Path(__file__).parent / "data/speech/en/ljspeech_LJ001-0013.flac"),
             "--calls", "1", "--pace", "0"],
            capture_output=True, text=True, env=server.env, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        ext = out.stdout.rsplit("switch call id ", 1)[1].split()[0]
        assert server.wait_call(ext).protocol == protocol
