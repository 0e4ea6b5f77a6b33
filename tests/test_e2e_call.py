"""End to end: the simulator streams two-party calls built from real recordings (English and
Mandarin) into a real server; the stored call has both parties' transcripts, as accurate as
faster-whisper's own offline transcription of the same clips (within 3 points), and the
recording equals the streamed samples exactly."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from faster_whisper import WhisperModel

from asr.models import resolve_model
from evaluation.scoring import cer, wer
from ivr_sim import RenderedCall, builtin_scripts, load_script, render, stream_call
from ivr_sim.script import DEFAULT_DATA_ROOT, load_clip
from tests.fixtures_server import MODEL_CACHE, LiveServer
from tests.inprocess_support import ThreadedServer

pytestmark = pytest.mark.slow


@functools.cache
def offline_model() -> WhisperModel:
    path = resolve_model("base", MODEL_CACHE, offline=True)
    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=2)


def offline_transcript(call: RenderedCall, party: str) -> str:
    """faster-whisper on each original clip, with its own defaults (beam 5, its own decoding)."""
    texts = []
    for turn in (t for t in call.turns if t.party == party):
        audio = load_clip(DEFAULT_DATA_ROOT / turn.audio, 16000).astype(np.float32) / 32768
        segments, _ = offline_model().transcribe(audio, language=None)
        texts.append(" ".join(s.text.strip() for s in segments))
    return " ".join(texts)


def _script(name: str) -> RenderedCall:
    return render(load_script(next(p for p in builtin_scripts() if p.name == name)))


def test_two_calls_english_and_mandarin_end_to_end(server: LiveServer) -> None:
    calls = [_script("en_support_16k.toml"), _script("zh_service_16k.toml")]

    async def go() -> list[str]:
        reports = await asyncio.gather(*(stream_call(server.url, c, pace=3.0) for c in calls))
        return [r.external_id for r in reports]

    ids = asyncio.run(go())
    for call, ext in zip(calls, ids, strict=True):
        stored = server.wait_call(ext)
        assert (stored.status, stored.end_reason) == ("completed", "normal")
        assert stored.agent_id == call.script.metadata["agent"]
        assert stored.queue == call.script.metadata["queue"]
        assert stored.caller == call.script.metadata["from"]
        assert {p.party: p.channel for p in stored.parties} == {"customer": 0, "agent": 1}

        # The recording is every streamed sample, exactly.
        rec_path = Path(server.data_dir / "recordings" / stored.recording_path)
        recorded, rate = sf.read(rec_path, dtype="int16", always_2d=True)
        assert rate == call.sample_rate
        assert np.array_equal(recorded, call.audio)

        # Trace: connected, metadata, utterances..., disconnected, finalised - in order.
        kinds = [t.kind for t in stored.trace]
        # Alerts raised from the end-of-call results are traced after `finalised`.
        ending = [k for k in kinds if k not in ("alert", "alert_changed")]
        assert kinds[:2] == ["connected", "metadata"] and ending[-1] == "finalised"
        assert "disconnected" in kinds and "utterance" in kinds
        seqs = [t.seq for t in stored.trace]  # the call's event numbers: unique, in order
        assert seqs == sorted(set(seqs))
        [final] = [t for t in stored.trace if t.kind == "finalised"]
        assert final.data["asr_pending"] == 0  # every transcript was in before the verdict

        score = cer if call.script.name.startswith("zh") else wer
        for party in ("customer", "agent"):
            segs = [s for s in stored.segments if s.party == party]
            assert segs, f"no transcript for {party}"
            # Segments lie inside the party's speech on the call timeline.
            for s in segs:
                assert any(
                    s.start_ms / 1000 < t.end_s + 0.5 and s.end_ms / 1000 > t.start_s - 0.5
                    for t in call.turns
                    if t.party == party
                )
                assert 0 < s.confidence <= 1
            ours = score(call.reference(party), " ".join(s.text for s in segs))
            base = score(call.reference(party), offline_transcript(call, party))
            print(f"{call.script.name} {party}: ours {ours:.3f} offline {base:.3f}")
            assert ours <= base + 0.03, (party, ours, base, [s.text for s in segs])
        if call.script.name.startswith("zh"):
            assert all(s.language == "zh" for s in stored.segments)


def test_call_closed_before_its_last_transcripts_records_them_as_pending(
    tmp_path: Path,
) -> None:
    """`asr.final_wait_s` caps how long a finished call waits for ASR. A call closed before
    its last transcripts says so in its `finalised` entry, and the late segments are still
    stored with the call (nothing received is lost). A slow model is stood in for by the
    scripted transcriber taking 0.5 s an utterance, in the in-process server: this is about
    timing, not words."""
    from tests.inprocess_support import ThreadedServer

    srv = ThreadedServer(tmp_path, asr={"final_wait_s": 0.01, "scripted_delay_s": 0.5})
    srv.start()
    try:
        call = _script("en_support_16k.toml")
        report = asyncio.run(stream_call(srv.url, call, pace=8.0))
        stored = srv.wait_call(report.external_id)
        [final] = [t for t in stored.trace if t.kind == "finalised"]
        assert final.data["asr_pending"] >= 1
        pending_at_close = final.data["segments"]
        deadline, later = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            later = srv.repo.get_call(stored.call_id)
            if later is not None and len(later.segments) > pending_at_close:
                break
            time.sleep(0.5)
        assert later is not None and len(later.segments) > pending_at_close
    finally:
        srv.stop()


def _cli(data_dir: Path, *args: str) -> str:
    import subprocess
    import sys

    from ivr_sim.harness import server_env

    out = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
        check=True,
    )
    return out.stdout


def test_cli_lists_searches_and_shows_a_stored_call(inprocess_server: ThreadedServer) -> None:
    """The CLI reads what the server stored (in process here, ASR scripted: the CLI shows
    the stored lines, whatever their words)."""
    server, data = inprocess_server, inprocess_server.data_dir
    call = _script("en_billing_8k.toml")
    ext = asyncio.run(stream_call(server.url, call, pace=8.0)).external_id
    stored = server.wait_call(ext)
    assert stored.sample_rate == 8000 and stored.segments

    listing = _cli(data, "calls", "--agent", "1031")
    assert stored.call_id in listing and "billing" in listing and "completed" in listing
    assert stored.call_id not in _cli(data, "calls", "--agent", "nobody")
    word = max(stored.segments[0].text.split(), key=len).strip(".,!?")
    assert stored.call_id in _cli(data, "calls", "--text", word)

    shown = _cli(data, "show", ext, "--trace")  # by the switch's call id
    assert stored.call_id in shown and "+14155550142" in shown
    for seg in stored.segments:
        stamp = f"{seg.start_ms // 60000:02d}:{seg.start_ms % 60000 / 1000:04.1f}"
        assert f"[{stamp}-" in shown and f"{seg.party:8} {seg.text}" in shown
    assert "finalised" in shown


def test_serve_with_a_missing_model_offline_fails_with_the_three_fixes(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.fixtures_server import REPO_ROOT, make_server

    env = make_server(tmp_path).env
    env.update({"CALLWATCH_ASR__MODEL": "no-such-model", "CALLWATCH_ASR__OFFLINE": "true"})
    out = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "serve", "--data-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert out.returncode == 1
    assert "ModelNotFoundError" in out.stderr and "Traceback" not in out.stderr
    for fix in ("directory", "tiny.en", "download"):
        assert fix in out.stderr


def test_live_call_gets_quality_conversation_compliance_and_grade(server: LiveServer) -> None:
    from ivr_sim.script import script_from_dict

    tts = Path(__file__).resolve().parent / "data" / "tts"
    turns = [
        ("agent", "a_greeting_01"),
        ("customer", "a_customer_01"),
        ("agent", "a_verification_02"),
        ("agent", "a_forbidden_01"),
        ("agent", "a_closing_01"),
    ]
    script = script_from_dict(
        {
            "name": "en-compliance",
            "sample_rate": 8000,
            "metadata": {"agent": "1040", "queue": "support"},
            "turn": [{"party": p, "audio": f"en/{clip}.flac", "pause": 0.7} for p, clip in turns],
        }
    )
    call = render(script, data_root=tts)
    ext = asyncio.run(stream_call(server.url, call, pace=4.0)).external_id
    stored = server.wait_call(ext)
    analysis = server.repo.get_analysis(stored.call_id)

    # Audio quality: readings for both parties at a fixed cadence of at most 2 s.
    for party in ("customer", "agent"):
        rs = [r for r in analysis.readings if r.party == party]
        assert rs and all(r.end_ms - r.start_ms <= 2000 for r in rs)
        assert [r.seq for r in rs] == list(range(len(rs)))
        summary = analysis.result("quality_party", party)
        assert summary is not None and summary["speech_ms"] > 1000
    # Clarity: DNSMOS windows of the agent, each stored with its rate and codec.
    dnsmos = analysis.result("dnsmos_windows", "agent")
    assert dnsmos is not None and dnsmos["windows"]
    for w in dnsmos["windows"]:
        assert (w["source_sample_rate_hz"], w["model_sample_rate_hz"]) == (8000, 16000)
        assert w["codec"] and 1.0 <= w["ovrl_mos"] <= 5.0
    conversation = analysis.result("conversation")
    assert (
        conversation is not None
        and conversation["agent_talk_ms"] > conversation["customer_talk_ms"] > 0
    )

    # Compliance, live: the greeting was heard, the forbidden phrase flagged, on the agent.
    compliance = analysis.result("compliance")
    assert compliance is not None and compliance["script"].startswith("en")
    stages = {s["stage"]: s["status"] for s in compliance["stages"]}
    assert stages["greeting"] == "passed" and stages["closing"] == "passed"
    kinds = {(f.kind, f.party) for f in analysis.findings}
    assert ("phrase_matched", "agent") in kinds and ("forbidden_phrase", "agent") in kinds
    greeting = next(
        f for f in analysis.findings if f.kind == "phrase_matched" and f.data["stage"] == "greeting"
    )
    first = call.turns[0]
    assert first.start_s - 0.5 <= greeting.start_ms / 1000 <= first.end_s
    assert any(t.kind == "forbidden_phrase" for t in stored.trace)

    # The call's grade combines both scores.
    assert stored.grade in ("excellent", "good", "pass", "needs_improvement")
    assert stored.compliance_score is not None and stored.compliance_score < 100
    assert stored.quality_score is not None and stored.score is not None
    shown = _cli(server.data_dir, "show", stored.call_id)
    assert f"grade       {stored.grade}" in shown and "compliance  script en" in shown


def test_no_dead_air_during_a_marked_hold_or_ivr_prompt(server: LiveServer) -> None:
    import json as _json

    from websockets.asyncio.client import connect

    from ivr_sim.script import script_from_dict

    script = script_from_dict(
        {
            "name": "hold",
            "sample_rate": 8000,
            "turn": [
                {
                    "party": "agent",
                    "audio": "en/asterisk_followme_pls-hold-while-try.flac",
                    "pause": 0.3,
                },
                {"party": "customer", "audio": "en/ljspeech_LJ001-0011.flac", "pause": 8.0},
            ],
        }
    )
    call = render(script)
    pcm = call.pcm()
    gap = (int(call.turns[0].end_s * 8000) * 4 + 800 * 4, int(call.turns[1].start_s * 8000) * 4)

    span = _json.dumps({"event": "ivr_prompt", "start_ms": gap[0] // 32, "end_ms": gap[1] // 32})
    markers = {
        "hold": ('{"event":"hold"}', '{"event":"unhold"}'),
        "ivr": ('{"event":"ivr_prompt_start"}', '{"event":"ivr_prompt_end"}'),
        "ivr_span": (span, None),
    }

    async def stream(ext: str, mode: str) -> None:
        async with connect(server.url, subprotocols=["audio.drachtio.org"]) as ws:
            await ws.send(_json.dumps({"callid": ext, "sampleRate": 8000, "channels": 2}))
            for i in range(0, len(pcm), 640):
                if mode in markers and i == gap[0] // 640 * 640:
                    await ws.send(markers[mode][0])
                if mode in markers and i == gap[1] // 640 * 640 and markers[mode][1]:
                    await ws.send(markers[mode][1])
                await ws.send(pcm[i : i + 640])
            await ws.send(b"")

    found = {}
    for mode in ("none", "hold", "ivr", "ivr_span"):
        ext = f"hold-{mode}-{uuid.uuid4()}"
        asyncio.run(stream(ext, mode))
        stored = server.wait_call(ext)
        analysis = server.repo.get_analysis(stored.call_id)
        found[mode] = [f for f in analysis.findings if f.kind == "dead_air"]
        if mode == "ivr_span":
            assert [t.kind for t in stored.trace].count("ivr_prompt") == 1
        elif mode != "none":
            kinds = [t.kind for t in stored.trace]
            name = "hold" if mode == "hold" else "ivr_prompt"
            assert kinds.count(f"{name}_started") == kinds.count(f"{name}_ended") == 1
    (dead_air,) = found["none"]
    assert dead_air.start_ms is not None and dead_air.end_ms is not None
    assert abs(dead_air.start_ms / 1000 - call.turns[0].end_s) < 0.5
    assert abs(dead_air.end_ms / 1000 - call.turns[1].start_s) < 0.5
    # The same silence marked as a hold or an IVR prompt by the switch: no dead air.
    assert found["hold"] == found["ivr"] == found["ivr_span"] == []


def test_health_reports_load_dnsmos_cpu_and_memory(server: LiveServer) -> None:
    """The real server's /api/health after a call: not overloaded, nothing owed, DNSMOS's CPU
    seconds counted, and the RSS of the server and of each ASR worker."""
    import json
    import re
    import urllib.request

    server.wait_call(asyncio.run(stream_call(server.url, _script("en_billing_8k.toml"),
                                             pace=4.0)).external_id)  # fmt: skip
    api = re.findall(r"api listening on (http://\S+)", server.log())[-1]
    deadline = time.monotonic() + 60
    while True:  # a call streamed at 4x real time may leave it overloaded for a moment
        with urllib.request.urlopen(f"{api}/api/health", timeout=10) as r:
            h = json.load(r)
        if h["status"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(json.dumps(h, indent=1))
    assert h["status"] == "ok" and h["overloaded"] is False
    assert h["calls"] == {"live": 0, "transcripts_pending": 0, "capacity": None}
    assert h["asr"]["submitted"] > 0 and h["asr"]["deferred"] == 0
    assert h["dnsmos"]["scored"] > 0 and h["dnsmos"]["cpu_s"] > 0
    assert h["dnsmos"]["sample_every_s"] == 45.0
    workers = h["memory"]["workers_rss_bytes"]
    assert len(workers) == 2 and all(v > 50_000_000 for v in workers.values())
    assert h["memory"]["server_rss_bytes"] > 50_000_000
    assert h["memory"]["total_rss_bytes"] == h["memory"]["server_rss_bytes"] + sum(workers.values())
