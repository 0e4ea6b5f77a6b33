"""A hung ASR (RELIABILITY.md §10 B3): the model never answers an utterance.

Through the in-process server (real gateway, call core, ASR service, storage, API; the
scripted transcriber at the ASR seam never answers its 2nd utterance, `asr.scripted_hang`)
with `asr.utterance_timeout_s = 1`: a two-party call streamed at 8x real time. Pass: that
utterance is given up after its timeout and its range is traced `asr_timeout`; the call goes
on (it ends `completed/normal`, every later utterance is transcribed, the recording is the
call sample for sample); its verdict comes within seconds of the hang-up, not after
`asr.final_wait_s`; the API says the transcript is incomplete and lists the missing range.
"""

from __future__ import annotations

import time
import wave
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from ivr_sim import stream_call
from ivr_sim.stream import call_metadata
from monitor.cli import main as cli_main
from storage.access import AccessStore
from tests.inprocess_support import in_process_server
from tests.runtime_support import expected_utterances, script

PASSWORD = "correct horse battery"


async def test_b3_a_hung_utterance_times_out_the_call_goes_on_and_the_gap_is_stated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = script("en_billing_8k.toml")
    meta = call_metadata(call)
    ext = str(meta["callid"])
    expected = expected_utterances(call, meta)  # (party, start_ms, end_ms) -> fingerprint
    asr = {"scripted_hang": [2], "utterance_timeout_s": 1.0}
    async with in_process_server(tmp_path, asr=asr, api={"scrypt_n": 2**14}) as srv:
        await stream_call(srv.url, call, pace=8.0, metadata=meta)
        hung_up = time.monotonic()
        stored = await srv.wait_call(ext, timeout_s=20)
        verdict_s = time.monotonic() - hung_up
        access = AccessStore(srv.repo.engine, scrypt_n=2**14)
        access.create_user("qa1", PASSWORD, "qa", at=datetime.now(UTC))
        async with httpx.AsyncClient(base_url=srv.api_url) as http:
            login = await http.post("/api/login", json={"username": "qa1", "password": PASSWORD})
            auth = {"Authorization": f"Bearer {login.json()['token']}"}
            detail = (await http.get(f"/api/calls/{stored.call_id}", headers=auth)).json()
            health = (await http.get("/api/health")).json()

    # The call went on: ended by the switch, verdict made, within seconds, not final_wait_s.
    assert (stored.status, stored.end_reason) == ("completed", "normal")
    assert stored.grade is not None and verdict_s < 10, verdict_s
    # One utterance timed out, its range traced; every other one has its segment.
    [hung] = [t for t in stored.trace if t.kind == "asr_timeout"]
    gap = (hung.party, hung.media_ms, hung.data["end_ms"])
    assert hung.data["reason"] == "timeout" and gap in expected
    segments = {(s.party, s.start_ms, s.end_ms): s.text for s in stored.segments}
    assert set(segments) | {gap} == set(expected) and gap not in segments
    texts = set(segments.values())
    assert "utterance b" not in texts  # the hung one's line, never answered
    assert {"utterance a", "utterance c"} <= texts and len(texts) == len(expected) - 1
    [final] = [t for t in stored.trace if t.kind == "finalised"]
    assert (final.data["asr_timeout"], final.data["asr_pending"]) == (1, 0)
    assert final.data["segments"] == len(expected) - 1
    # Recording unaffected by the hang.
    with wave.open(str(srv.data_dir / "recordings" / stored.recording_path), "rb") as w:
        assert w.readframes(w.getnframes()) == call.pcm()
    # The transcript is marked incomplete, with the range that is missing.
    assert detail["transcript_complete"] is False
    assert detail["transcript_missing"] == [
        {"party": gap[0], "start_ms": gap[1], "end_ms": gap[2], "reason": "asr_timeout"}
    ]
    assert health["asr"]["timed_out"] == 1 and health["asr"]["backlog"] == 0
    assert cli_main(["show", ext, "--data-dir", str(srv.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "transcript (incomplete: 1 not transcribed)" in out
    assert f"{gap[0]:8} [not transcribed: asr_timeout]" in out
