"""The call API on SQLite and PostgreSQL: search by every filter (Mandarin included), call
detail, the recording with range requests, KPIs against hand-computed values, the vCon
export against its JSON schema, QA reviews, and the audit row of every access and denial."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.fixtures_api import ApiHarness

SCHEMA = json.loads((Path(__file__).parent / "data" / "vcon.schema.json").read_text())


def ids(api: ApiHarness, **params: object) -> list[str]:
    r = api.client.get("/api/calls", params=params, headers=api.headers("supervisor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] >= len(body["items"])
    return [c["call_id"] for c in body["items"]]


DAY = {"since": "2026-11-20T00:00:00Z", "until": "2026-11-21T00:00:00+00:00"}


SEARCHES = [
    ({}, ["c4", "c3", "c2", "c1", "c5"]),
    (DAY, ["c4", "c3", "c2", "c1"]),
    ({"until": "2026-11-20T00:00:00"}, ["c5"]),  # no zone: UTC
    ({"agent": "a1"}, ["c2", "c1", "c5"]),
    ({"queue": "cards"}, ["c4", "c2"]),
    ({"caller": "+8613800000000"}, ["c2"]),
    ({"grade": "excellent"}, ["c2"]),
    ({"alert_kind": "dead_air"}, ["c2"]),
    ({"alert_kind": "duration_long", "agent": "a1"}, ["c1"]),
    ({"min_duration_ms": 100_000}, ["c2"]),
    ({"max_duration_ms": 20_000}, ["c3"]),
    ({"min_duration_ms": 30_000, "max_duration_ms": 60_000}, ["c1", "c5"]),
    ({"status": "active"}, ["c4"]),
    ({"q": "refund"}, ["c1", "c5"]),
    ({"q": "REFUND please", **DAY}, ["c1"]),
    ({"q": "100"}, ["c1"]),
    ({"q": "100%"}, []),  # % is literal, not a wildcard
    ({"q": "退款"}, ["c2"]),  # Mandarin by characters, inside a longer sentence
    ({"q": "信用卡 退款"}, ["c2"]),  # every term, in different segments
    ({"q": "您好，欢迎致电"}, ["c2"]),  # CJK punctuation separates terms
    ({"q": "查詢"}, ["c3"]),  # Traditional finds the stored Simplified
    ({"q": "退款 refund"}, []),
    ({"q": "账单", "queue": "cards"}, []),
]


def test_search_by_each_filter(seeded: ApiHarness) -> None:
    # One database for all cases (setting one up per case would cost more than the cases).
    failures = [(params, ids(seeded, **params), expected) for params, expected in SEARCHES
                if ids(seeded, **params) != expected]  # fmt: skip
    assert failures == []


def test_search_pages_and_counts(seeded: ApiHarness) -> None:
    r = seeded.client.get("/api/calls", params={"limit": 2, "offset": 1},
                          headers=seeded.headers("qa")).json()  # fmt: skip
    assert r["total"] == 5 and [c["call_id"] for c in r["items"]] == ["c3", "c2"]
    assert r["items"][0]["grade"] == "needs_improvement"
    bad = seeded.client.get("/api/calls", params={"grade": "A"}, headers=seeded.headers("qa"))
    assert bad.status_code == 422
    assert seeded.client.get("/api/calls").status_code == 401


def test_call_detail_has_everything_and_is_audited(seeded: ApiHarness) -> None:
    r = seeded.client.get("/api/calls/c2", headers=seeded.headers("supervisor"))
    assert r.status_code == 200
    d = r.json()
    assert [p["party"] for p in d["parties"]] == ["customer", "agent"]
    assert [s["text"] for s in d["transcript"]] == [
        "您好，欢迎致电信用卡中心。",
        "我想办理信用卡退款",
    ]
    assert d["compliance"]["passed"] is False
    assert d["quality"]["conversation"]["first_response_ms"] == 800
    assert [(a["kind"], a["severity"], a["state"]) for a in d["alerts"]] == [
        ("dead_air", "critical", "open")
    ]
    assert d["grade"] == "excellent" and d["recording_url"] == "/api/calls/c2/recording"
    assert "trace" in d and "findings" in d
    # the switch's id works too; an unknown id is a 404, audited as failed
    assert seeded.client.get("/api/calls/sw-c3", headers=seeded.headers("qa")).json()[
        "call_id"] == "c3"  # fmt: skip
    assert seeded.client.get("/api/calls/nope", headers=seeded.headers("qa")).status_code == 404
    assert seeded.client.get("/api/calls/c2").status_code == 401
    rows = [(a.username, a.role, a.action, a.call_id, a.result, a.status, a.end_ms)
            for a in seeded.ctx.access.list_audit(action="transcript.view")]  # fmt: skip
    assert rows == [
        ("supervisor1", "supervisor", "transcript.view", "c2", "allowed", 200, 120_000),
        ("qa1", "qa", "transcript.view", "c3", "allowed", 200, 15_000),
        ("qa1", "qa", "transcript.view", "nope", "failed", 404, None),
        (None, None, "transcript.view", "c2", "denied", 401, None),
    ]


def test_recording_range_requests(seeded: ApiHarness) -> None:
    wav = (seeded.settings.recordings_dir / "2026/11/20/c1.wav").read_bytes()
    size = len(wav)
    url = "/api/calls/c1/recording"
    hdr = seeded.headers("supervisor")
    # Playing is ranged (issue 17 item 6): a 2 s call fits in one window (api.play_window_s).
    full = seeded.client.get(url, headers=hdr)
    assert full.status_code == 206 and full.content == wav
    assert full.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == "audio/wav"
    assert full.headers["content-disposition"].startswith("inline")
    part = seeded.client.get(url, headers={**hdr, "Range": "bytes=44-32043"})
    assert part.status_code == 206 and part.content == wav[44:32044]
    assert part.headers["content-range"] == f"bytes 44-32043/{size}"
    assert part.headers["content-length"] == "32000"
    tail = seeded.client.get(url, headers={**hdr, "Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == wav[-100:]
    opened = seeded.client.get(url, headers={**hdr, "Range": "bytes=32044-"})
    assert opened.status_code == 206 and opened.content == wav[32044:]
    past = seeded.client.get(url, headers={**hdr, "Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    ignored = seeded.client.get(url, headers={**hdr, "Range": "bytes=0-1,5-9"})
    assert ignored.status_code == 206 and ignored.content == wav
    # HEAD: the size and range support a player or downloader asks for first, no audio, and
    # no playback in the audit trail.
    head = seeded.client.head(url, headers=hdr)
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-length"] == str(size)
    assert head.headers["accept-ranges"] == "bytes"
    head = seeded.client.head(url, headers={**hdr, "Range": "bytes=44-32043"})
    assert head.status_code == 206 and head.headers["content-range"] == f"bytes 44-32043/{size}"
    assert head.headers["content-length"] == "32000" and head.content == b""
    assert seeded.client.head(url).status_code == 401
    # The cookie works too (an <audio> element cannot send headers).
    seeded.client.cookies.set("cw_token", seeded.tokens["qa"])
    assert seeded.client.get(url, headers={"Range": "bytes=0-43"}).content == wav[:44]
    seeded.client.cookies.clear()
    # 2 s of 8 kHz stereo PCM16: 32000 bytes per second of media.
    spans = [(a.result, a.status, a.start_ms, a.end_ms, a.detail.get("bytes"))
             for a in seeded.ctx.access.list_audit(action="recording.play")]  # fmt: skip
    assert spans == [
        ("allowed", 206, 0, 2000, f"0-{size - 1}/{size}"),
        ("allowed", 206, 0, 1000, f"44-32043/{size}"),
        ("allowed", 206, 1996, 2000, f"{size - 100}-{size - 1}/{size}"),
        ("allowed", 206, 1000, 2000, f"32044-{size - 1}/{size}"),
        ("failed", 416, None, None, None),
        ("allowed", 206, 0, 2000, f"0-{size - 1}/{size}"),
        ("denied", 401, None, None, None),  # a HEAD without credentials
        ("allowed", 206, 0, 0, f"0-43/{size}"),
    ]
    assert seeded.client.get("/api/calls/c2/recording", headers=hdr).status_code == 404


def test_roles_allowed_and_denied_as_designed_with_audit(seeded: ApiHarness) -> None:
    """The access matrix of docs/api.md "HTTP API", each cell checked and each denial audited."""
    matrix = [  # method, path, action (None: not audited), roles allowed
        ("GET", "/api/calls", None, {"supervisor", "qa", "admin"}),
        ("GET", "/api/calls/c1", "transcript.view", {"supervisor", "qa", "admin"}),
        ("GET", "/api/calls/c1/recording", "recording.play", {"supervisor", "qa", "admin"}),
        ("GET", "/api/calls/c1/recording?download=true", "recording.download", {"qa", "admin"}),
        ("GET", "/api/calls/c1/vcon", "export.vcon", {"qa", "admin"}),
        ("GET", "/api/calls/c1/reviews", "review.view", {"qa", "admin"}),
        ("POST", "/api/calls/c1/reviews", "review.create", {"qa", "admin"}),
        ("GET", "/api/alerts", None, {"supervisor", "qa", "admin"}),
        ("POST", "/api/alerts/1/acknowledge", None, {"supervisor", "admin"}),
        ("GET", "/api/kpis?by=agent", None, {"supervisor", "qa", "admin"}),
        ("GET", "/api/users", None, {"admin"}),
        ("GET", "/api/audit", "audit.view", {"admin"}),
    ]
    for method, path, action, allowed in matrix:
        for role in (None, "supervisor", "qa", "admin"):
            before = len(seeded.ctx.access.list_audit(limit=1000))
            headers = seeded.headers(role) if role else {}
            body = {"score": 70, "comment": "ok"} if method == "POST" else None
            r = seeded.client.request(method, path, headers=headers, json=body)
            want = 401 if role is None else (200 if role in allowed else 403)
            got = 200 if r.status_code in (200, 201, 206) else r.status_code  # 206: played
            assert got == want, (method, path, role, r.status_code, r.text)
            new = seeded.ctx.access.list_audit(limit=1000)[before:]
            if action is None:
                continue
            assert len(new) == 1, (path, role, new)
            row = new[0]
            assert (row.action, row.username, row.role) == (
                action, f"{role}1" if role else None, role)  # fmt: skip
            assert row.result == ("allowed" if want == 200 else "denied")
            assert row.status in ((200, 201, 206) if want == 200 else (want,))
            if "/calls/c1" in path:
                assert row.call_id == "c1"
    download = seeded.client.get("/api/calls/c1/recording?download=true",
                                 headers=seeded.headers("qa"))  # fmt: skip
    assert download.headers["content-disposition"] == 'attachment; filename="c1.wav"'


def test_vcon_export_validates_against_the_draft_schema(seeded: ApiHarness) -> None:
    r = seeded.client.get("/api/calls/c1/vcon", headers=seeded.headers("qa"))
    assert r.status_code == 200
    doc = r.json()
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["vcon"] == "0.4.0" and doc["created_at"] == "2026-11-20T09:00:00Z"
    assert [p["role"] for p in doc["parties"]] == ["customer", "agent", "monitor"]
    assert doc["parties"][0]["tel"] == "+15550001" and doc["parties"][1]["name"] == "a1"
    (dialog,) = doc["dialog"]
    assert dialog["type"] == "recording" and dialog["duration"] == 60.0
    assert dialog["parties"] == [0, 1]
    assert dialog["url"] == "http://testserver/api/calls/c1/recording"  # absolute
    transcript = next(a for a in doc["analysis"] if a["type"] == "transcript")
    assert [s["text"] for s in transcript["body"]["segments"]][1].startswith("I want a REFUND")
    assert transcript["body"]["segments"][1]["party"] == 0  # the customer
    report = next(a for a in doc["analysis"] if a["type"] == "report")
    assert report["body"]["grade"] == "good" and report["body"]["compliance"]["passed"] is True
    alerts = next(a for a in doc["attachments"] if a["type"] == "alerts")
    assert alerts["body"][0]["kind"] == "duration_long"
    again = seeded.client.get("/api/calls/c1/vcon", headers=seeded.headers("admin")).json()
    assert again["uuid"] == doc["uuid"]  # stable per call
    # A call without a recording file still exports (no content hash), and still validates
    # once the file exists: the schema really checks the hash rule.
    c2 = seeded.client.get("/api/calls/c2/vcon", headers=seeded.headers("qa")).json()
    assert "content_hash" not in c2["dialog"][0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(c2)
    for broken in ({**doc, "uuid": "not-a-uuid"}, {**doc, "vcon": "0.0.2"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(SCHEMA).validate(broken)
    rows = seeded.ctx.access.list_audit(action="export.vcon")
    assert [(a.username, a.call_id, a.result) for a in rows] == [
        ("qa1", "c1", "allowed"),
        ("admin1", "c1", "allowed"),
        ("qa1", "c2", "allowed"),
    ]


def test_qa_reviews(seeded: ApiHarness) -> None:
    url = "/api/calls/c1/reviews"
    body = {"score": 72.5, "comment": "问候语完整, tone ok", "criteria": {"greeting": 5,
            "empathy": 3.5, "escalated": False, "note": "短"}}  # fmt: skip
    r = seeded.client.post(url, json=body, headers=seeded.headers("qa"))
    assert r.status_code == 201, r.text
    assert r.json()["username"] == "qa1" and r.json()["criteria"]["greeting"] == 5
    seeded.clock.advance(60)
    seeded.client.post(url, json={"score": 90}, headers=seeded.headers("admin"))
    got = seeded.client.get(url, headers=seeded.headers("qa")).json()
    assert [(x["username"], x["score"], x["comment"]) for x in got] == [
        ("qa1", 72.5, "问候语完整, tone ok"),
        ("admin1", 90.0, ""),
    ]
    for bad in ({"score": 101}, {"score": "NaN"}, {"comment": "a\x00b"}, {"other": 1}):
        assert seeded.client.post(url, json=bad, headers=seeded.headers("qa")).status_code == 422
    assert seeded.client.post("/api/calls/zz/reviews", json={},
                              headers=seeded.headers("qa")).status_code == 404  # fmt: skip


def test_alert_list_acknowledge_resolve(seeded: ApiHarness) -> None:
    sup = seeded.headers("supervisor")
    alerts = seeded.client.get("/api/alerts", headers=sup).json()
    assert [(a["id"], a["kind"], a["state"]) for a in alerts] == [
        (2, "dead_air", "open"),
        (1, "duration_long", "open"),
    ]
    assert [a["id"] for a in seeded.client.get("/api/alerts", params={"kind": "dead_air"},
                                               headers=sup).json()] == [2]  # fmt: skip
    r = seeded.client.post("/api/alerts/1/acknowledge", headers=sup)
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert r.json()["acknowledged_by"] == "supervisor1"
    r = seeded.client.post("/api/alerts/1/resolve", headers=seeded.headers("admin"))
    assert r.json()["state"] == "resolved" and r.json()["resolved_by"] == "admin1"
    assert seeded.client.post("/api/alerts/1/acknowledge", headers=sup).status_code == 409
    assert seeded.client.post("/api/alerts/99/resolve", headers=sup).status_code == 404
    assert seeded.client.post("/api/alerts/2/resolve",
                              headers=seeded.headers("qa")).status_code == 403  # fmt: skip
    open_ = seeded.client.get("/api/alerts", params={"state": "open"}, headers=sup).json()
    assert [a["id"] for a in open_] == [2]
    assert seeded.client.get("/api/alerts/1", headers=sup).json()["state"] == "resolved"


def test_kpis_match_hand_computed_values(seeded: ApiHarness) -> None:
    params = {"by": "agent", **DAY}
    r = seeded.client.get("/api/kpis", params=params, headers=seeded.headers("supervisor"))
    assert r.status_code == 200, r.text
    groups = {g["key"]: g for g in r.json()["groups"]}
    assert set(groups) == {"a1", "a2"}  # c5 is outside the period
    a1, a2 = groups["a1"], groups["a2"]
    assert (a1["calls"], a1["completed"]) == (2, 2)
    assert a1["avg_handle_ms"] == (60_000 + 120_000) / 2
    assert a1["avg_first_response_ms"] == (1200 + 800) / 2
    assert a1["avg_talk_ratio"] == pytest.approx((0.6 + 0.5) / 2)
    assert a1["dead_air_share"] == pytest.approx(3000 / 180_000)
    assert a1["compliance_rate"] == 0.5
    assert a1["grades"] == {"excellent": 1, "good": 1, "pass": 0, "needs_improvement": 0}
    assert a1["alerts"] == {"dead_air": 1, "duration_long": 1}
    assert a1["alerts_by_severity"] == {"critical": 1, "warning": 1}
    assert (a2["calls"], a2["completed"], a2["avg_handle_ms"]) == (2, 1, 15_000)
    assert a2["avg_first_response_ms"] is None and a2["dead_air_share"] is None
    assert a2["compliance_rate"] == 1.0 and a2["alerts"] == {}
    assert a2["grades"] == {"excellent": 0, "good": 0, "pass": 0, "needs_improvement": 1,
                            "ungraded": 1}  # fmt: skip
    q = seeded.client.get("/api/kpis", params={"by": "queue", "key": "billing", **DAY},
                          headers=seeded.headers("qa")).json()  # fmt: skip
    (billing,) = q["groups"]
    assert billing["key"] == "billing" and billing["calls"] == 2
    assert billing["avg_handle_ms"] == (60_000 + 15_000) / 2
    assert billing["dead_air_share"] == pytest.approx(3000 / 60_000)
    assert billing["compliance_rate"] == 1.0 and billing["alerts"] == {"duration_long": 1}
    whole = seeded.client.get(
        "/api/kpis",
        params={"by": "queue", "since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"},
        headers=seeded.headers("qa"),
    )
    assert {g["key"]: g["calls"] for g in whole.json()["groups"]} == {"billing": 3, "cards": 2}
    bad = seeded.client.get(
        "/api/kpis",
        params={"by": "agent", "since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"},
        headers=seeded.headers("qa"),
    )
    assert bad.status_code == 400


def test_a_recording_awaiting_its_redaction_check_is_withheld(seeded: ApiHarness) -> None:
    """After a crash, a closed call's recording whose audio-redaction journal is still there
    (its unchecked audio not yet checked for card numbers) is neither played nor
    downloaded; once the check drops the journal it is served as before."""
    wav = seeded.settings.recordings_dir / "2026/11/20/c1.wav"
    journal = wav.with_name(wav.name + ".redact")
    url = "/api/calls/c1/recording"
    journal.write_bytes(b"\0" * 20)
    try:
        for path, role in ((url, "supervisor"), (url + "?download=true", "qa")):
            r = seeded.client.get(path, headers=seeded.headers(role))
            assert r.status_code == 503 and r.headers["retry-after"] == "30"
            assert b"RIFF" not in r.content
    finally:
        journal.unlink()
    r = seeded.client.get(url + "?download=true", headers=seeded.headers("qa"))
    assert r.status_code == 200 and r.content == wav.read_bytes()
    r = seeded.client.get(url, headers=seeded.headers("supervisor"))  # play: its first window
    assert r.status_code == 206 and wav.read_bytes().startswith(r.content)
