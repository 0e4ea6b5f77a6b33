"""Erasure of a customer (issue 18 item 6, RELIABILITY.md §10 P7), on SQLite and PostgreSQL:
every recording and transcript gone from files and tables, replay answers 410, audit rows
kept with pseudonymised ids, completion reported with a timestamp; legal holds are kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from monitor.cli import main as cli_main
from storage.records import AlertRaised
from storage.repository import Repository
from tests.api_data import DAY, seed, write_wav
from tests.fixtures_api import ApiHarness

NUMBER = "+15550001"  # the caller of c1 and c5 in tests/api_data.py
ERASED = ("c1", "c5")
PHRASES = ("REFUND please", "Hello, thank you for calling Acme", "duration_long on c1")


def table_dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as plain values."""
    names = inspect(engine).get_table_names()
    with engine.connect() as conn:
        return {
            name: [dict(r) for r in conn.execute(text(f'SELECT * FROM "{name}"')).mappings()]
            for name in names
        }


def leaks(dump: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Where the erased customer still shows: an erased call id as a value, or the number or
    a phrase of their calls anywhere in a value."""
    found = []
    for table, rows in dump.items():
        for row in rows:
            for column, value in row.items():
                flat = json.dumps(value, default=str) if isinstance(value, dict) else str(value)
                if value in ERASED or any(p in flat for p in (NUMBER, "15550001", *PHRASES)):
                    found.append(f"{table}.{column}={flat[:60]}")
    return found


@pytest.fixture
def seeded(api: ApiHarness) -> ApiHarness:
    seed(api.repo, api.settings.recordings_dir)
    write_wav(api.settings.recordings_dir / "2026/11/20/c5.wav", 1.0)
    write_wav(api.settings.recordings_dir / "2026/11/20/c2.wav", 1.0)
    # A sibling file (e.g. the encrypted form or a holding copy) goes with the recording.
    (api.settings.recordings_dir / "2026/11/20/c1.wav.cwenc").write_bytes(b"x")
    # Accesses before the request: these audit rows must survive, pseudonymised.
    qa = api.headers("qa")
    assert api.client.get("/api/calls/c1", headers=qa).status_code == 200
    r = api.client.get("/api/calls/c1/recording", headers={**qa, "Range": "bytes=0-99"})
    assert r.status_code == 206
    assert api.client.post("/api/calls/c5/reviews", json={"score": 80, "comment": "REFUND please"},
                           headers=qa).status_code in (200, 201)  # fmt: skip
    return api


def test_erasure_removes_every_trace_and_keeps_pseudonymised_audit(seeded: ApiHarness) -> None:
    api = seeded
    audit_before = api.ctx.access.list_audit(limit=1000)
    assert leaks(table_dump(api.repo.engine))  # the scan does see the customer beforehand

    r = api.client.post("/api/admin/erasures", json={"caller": "+1 555-0001"},
                        headers=api.headers("admin"))  # fmt: skip
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["calls_erased"] == 2 and report["calls_held"] == []
    assert report["files_removed"] == 3  # c1.wav, its sibling, c5.wav
    assert report["completed_at"] == api.clock().isoformat().replace("+00:00", "Z")
    assert report["subject"].startswith("psn:") and "15550001" not in r.text

    # Tables: nothing of the customer, in either database.
    assert leaks(table_dump(api.repo.engine)) == []
    # Files: the recordings are gone, the other customer's is not.
    left = sorted(p.name for p in api.settings.recordings_dir.rglob("*") if p.is_file())
    assert left == ["c2.wav"]
    # SQLite: the erased text is not even in the database file's free pages or its WAL.
    url = api.repo.engine.url
    if url.get_backend_name() == "sqlite":
        raw = b"".join(Path(str(url.database) + s).read_bytes() for s in ("", "-wal")
                       if Path(str(url.database) + s).exists())  # fmt: skip
        assert b"REFUND please" not in raw and b"15550001" not in raw

    # Replay: 410 Gone for the call and its recording; others still play.
    qa = api.headers("qa")
    assert api.client.get("/api/calls/c1/recording", headers=qa).status_code == 410
    assert api.client.get("/api/calls/c5", headers=qa).status_code == 410
    assert api.client.get("/api/calls/c2", headers=qa).status_code == 200
    assert api.client.get("/api/calls/nope", headers=qa).status_code == 404

    # Audit: every earlier row is still there, same order and content, ids pseudonymised.
    audit_after = api.ctx.access.list_audit(limit=1000)
    for before, after in zip(audit_before, audit_after, strict=False):
        assert (before.audit_id, before.action, before.at) == (after.audit_id, after.action,
                                                               after.at)  # fmt: skip
        if before.call_id in ERASED:
            assert after.call_id is not None and after.call_id.startswith("psn:")
    pseud = {a.call_id for a in audit_before[: len(audit_before)] if a.call_id in ERASED}
    assert pseud == set(ERASED)
    erase_rows = [a for a in audit_after if a.action == "privacy.erase"]
    assert erase_rows[0].detail["subject"] == report["subject"]
    gone = [a for a in audit_after if a.status == 410]
    assert {a.call_id[:4] for a in gone if a.call_id} == {"psn:"}


def test_audit_rows_accept_pseudonymisation_and_nothing_else(seeded: ApiHarness) -> None:
    seeded.ctx.access.audit(at=DAY, action="login", result="denied", status=401)  # no call id
    refused = (
        "UPDATE audit_log SET result = 'denied'",
        "UPDATE audit_log SET call_id = 'c9' WHERE call_id = 'c1'",
        "UPDATE audit_log SET call_id = 'psn:x', status = 500 WHERE call_id = 'c1'",
        "UPDATE audit_log SET call_id = 'psn:y' WHERE call_id IS NULL",
        "DELETE FROM audit_log",
    )
    for stmt in refused:
        with pytest.raises(DBAPIError, match="append-only"):
            with seeded.repo.engine.begin() as conn:
                conn.execute(text(stmt))
    with seeded.repo.engine.begin() as conn:
        n = conn.execute(text("UPDATE audit_log SET call_id = 'psn:ab' WHERE call_id = 'c1'"))
    assert n.rowcount == 2
    with pytest.raises(DBAPIError, match="append-only"):  # a pseudonym is final
        with seeded.repo.engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET call_id = 'psn:cd' WHERE call_id = 'psn:ab'"))


def test_legal_hold_keeps_a_call_from_erasure(seeded: ApiHarness) -> None:
    api, admin = seeded, seeded.headers("admin")
    r = api.client.put("/api/admin/calls/c5/legal-hold", json={"reason": "dispute 42"},
                       headers=admin)  # fmt: skip
    assert r.status_code == 200 and r.json()["set_by"] == "admin1"
    assert api.client.put("/api/admin/calls/c5/legal-hold", json={"reason": "x"},
                          headers=api.headers("qa")).status_code == 403  # fmt: skip
    report = api.client.post("/api/admin/erasures", json={"caller": NUMBER},
                             headers=admin).json()  # fmt: skip
    assert (report["calls_erased"], report["calls_held"]) == (1, ["c5"])
    assert api.client.get("/api/calls/c5", headers=admin).status_code == 200
    assert [a.action for a in api.ctx.access.list_audit(action="legal_hold.set")] == [
        "legal_hold.set"
    ]
    assert api.client.delete("/api/admin/calls/c5/legal-hold", headers=admin).status_code == 204
    report = api.client.post("/api/admin/erasures", json={"caller": NUMBER},
                             headers=admin).json()  # fmt: skip
    assert (report["calls_erased"], report["calls_held"]) == (1, [])
    assert leaks(table_dump(api.repo.engine)) == []


def test_erasure_skips_running_calls_and_says_so(seeded: ApiHarness) -> None:
    # c4 is still active (tests/api_data.py): erasing mid-call would race the recorder.
    report = seeded.client.post("/api/admin/erasures", json={"caller": "+15550004"},
                                headers=seeded.headers("admin")).json()  # fmt: skip
    assert (report["calls_erased"], report["calls_active"]) == (0, ["c4"])


def test_cli_erase_reports_completion_without_the_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'callwatch.db'}")
    repo.upgrade()
    seed(repo, tmp_path / "recordings")
    alert = AlertRaised(alert_id=99, call_id="c5", rule="x", kind="x", severity="info",
                        raised_at=DAY, media_start_ms=None, media_end_ms=None,
                        message="REFUND please", evidence={}, agent_id=None,
                        queue=None)  # fmt: skip
    repo.apply([alert])
    assert cli_main(["erase", "--caller", NUMBER, "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 calls and 1 files removed, completed at 20" in out and "15550001" not in out
    assert leaks(table_dump(repo.engine)) == []
    assert not (tmp_path / "recordings/2026/11/20/c1.wav").exists()
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    repo.close()
