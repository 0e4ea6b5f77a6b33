"""End to end through the API: a Mandarin call streamed into a real `callwatch serve` is
found over HTTP by a few of its characters, replayed by byte range, exported as a vCon, and
every access is in the audit trail. The API is the one the server process serves itself;
the process answers ASR with the scripted transcriber in Mandarin (the words are what the
search and the transcript are checked against; recognition itself is test_e2e_call's)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from ivr_sim import builtin_scripts, load_script, render, stream_call
from storage.access import AccessStore
from tests.fixtures_server import LiveServer, make_server

PASSWORD = "live test password"
LINES = ["您好，信用卡中心，请问有什么可以帮您？", "我的卡被锁了，想问一下怎么解锁。"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = make_server(tmp_path_factory.mktemp("api-live"), scripted=True,
                      CALLWATCH_ASR__LANGUAGE="zh",
                      CALLWATCH_ASR__SCRIPTED_LINES=json.dumps(LINES))  # fmt: skip
    srv.start()
    yield srv
    srv.stop()


def test_served_api_finds_replays_and_audits_a_live_call(server: LiveServer) -> None:
    script = next(p for p in builtin_scripts() if p.name == "zh_cards_8k.toml")
    ext = asyncio.run(stream_call(server.url, render(load_script(script)), pace=4.0)).external_id
    stored = server.wait_call(ext)
    text = "".join(s.text for s in stored.segments)
    assert LINES[1] in text  # the scripted words, through the pipeline
    chars = "解锁"  # two characters of the second line, found by the API's search
    found = re.search(r"api listening on (http://\S+)", server.log())
    assert found, server.log()[-2000:]
    access = AccessStore(server.repo.engine)
    access.create_user("qa-live", PASSWORD, "qa", at=datetime.now(UTC))

    with httpx.Client(base_url=found.group(1), timeout=30) as client:
        r = client.post("/api/login", json={"username": "qa-live", "password": PASSWORD})
        hdr = {"Authorization": f"Bearer {r.json()['token']}"}
        hits = client.get("/api/calls", params={"q": chars, "queue": stored.queue}, headers=hdr)
        assert stored.call_id in [c["call_id"] for c in hits.json()["items"]]
        detail = client.get(f"/api/calls/{ext}", headers=hdr).json()  # by the switch's id
        assert detail["call_id"] == stored.call_id and detail["status"] == "completed"
        assert [s["text"] for s in detail["transcript"]] == [s.text for s in stored.segments]
        part = client.get(f"/api/calls/{stored.call_id}/recording",
                          headers={**hdr, "Range": "bytes=44-16043"})  # fmt: skip
        assert part.status_code == 206 and len(part.content) == 16000
        wav = (server.data_dir / "recordings" / stored.recording_path).read_bytes()
        assert part.content == wav[44:16044]
        doc = client.get(f"/api/calls/{stored.call_id}/vcon", headers=hdr).json()
        assert doc["dialog"][0]["content_hash"].startswith("sha512-")

    rows = [(a.action, a.result, a.start_ms, a.end_ms)
            for a in access.list_audit(call_id=stored.call_id)]  # fmt: skip
    duration = stored.duration_ms
    assert rows == [
        ("transcript.view", "allowed", 0, duration),
        ("recording.play", "allowed", 0, 500),  # 16000 bytes of 8 kHz stereo
        ("export.vcon", "allowed", 0, duration),
    ]
