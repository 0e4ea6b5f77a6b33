"""End to end, issue 18 item 2 and P1, with the real Whisper model in a real `callwatch serve`:

* rendered speech that says a test card number, a security code and an expiry date, streamed
  through the gateway: the stored recording is silent over what was said (word times from
  faster-whisper), and every other sample is exactly what the switch sent;
* the same call with `kill -9` of the server while the number is being said, then a
  restart: what the journal did not confirm checked is transcribed and redacted in the
  background (withheld until then), so the number is not in the recording, and every
  other sample, before and after the checked point, is exactly what was sent;
* capture paused and resumed from the keypad (`*1` / `*2`, DTMF events): zeros in the
  recording between them, ASR never heard them, no DNSMOS window overlaps the pause.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ivr_sim import RenderedCall, render
from ivr_sim.script import script_from_dict
from storage.encryption import RecordingKey, read_header, unseal
from tests.fixtures_server import LiveServer, make_server

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent / "data" / "privacy"
PAD_MS = 250  # privacy.audio_pad_ms (the default)


def _call(name: str, turns: list[tuple[str, str, float]]) -> RenderedCall:
    return render(
        script_from_dict({
            "name": name, "sample_rate": 16000,
            "metadata": {"agent": "1031", "queue": "payments", "from": "+14155550142"},
            "turn": [{"party": p, "audio": a, "pause": s} for p, a, s in turns],
        }),
        DATA,
    )  # fmt: skip


PAYMENT = _call("en-pan-audio", [
    ("agent", "en/p_ask.flac", 0.3),
    ("customer", "en/p_pan_words.flac", 0.8),  # "My card number is four five three two, ..."
    ("customer", "en/p_cvv.flac", 1.0),  # "The security code is 737 and it expires 1227."
    ("agent", "en/p_ask.flac", 1.0),
])  # fmt: skip
KEYPAD = _call("en-keypad-pause", [
    ("agent", "en/p_ask.flac", 0.3),
    ("customer", "en/p_pan_words.flac", 1.5),  # said while paused from the keypad
    ("customer", "en/p_cvv.flac", 0.6),
    ("agent", "en/p_ask.flac", 1.5),
    ("agent", "en/p_ask.flac", 0.5),
])  # fmt: skip


def _frames(call: RenderedCall) -> np.ndarray:
    return np.frombuffer(call.pcm(), dtype="<i2").reshape(-1, 2)


def _recording(server: LiveServer, rel: str) -> np.ndarray:
    rec, rate = sf.read(server.data_dir / "recordings" / rel, dtype="int16", always_2d=True)
    assert rate == 16000
    return rec


def _at(seconds: float) -> int:
    return int(seconds * 16000)


async def _stream(
    url: str,
    call: RenderedCall,
    ext: str,
    *,
    pace: float,
    marks: dict[float, Callable[[Any], Awaitable[None]]] | None = None,
    stop_at_s: float | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Audio fork, stereo 16 kHz, 20 ms frames at `pace` x real time; `marks`: media second
    -> a coroutine run on the socket there; `stop_at_s`: stop sending there and await
    `on_stop` while still connected (a crash, not a hang-up)."""
    pcm, chunk = call.pcm(), 640 * 2
    todo = sorted((marks or {}).items())
    async with connect(url, subprotocols=["audio.drachtio.org"]) as ws:
        await ws.send(json.dumps({"callid": ext, "sampleRate": 16000, "mixType": "stereo"}))
        t0 = time.monotonic()
        for pos in range(0, len(pcm), chunk):
            media_s = pos / 64000
            while todo and todo[0][0] <= media_s:
                await asyncio.sleep(0.3)  # the server has taken every frame sent so far
                await todo.pop(0)[1](ws)
                t0 += 0.3  # keep the pace after the wait
            if stop_at_s is not None and media_s >= stop_at_s:
                if on_stop is not None:
                    await on_stop()
                return
            await ws.send(pcm[pos : pos + chunk])
            await asyncio.sleep(max(0.0, t0 + (pos + chunk) / 64000 / pace - time.monotonic()))
        await ws.send(b"")


def _masked_ms(trace: list[Any]) -> list[tuple[int, int]]:
    return [(e["start_ms"], e["end_ms"]) for t in trace if t.kind == "redacted"
            for e in t.data["entities"]]  # fmt: skip


def test_spoken_card_number_is_silenced_and_the_rest_is_sample_exact(server: LiveServer) -> None:
    asyncio.run(_stream(server.url, PAYMENT, "audio-redact-1", pace=3.0))
    stored = server.wait_call("audio-redact-1")
    rec, sent = _recording(server, stored.recording_path), _frames(PAYMENT)
    assert len(rec) == len(sent)
    text = " ".join(s.text for s in stored.segments)
    assert "[PAN]" in text and "[CVV]" in text and "[EXPIRY]" in text, text
    spans = _masked_ms(stored.trace)
    [done] = [t for t in stored.trace if t.kind == "audio_redacted"]
    assert done.data["masked_ms"] > 4000 and done.data["untimed"] == 0

    # What changed is silence, and only over what was masked (word times + the pad).
    changed = np.flatnonzero((rec != sent).any(axis=1))
    assert changed.size and not rec[changed].any()
    allowed = np.zeros(len(rec), dtype=bool)
    for a, b in spans:
        allowed[max(0, _at((a - PAD_MS - 1) / 1000)) : _at((b + PAD_MS + 1) / 1000)] = True
    assert allowed[changed].all()
    np.testing.assert_array_equal(rec[~allowed], sent[~allowed])  # sample-exact elsewhere

    # The digits themselves are silent: "four five three two ... zero three six six" runs
    # from ~0.95 s to the end of its clip, the code and the expiry at ~1.0 and ~3.0 s of
    # theirs; the words before them are kept ("My card", "The security").
    pan, cvv = PAYMENT.turns[1], PAYMENT.turns[2]
    assert not rec[_at(pan.start_s + 1.1) : _at(pan.end_s - 0.3)].any()
    assert not rec[_at(cvv.start_s + 1.1) : _at(cvv.start_s + 1.5)].any()
    assert not rec[_at(cvv.start_s + 3.2) : _at(cvv.start_s + 4.0)].any()
    for head in (pan, cvv):
        kept = slice(_at(head.start_s), _at(head.start_s + 0.45))
        np.testing.assert_array_equal(rec[kept], sent[kept])
    assert rec[_at(pan.start_s) : _at(pan.start_s + 0.45)].any()


def test_keypad_pause_and_resume(server: LiveServer) -> None:
    """P1 from the keypad: `*1` before the card number, `*2` after the code."""

    def keys(*digits: str) -> Callable[[Any], Awaitable[None]]:
        async def send(ws: Any) -> None:
            for d in digits:
                await ws.send(json.dumps({"event": "dtmf", "digit": d}))

        return send

    paused = KEYPAD.turns[1:3]
    marks = {paused[0].start_s - 0.7: keys("*", "1"), paused[-1].end_s + 0.7: keys("*", "2")}
    asyncio.run(_stream(server.url, KEYPAD, "keypad-pause-1", pace=4.0, marks=marks))
    stored = server.wait_call("keypad-pause-1")
    [p] = [t for t in stored.trace if t.kind == "capture_paused"]
    [r] = [t for t in stored.trace if t.kind == "capture_resumed"]
    assert p.data["how"] == r.data["how"] == "dtmf"
    assert [t.data["digit"] for t in stored.trace if t.kind == "dtmf"] == ["*"] * 4
    assert p.media_ms <= paused[0].start_s * 1000 and r.media_ms >= paused[-1].end_s * 1000
    rec = _recording(server, stored.recording_path)
    span = rec[_at(p.media_ms / 1000) : _at(r.media_ms / 1000)]
    assert len(span) > 16000 * 8 and not span.any()
    assert rec[_at(r.media_ms / 1000) :].any()
    assert all(s.end_ms <= p.media_ms or s.start_ms >= r.media_ms for s in stored.segments)
    assert any(s.start_ms >= r.media_ms for s in stored.segments)
    # No DNSMOS window was scored over the pause (RELIABILITY P1).
    analysis = server.repo.get_analysis(stored.call_id)
    windows = [w for doc in analysis.results.get("dnsmos_windows", {}).values()
               for w in doc["windows"]]  # fmt: skip
    assert all(w["end_ms"] <= p.media_ms or w["start_ms"] >= r.media_ms for w in windows)


def test_kill_9_while_the_number_is_said_then_restart_silences_it(tmp_path: Path) -> None:
    """With encryption at rest on: recovery masks before the recording is sealed."""
    key_hex = os.urandom(32).hex()
    key = RecordingKey.parse(key_hex)
    srv = make_server(tmp_path, CALLWATCH_RECORDING__ENCRYPT="true",
                      CALLWATCH_RECORDING__ENCRYPTION_KEY=key_hex)  # fmt: skip
    srv.start()
    ext = f"kill-redact-{uuid.uuid4()}"
    ask, pan = PAYMENT.turns[0], PAYMENT.turns[1]
    try:

        async def crash() -> None:
            await asyncio.sleep(0.8)  # > flush interval: the audio reached the file
            srv.kill9()

        async def go() -> None:
            try:
                # Real time, so the gateway has written what it got; cut off while the
                # customer is still on the last group of digits (ASR has not heard them).
                await _stream(srv.url, PAYMENT, ext, pace=1.0, stop_at_s=pan.end_s - 0.6,
                              on_stop=crash)  # fmt: skip
            except ConnectionClosed:
                pass

        asyncio.run(go())
        row = next(c for c in srv.repo.list_calls(limit=5) if c.external_id == ext)
        path = srv.data_dir / "recordings" / row.recording_path
        assert path.with_name(path.name + ".redact").exists()  # the journal, left by the crash
        before = _recording(srv, row.recording_path)
        assert before[_at(pan.start_s + 1.1) : _at(pan.end_s - 0.7)].any()  # audible now
        srv.start()  # recovery closes the call; the check runs in the background
        stored = srv.wait_call(ext)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stored = srv.repo.get_call(ext)
            assert stored is not None
            if any(t.kind == "audio_redacted" for t in stored.trace):
                break
            # Not checked yet: withheld (not sealed, the journal in place).
            assert read_header(path) is None
            time.sleep(0.2)
        while read_header(path) is None and time.monotonic() < deadline:
            time.sleep(0.1)  # then sealed
    finally:
        srv.stop()
    assert stored.end_reason == "server_crash"
    [fin] = [t for t in stored.trace if t.kind == "finalised"]
    [done] = [t for t in stored.trace if t.kind == "audio_redacted"]
    # The audio after the journal's checked point was transcribed and redacted, not blanked.
    assert done.data["recovered"] and done.data["checked"] is True, done.data
    assert fin.data["unchecked_ms"] == done.data["checked_ms"] > 0
    assert not path.with_name(path.name + ".redact").exists()
    plain = np.frombuffer(unseal(path, [key])[44:], dtype="<i2").reshape(-1, 2)
    rec, sent = plain, _frames(PAYMENT)[: len(before)]
    assert len(rec) == len(before)
    assert not rec[_at(pan.start_s + 1.1) : _at(pan.end_s - 0.7)].any()  # the number: gone
    text = " ".join(s.text for s in stored.segments)
    # Cut short by the crash, the number fails its check digit: masked as card data all the
    # same (the live redactor would have held it for the rest), never kept in clear.
    assert "[CARD]" in text or "[PAN]" in text, text
    assert not any(d in text for d in ("4532", "0151", "1283")), text
    # Everything else is exactly what was sent: the agent's question (checked before the
    # crash) and the unchecked tail outside the number's words (+ the pad).
    spans = _masked_ms(stored.trace)
    allowed = np.zeros(len(rec), dtype=bool)
    for a, b in spans:
        allowed[max(0, _at((a - PAD_MS - 1) / 1000)) : _at((b + PAD_MS + 1) / 1000)] = True
    changed = np.flatnonzero((rec != sent).any(axis=1))
    assert changed.size and not rec[changed].any() and allowed[changed].all()
    np.testing.assert_array_equal(rec[~allowed], sent[~allowed])
    np.testing.assert_array_equal(rec[: _at(ask.end_s)], sent[: _at(ask.end_s)])
    assert rec[_at(pan.start_s) : _at(pan.start_s + 0.45)].any()  # "My card": kept
