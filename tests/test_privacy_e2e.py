"""End to end, PCI: real rendered speech that says a test card number (in one turn, and split
over two turns), a Luhn-invalid reference number, a security code, an expiry date and a
resident ID number, in English and Mandarin, streamed through the real gateway into a real
server; and a switch that sends DTMF 4111111111111111, a secure-entry stage and a `cardNumber`
metadata key. Afterwards the database dump, the server log and the vCon export hold none of
those digits, read the way an ASR writes them (digits, number words, 数字); the Luhn-invalid
number is kept; the masks, with their type and media time, are. RELIABILITY.md §10 P2 (text
and storage; every masked entity's audio span is silent in the recording, in detail in
tests/test_audio_redaction_e2e.py) and P3."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from ivr_sim import RenderedCall, render, stream_call
from ivr_sim.script import script_from_dict
from monitor.privacy.spoken import Kind, read_units
from monitor.web.api import vcon
from storage.access import AccessStore
from storage.models import CallDetail
from tests.fixtures_server import LiveServer

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent / "data" / "privacy"
PAN, ID, DTMF_PAN = "4532015112830366", "110105199003071239", "4111111111111111"
PASSWORD = "privacy test password"


def _call(name: str, turns: list[tuple[str, str, float]]) -> RenderedCall:
    return render(
        script_from_dict({
            "name": name, "sample_rate": 16000,
            "metadata": {"agent": "1031", "queue": "payments", "from": "+14155550142"},
            "turn": [{"party": p, "audio": a, "pause": s} for p, a, s in turns],
        }),
        DATA,
    )  # fmt: skip


EN = _call("en-payment", [
    ("agent", "en/p_ask.flac", 0.3),
    ("customer", "en/p_pan_words.flac", 0.6),
    ("customer", "en/p_pan_split_1.flac", 1.2),
    ("customer", "en/p_pan_split_2.flac", 1.0),  # the rest of the number, after a pause
    ("customer", "en/p_invalid.flac", 1.2),
    ("customer", "en/p_cvv.flac", 1.2),
])  # fmt: skip
ZH = _call("zh-payment", [
    ("agent", "zh/p_ask.flac", 0.3),
    ("customer", "zh/p_visa.flac", 0.6),
    ("customer", "zh/p_id_b.flac", 1.2),
    ("customer", "zh/p_cvv.flac", 1.2),
])  # fmt: skip
MASK_OF = {"p_pan_words": "[PAN]", "p_pan_split_1": "[PAN]", "p_pan_split_2": "[PAN]",
           "p_visa": "[PAN]", "p_id_b": "[身份证号]", "p_cvv": "[CVV]"}  # fmt: skip


def spoken_digits(text: str) -> list[str]:
    """Every digit run of each line of `text`, read like the redactor reads ASR output
    ("4532-0151", "one two eight three", 一二三 all count), separators dropped."""
    runs = []
    for line in text.splitlines():
        run = ""
        for unit in read_units(line):
            if unit.kind is Kind.DIGITS:
                run += unit.value
            elif unit.kind is Kind.WORD:
                runs.append(run)
                run = ""
        runs.append(run)
    return [r for r in runs if r]


def leaked(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if any(s in run for run in spoken_digits(text))]


async def _switch_with_dtmf(server: LiveServer) -> str:
    """An audio fork that sends a card number in its metadata and as key presses, then a
    secure-entry stage with a code keyed inside it."""
    async with connect(server.url, subprotocols=["audio.drachtio.org"]) as ws:
        await ws.send(json.dumps({"callid": "dtmf-pci-1", "from": "13800138000",
                                  "cardNumber": DTMF_PAN, "cvv": "737",
                                  "note": f"paid with {DTMF_PAN}"}))  # fmt: skip
        await ws.send(bytes(640))
        for digit in DTMF_PAN:
            await ws.send(json.dumps({"event": "dtmf", "digit": digit}))
        await ws.send(json.dumps({"event": "secure_entry_start"}))
        for digit in "737":
            await ws.send(json.dumps({"event": "dtmf", "digit": digit}))
        await ws.send(json.dumps({"event": "secure_entry_end"}))
        await ws.send(bytes(640))
        await ws.send(b"")
    return "dtmf-pci-1"


def _vcon(server: LiveServer, call: CallDetail) -> str:
    doc = vcon.build(
        call,
        server.repo.get_analysis(call.call_id),
        server.repo.list_alerts(call_id=call.call_id, limit=1000),
        recording=[(server.data_dir / "recordings" / call.recording_path).read_bytes()],
        recording_url=f"http://callwatch.test/api/calls/{call.call_id}/recording",
    )
    return json.dumps(doc, ensure_ascii=False, default=str)


def test_card_and_id_numbers_never_reach_storage_logs_or_exports(server: LiveServer) -> None:
    async def go() -> list[str]:
        reports = await asyncio.gather(*(stream_call(server.url, c, pace=3.0) for c in (EN, ZH)))
        return [r.external_id for r in reports] + [await _switch_with_dtmf(server)]

    en_id, zh_id, dtmf_id = asyncio.run(go())
    calls = {ext: server.wait_call(ext) for ext in (en_id, zh_id, dtmf_id)}

    # Each turn that said a number is stored with its mask and no digit of the number.
    for ext, rendered in ((en_id, EN), (zh_id, ZH)):
        stored = calls[ext]
        for turn in rendered.turns:
            mask = MASK_OF.get(Path(turn.audio).stem)
            said = [s for s in stored.segments
                    if s.party == turn.party and s.start_ms < turn.end_s * 1000
                    and s.end_ms > turn.start_s * 1000]  # fmt: skip
            if mask is None or not said:
                continue
            text = " ".join(s.text for s in said)
            assert mask in text and not spoken_digits(text), (turn.audio, text)
        entities = [e for t in stored.trace if t.kind == "redacted" for e in t.data["entities"]]
        assert entities and all(e["start_ms"] <= e["end_ms"] for e in entities)
        rec, rate = sf.read(server.data_dir / "recordings" / stored.recording_path,
                            dtype="int16", always_2d=True)  # fmt: skip
        for e in entities:  # said where the word times put it: silent in the recording
            assert not rec[e["start_ms"] * rate // 1000 : e["end_ms"] * rate // 1000].any(), e
    en_text = " ".join(s.text for s in calls[en_id].segments)
    assert "[CVV]" in en_text and "[EXPIRY]" in en_text
    # The Luhn-invalid reference number is no card: kept as the ASR wrote it (P2).
    assert any("4532015112830367" in run for run in spoken_digits(en_text)), en_text

    # DTMF: a "*" per press, none inside the secure-entry stage; metadata masked (P3).
    pci = calls[dtmf_id]
    kinds = [t.kind for t in pci.trace]
    presses = [t for t in pci.trace if t.kind == "dtmf"]
    assert [t.data["digit"] for t in presses] == ["*"] * len(DTMF_PAN)
    start, end = kinds.index("secure_entry_started"), kinds.index("secure_entry_ended")
    assert "dtmf" not in kinds[start:end]
    assert pci.metadata["cardNumber"] == "[PAN]" and pci.metadata["cvv"] == "[CVV]"
    assert pci.metadata["note"] == "paid with [PAN]"

    # Nothing anywhere: the database dump, the server log, the vCon exports.
    with sqlite3.connect(server.db_path) as db:
        dump = "\n".join(db.iterdump())
    assert not leaked(dump, PAN, ID, DTMF_PAN)
    assert '"digit": "4"' not in dump and '"digit": "7"' not in dump
    assert not leaked(server.log(), PAN, ID, DTMF_PAN)
    for call in calls.values():
        assert not leaked(_vcon(server, call), PAN, ID, DTMF_PAN)


PAUSED = _call("en-paused", [
    ("agent", "en/p_ask.flac", 0.3),
    ("customer", "en/p_pan_words.flac", 1.5),  # said while paused (from the API)
    ("customer", "en/p_cvv.flac", 0.6),
    ("agent", "en/p_ask.flac", 1.5),  # after the resume: captured again
])  # fmt: skip
PAUSED_ZH = _call("zh-paused", [
    ("agent", "zh/p_ask.flac", 0.3),
    ("customer", "zh/p_visa.flac", 1.5),  # said while paused (switch text frames)
    ("agent", "zh/p_ask.flac", 1.5),
])  # fmt: skip


async def _stream_pausing(
    server: LiveServer, call: RenderedCall, ext: str, pause: Any, resume: Any
) -> None:
    """Stream `call` at 4x real time; `pause` 0.7 s (media) before its second turn, `resume`
    0.7 s after its turn that says the number ends (turns 1 and 2 for PAUSED)."""
    rate, frame = call.sample_rate, 4
    paused_turns = [t for t in call.turns[1:-1]]
    marks = {int((paused_turns[0].start_s - 0.7) * rate) * frame: pause,
             int((paused_turns[-1].end_s + 0.7) * rate) * frame: resume}  # fmt: skip
    pcm, chunk = call.pcm(), rate // 50 * frame
    async with connect(server.url, subprotocols=["audio.drachtio.org"]) as ws:
        await ws.send(json.dumps({"callid": ext, "sampleRate": rate, "mixType": "stereo"}))
        for pos in range(0, len(pcm), chunk):
            for at in [m for m in marks if pos <= m < pos + chunk]:
                await asyncio.sleep(0.3)  # the server has taken every frame sent so far
                await marks.pop(at)(ws)
            await ws.send(pcm[pos : pos + chunk])
            await asyncio.sleep(0.02 / 4)
        await ws.send(b"")


def test_pause_from_the_api_and_the_switch_keeps_speech_out_of_everything(
    server: LiveServer,
) -> None:
    """P1 (recording, ASR, transcript, trace, audit): the card number said while paused is
    zeros in the recording, in no transcript, and nowhere in the database or the log."""
    found = re.search(r"api listening on (http://\S+)", server.log())
    assert found, server.log()[-2000:]
    AccessStore(server.repo.engine).create_user(
        "sup-1", PASSWORD, "supervisor", at=datetime.now(UTC)
    )

    async def go() -> list[int]:
        async with httpx.AsyncClient(base_url=found.group(1), timeout=30) as api:
            r = await api.post("/api/login", json={"username": "sup-1", "password": PASSWORD})
            hdr = {"Authorization": f"Bearer {r.json()['token']}"}
            codes = []

            async def via_api(action: str) -> None:
                r = await api.post(f"/api/calls/pause-api-1/{action}", headers=hdr)
                codes.append(r.status_code)

            def frame(event: str) -> Any:
                async def send(ws: Any) -> None:
                    await ws.send(json.dumps({"event": event, "by": "agent-7"}))

                return send

            await asyncio.gather(
                _stream_pausing(server, PAUSED, "pause-api-1",
                                lambda ws: via_api("pause"), lambda ws: via_api("resume")),
                _stream_pausing(server, PAUSED_ZH, "pause-frame-1",
                                frame("pause_recording"), frame("resume_recording")),
            )  # fmt: skip
            gone = await api.post("/api/calls/no-such-call/pause", headers=hdr)
            return [*codes, gone.status_code]

    assert asyncio.run(go()) == [200, 200, 404]
    for ext, call, who, how in (("pause-api-1", PAUSED, "sup-1", "api"),
                                ("pause-frame-1", PAUSED_ZH, "agent-7", "switch")):  # fmt: skip
        stored = server.wait_call(ext)
        [p] = [t for t in stored.trace if t.kind == "capture_paused"]
        [r] = [t for t in stored.trace if t.kind == "capture_resumed"]
        assert (p.data["by"], p.data["how"], r.data["by"]) == (who, how, who)
        assert p.media_ms is not None and r.media_ms is not None
        said = call.turns[1:-1]
        assert p.media_ms <= said[0].start_s * 1000 and r.media_ms >= said[-1].end_s * 1000
        rec, rate = sf.read(server.data_dir / "recordings" / stored.recording_path,
                            dtype="int16", always_2d=True)  # fmt: skip
        span = rec[p.media_ms * rate // 1000 : r.media_ms * rate // 1000]
        assert len(span) > rate and not span.any()  # zeros, exactly
        assert rec[r.media_ms * rate // 1000 :].any()  # captured again after the resume
        assert all(s.end_ms <= p.media_ms or s.start_ms >= r.media_ms for s in stored.segments)
        assert any(s.start_ms >= r.media_ms for s in stored.segments)  # heard again
    rows = AccessStore(server.repo.engine).list_audit(
        call_id=server.wait_call("pause-api-1").call_id
    )
    assert [(a.action, a.result) for a in rows] == [("capture.pause", "allowed"),
                                                    ("capture.resume", "allowed")]  # fmt: skip
    with sqlite3.connect(server.db_path) as db:
        dump = "\n".join(db.iterdump())
    assert not leaked(dump, PAN) and not leaked(server.log(), PAN)
