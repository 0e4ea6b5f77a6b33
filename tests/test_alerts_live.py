"""Alerts end to end against a real `callwatch serve` process (ASR by the scripted
transcriber: no alert here depends on the words): a running call passes the
fixed duration limit and then stops sending audio; both alerts are raised while it is still
connected, stored, written into the call's trace in order, POSTed signed to a real local
webhook receiver, and listed by `callwatch show`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from ivr_sim import builtin_scripts, load_script, render
from monitor.cli import main as cli_main
from monitor.runtime.webhooks import SIGNATURE_HEADER, verify
from tests.fixtures_server import LiveServer, make_server

SECRET = "live-test-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, Any], bool]]]]:
    got: list[tuple[dict[str, Any], bool]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify(SECRET, self.headers[SIGNATURE_HEADER], body, time.time())
            got.append((json.loads(body), ok))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


@pytest.fixture
def alert_server(tmp_path: Path, receiver: tuple[str, list[Any]]) -> Iterator[LiveServer]:
    config = tmp_path / "alerts.toml"
    config.write_text(
        "[alerts]\nmax_duration_s = 3.0\nmedia_stall_s = 1.5\n\n"
        f'[[webhooks.targets]]\nname = "ops"\nurl = "{receiver[0]}"\nsecret = "{SECRET}"\n'
    )
    srv = make_server(tmp_path / "srv", scripted=True, CALLWATCH_CONFIG=str(config))
    srv.start()
    yield srv
    srv.stop()


def test_live_call_alerts_trace_webhook_and_show(
    alert_server: LiveServer,
    receiver: tuple[str, list[tuple[dict[str, Any], bool]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ext = f"long-{uuid.uuid4()}"
    script = next(p for p in builtin_scripts() if "en_billing_8k" in p.name)
    pcm = render(load_script(script)).pcm()[: 5 * 8000 * 4]  # 5 s, stereo 16-bit

    async def go() -> None:
        async with connect(alert_server.url, subprotocols=["audio.drachtio.org"]) as ws:
            meta = {"callid": ext, "sampleRate": 8000, "channels": 2, "queue": "billing"}
            await ws.send(json.dumps(meta))
            for i in range(0, len(pcm), 3200):  # 100 ms a message, in real time
                await ws.send(pcm[i : i + 3200])
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)  # connected, but no audio: media stalled

    asyncio.run(go())
    call = alert_server.wait_call(ext)
    alerts = {a.rule: a for a in alert_server.repo.list_alerts(call_id=call.call_id)}
    # A 5 s call also misses its script's greeting etc. and gets quality findings: those
    # alerts are real too; the two this test provokes must be there.
    assert {"duration_long:limit", "media_stalled"} <= set(alerts)
    long = alerts["duration_long:limit"]
    assert long.media_start_ms == 3000
    # Raised on the tick after the limit (0.25 s); the 1 s bound itself is asserted on a test
    # clock in test_alert_service.py - here a loaded CI machine may deliver audio in bursts.
    assert long.media_end_ms is not None and 3000 < long.media_end_ms <= 5000
    stalled = alerts["media_stalled"]
    # Raised for no audio since 1.5 s, or for audio 1.5 s behind the wall clock: on a loaded
    # machine the second can come first (the sender's 100 ms messages arrive late).
    ev = stalled.evidence
    assert stalled.severity == "critical" and max(ev["stalled_s"], ev["lag_s"]) >= 1.5, ev
    trace = call.trace
    assert [t.seq for t in trace] == sorted({t.seq for t in trace})  # unique, in order
    traced = {t.data["alert_id"]: t.seq for t in trace if t.kind == "alert"}
    assert set(traced) == {a.id for a in alerts.values()}  # each alert once in the trace
    disconnected = next(t.seq for t in trace if t.kind == "disconnected")
    assert traced[long.id] < disconnected and traced[stalled.id] < disconnected
    deadline = time.monotonic() + 20
    while len(receiver[1]) < len(alerts) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(doc["alert"]["rule"] for doc, _ in receiver[1]) == sorted(alerts)
    assert all(ok for _, ok in receiver[1])
    assert cli_main(["show", ext, "--data-dir", str(alert_server.data_dir)]) == 0
    out = capsys.readouterr().out
    # `show` lists each alert in the words it was raised with (the stall's says which of
    # the two it saw: "no audio for 1.6 s ..." or "audio 1.6 s behind the wall clock").
    assert "alerts" in out and "call longer than 3 s" in out
    assert stalled.message in out, (stalled.message, out)
