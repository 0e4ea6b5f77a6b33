"""The API's contract as generated clients and HTTP caches read it: declared response models
(call detail, vCon, alerts), declared headers (429 `Retry-After`, recording validators), one
timestamp format everywhere, recordings that say when they changed, a reused switch call id
answered 409 with every call it names, the audit trail newest first, and the trace in
media-time order."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from storage.records import CallOpened, TraceAdded
from tests import api_data
from tests.fixtures_api import ApiHarness


def _schema(doc: dict[str, Any], path: str, code: str = "200") -> dict[str, Any]:
    content = doc["paths"][path]["get"]["responses"][code]["content"]["application/json"]
    schema: dict[str, Any] = content["schema"]
    if schema.get("type") == "array":
        schema = schema["items"]
    name = schema["$ref"].rsplit("/", 1)[1]
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


def test_openapi_declares_the_responses_clients_read(seeded: ApiHarness) -> None:
    doc = seeded.client.get("/api/openapi.json").json()
    detail = _schema(doc, "/api/calls/{call_id}")["properties"]
    assert {"transcript", "trace", "quality", "compliance", "findings", "alerts",
            "parties", "recording_url", "started_at"} <= set(detail)  # fmt: skip
    assert detail["alerts"]["items"]["$ref"].endswith("/AlertOut")
    vcon = _schema(doc, "/api/calls/{call_id}/vcon")["properties"]
    assert {"vcon", "uuid", "parties", "dialog", "analysis", "attachments"} <= set(vcon)
    assert "severity" in _schema(doc, "/api/alerts")["properties"]
    locked = doc["paths"]["/api/login"]["post"]["responses"]["429"]
    assert locked["headers"]["Retry-After"]["schema"]["type"] == "integer"
    played = doc["paths"]["/api/calls/{call_id}/recording"]["get"]["responses"]
    assert {"ETag", "Last-Modified"} <= set(played["200"]["headers"])
    assert "409" in doc["paths"]["/api/calls/{call_id}"]["get"]["responses"]
    audit = doc["paths"]["/api/audit"]["get"]["parameters"]
    assert any(p["name"] == "order" for p in audit)


def test_one_timestamp_format_in_list_and_detail(seeded: ApiHarness) -> None:
    hdr = seeded.headers("qa")
    (item,) = seeded.client.get("/api/calls", params={"agent": "a1", "queue": "cards"},
                                headers=hdr).json()["items"]  # fmt: skip
    detail = seeded.client.get("/api/calls/c2", headers=hdr).json()
    assert item["started_at"] == detail["started_at"] == "2026-11-20T10:00:00Z"
    assert detail["ended_at"] == "2026-11-20T10:02:00Z"
    assert detail["alerts"][0]["raised_at"] == "2026-11-20T10:00:30Z"
    vcon = seeded.client.get("/api/calls/c2/vcon", headers=hdr).json()
    assert vcon["created_at"] == "2026-11-20T10:00:00Z"
    assert "url" in vcon["dialog"][0] and "body" not in vcon["dialog"][0]  # no nulls


def test_recording_validators_follow_the_file(seeded: ApiHarness) -> None:
    hdr = seeded.headers("supervisor")
    url = "/api/calls/c1/recording"
    first = seeded.client.get(url, headers=hdr)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('"') and modified.endswith(" GMT")
    same = seeded.client.get(url, headers={**hdr, "Range": "bytes=44-99", "If-Range": etag})
    assert same.status_code == 206 and len(same.content) == 56
    # the recording grows (a live call flushed): the old validator no longer gets a range
    path = seeded.settings.recordings_dir / "2026/11/20/c1.wav"
    with path.open("ab") as f:
        f.write(b"\0" * 64)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    changed = seeded.client.get(url, headers={**hdr, "Range": "bytes=44-99", "If-Range": etag})
    assert changed.status_code == 206 and changed.content == path.read_bytes()  # all, played
    assert changed.headers["etag"] != etag


def test_a_reused_switch_call_id_answers_409_with_both_calls(seeded: ApiHarness) -> None:
    for call_id, hour in (("d1", 13), ("d2", 14)):
        seeded.repo.apply([CallOpened(
            call_id=call_id, external_id="sw-reused", protocol="audiohook",
            started_at=api_data.DAY + timedelta(hours=hour), sample_rate=8000, channels=2,
            recording_path=f"{call_id}.wav", parties=(("customer", 0), ("agent", 1)))])  # fmt: skip
    hdr = seeded.headers("qa")
    for path in ("/api/calls/sw-reused", "/api/calls/sw-reused/vcon",
                 "/api/calls/sw-reused/recording"):  # fmt: skip
        r = seeded.client.get(path, headers=hdr)
        assert r.status_code == 409, (path, r.text)
        assert r.json()["detail"]["call_ids"] == ["d2", "d1"]  # newest first
    assert seeded.client.get("/api/calls/d1", headers=hdr).json()["call_id"] == "d1"
    assert seeded.client.get("/api/calls/sw-c1", headers=hdr).json()["call_id"] == "c1"


def test_audit_trail_is_newest_first_unless_asked(seeded: ApiHarness) -> None:
    for call_id in ("c1", "c2", "c3"):
        seeded.client.get(f"/api/calls/{call_id}", headers=seeded.headers("qa"))
    admin = seeded.headers("admin")
    rows = seeded.client.get("/api/audit", params={"action": "transcript.view"},
                             headers=admin).json()  # fmt: skip
    assert [r["call_id"] for r in rows] == ["c3", "c2", "c1"]
    assert rows[0]["at"].endswith("Z")
    oldest = seeded.client.get(
        "/api/audit", params={"action": "transcript.view", "order": "oldest"}, headers=admin
    ).json()
    assert [r["call_id"] for r in oldest] == ["c1", "c2", "c3"]


def test_trace_is_in_media_time_order(seeded: ApiHarness) -> None:
    at = api_data.DAY + timedelta(hours=9)
    # the last transcript came back from ASR after the caller hung up
    steps = [
        ("connected", 0),
        ("utterance", 0),
        ("disconnected", 60_000),
        ("utterance", 3_000),
        ("alert_raised", None),
        ("finalised", 60_000),
    ]
    seeded.repo.apply([TraceAdded("c1", seq, kind, at + timedelta(seconds=seq), media)
                       for seq, (kind, media) in enumerate(steps)])  # fmt: skip
    trace = seeded.client.get("/api/calls/c1", headers=seeded.headers("qa")).json()["trace"]
    assert [(t["kind"], t["seq"]) for t in trace] == [
        ("connected", 0), ("utterance", 1), ("utterance", 3), ("alert_raised", 4),
        ("disconnected", 2), ("finalised", 5)]  # fmt: skip
    assert trace[0]["at"] == "2026-11-20T09:00:00Z"
