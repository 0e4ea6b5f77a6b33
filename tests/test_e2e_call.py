"""End to end: the simulator streams two-party calls built from real recordings (English and
Mandarin) into a real server; the stored call has both parties' transcripts, as accurate as
faster-whisper's own offline transcription of the same clips (within 3 points), and the
recording equals the streamed samples exactly."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from faster_whisper import WhisperModel

from asr.models import resolve_model
from asr.scoring import cer, wer
from ivr_sim import RenderedCall, builtin_scripts, load_script, render, stream_call
from ivr_sim.script import DEFAULT_DATA_ROOT, load_clip
from tests.fixtures_server import MODEL_CACHE, LiveServer

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
        assert kinds[:2] == ["connected", "metadata"] and kinds[-1] == "finalised"
        assert "disconnected" in kinds and "utterance" in kinds
        assert [t.seq for t in stored.trace] == list(range(len(kinds)))

        score = cer if call.script.name.startswith("zh") else wer
        for party in ("customer", "agent"):
            segs = [s for s in stored.segments if s.party == party]
            assert segs, f"no transcript for {party}"
            # Segments lie inside the party's speech on the call timeline.
            for s in segs:
                assert any(
                    s.start_ms / 1000 < t.end_s + 0.5 and s.end_ms / 1000 > t.start_s - 0.5
                    for t in call.turns if t.party == party
                )
                assert 0 < s.confidence <= 1
            ours = score(call.reference(party), " ".join(s.text for s in segs))
            base = score(call.reference(party), offline_transcript(call, party))
            print(f"{call.script.name} {party}: ours {ours:.3f} offline {base:.3f}")
            assert ours <= base + 0.03, (party, ours, base, [s.text for s in segs])
        if call.script.name.startswith("zh"):
            assert all(s.language == "zh" for s in stored.segments)


def _cli(server: LiveServer, *args: str) -> str:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args, "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, env=server.env, timeout=60, check=True,
    )
    return out.stdout


def test_cli_lists_searches_and_shows_a_stored_call(server: LiveServer) -> None:
    call = _script("en_billing_8k.toml")
    ext = asyncio.run(stream_call(server.url, call, pace=4.0)).external_id
    stored = server.wait_call(ext)
    assert stored.sample_rate == 8000 and stored.segments

    listing = _cli(server, "calls", "--agent", "1031")
    assert stored.call_id in listing and "billing" in listing and "completed" in listing
    assert stored.call_id not in _cli(server, "calls", "--agent", "nobody")
    word = max(stored.segments[0].text.split(), key=len).strip(".,!?")
    assert stored.call_id in _cli(server, "calls", "--text", word)

    shown = _cli(server, "show", ext, "--trace")  # by the switch's call id
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
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120,
    )
    assert out.returncode == 1
    assert "ModelNotFoundError" in out.stderr and "Traceback" not in out.stderr
    for fix in ("directory", "tiny.en", "download"):
        assert fix in out.stderr
