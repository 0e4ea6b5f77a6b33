"""The audit trail is tamper-evident (issue 17 item 9, RELIABILITY.md P4).

With the append-only trigger dropped, UPDATE and DELETE on `audit_log` succeeded unnoticed; the
trail had no hash chain, no client address, no TRUNCATE protection on PostgreSQL, and
transcript searches were not audited. Through the real API on SQLite and PostgreSQL: rows carry
the client address and chain; `verify_audit` (and `callwatch audit verify`) report the exact
first row an UPDATE or a DELETE broke; PostgreSQL refuses TRUNCATE.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from monitor.cli import main as cli
from storage.access import AccessStore
from storage.repository import Repository
from tests.fixtures_api import ApiHarness, make_api


def produce_rows(api: ApiHarness) -> None:
    for q in ("refund", "card", "password"):
        r = api.client.get("/api/calls", params={"q": q}, headers=api.headers("qa"))
        assert r.status_code == 200
    api.client.post("/api/login", json={"username": "qa1", "password": "wrong-password"})
    api.client.get("/api/calls/nope", headers=api.headers("supervisor"))


def drop_guards(repo: Repository) -> None:
    with repo.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER audit_log_append_only ON audit_log"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))


def test_rows_chain_and_carry_the_client(api: ApiHarness) -> None:
    produce_rows(api)
    rows = api.ctx.access.list_audit(limit=1000)
    searches = [r for r in rows if r.action == "calls.search"]
    assert [r.detail["q"] for r in searches] == ["refund", "card", "password"]
    assert all(r.client == "testclient" for r in rows)  # the TestClient's address
    check = api.ctx.access.verify_audit()
    assert (check.verified, check.broken_id) == (len(rows), None)


@pytest.mark.parametrize("tamper", ["update", "delete"])
def test_tampering_names_the_first_broken_row(api: ApiHarness, tamper: str) -> None:
    produce_rows(api)
    ids = [r.audit_id for r in api.ctx.access.list_audit(limit=1000)]
    victim = ids[2]
    drop_guards(api.repo)
    with api.repo.engine.begin() as conn:
        if tamper == "update":
            conn.execute(text("UPDATE audit_log SET username = 'nobody' WHERE id = :i"),
                         {"i": victim})  # fmt: skip
        else:
            conn.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": victim})
    check = AccessStore(api.repo.engine).verify_audit()
    # An edited row fails its own hash; a deleted one breaks the link of the row after it.
    assert check.broken_id == (victim if tamper == "update" else ids[3]), check
    assert check.verified == 2


@pytest.mark.postgres
def test_postgres_refuses_truncate(pg_database_url: str, tmp_path: Path) -> None:
    """TRUNCATE exists on PostgreSQL only (SQLite has none to refuse)."""
    repo = Repository.from_url(pg_database_url)
    repo.upgrade()
    try:
        api = make_api(repo, tmp_path)
        with api.client:
            produce_rows(api)
        with pytest.raises(DBAPIError, match="append-only"), repo.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
    finally:
        repo.close()


def test_cli_verify_exit_code_and_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    repo = Repository.from_url(f"sqlite:///{(data / 'callwatch.db').resolve()}")
    repo.upgrade()
    try:
        api = make_api(repo, data)
        with api.client:
            produce_rows(api)
        assert cli(["audit", "verify", "--data-dir", str(data)]) == 0
        assert "audit trail intact" in capsys.readouterr().out
        ids = [r.audit_id for r in api.ctx.access.list_audit(limit=1000)]
        drop_guards(repo)
        with repo.engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET status = 599 WHERE id = :i"), {"i": ids[4]})
        assert cli(["audit", "verify", "--data-dir", str(data)]) == 1
        assert f"BROKEN at row id {ids[4]}" in capsys.readouterr().err
    finally:
        repo.close()


def test_erasure_pseudonymising_a_call_id_keeps_the_chain_whole(api: ApiHarness) -> None:
    """Erasure's one permitted UPDATE (call id -> `psn:...`, issue 18) is not tampering; with
    the triggers dropped, any other rewrite of a call id still breaks the chain."""
    for call_id in ("call-a", "call-b"):
        r = api.client.get(f"/api/calls/{call_id}", headers=api.headers("supervisor"))
        assert r.status_code == 404
    rows = api.ctx.access.list_audit(limit=1000)
    assert {"call-a", "call-b"} <= {r.call_id for r in rows}
    with api.repo.engine.begin() as conn:  # what storage/privacy.py does, under the triggers
        conn.execute(text("UPDATE audit_log SET call_id = 'psn:0123' WHERE call_id = 'call-a'"))
        with pytest.raises(DBAPIError):  # the pseudonym must leave the hashes as they were
            with conn.begin_nested():
                conn.execute(text("UPDATE audit_log SET call_id = 'psn:9', row_hash = 'x' "
                                  "WHERE call_id = 'call-b'"))  # fmt: skip
    check = api.ctx.access.verify_audit()
    assert (check.verified, check.broken_id) == (len(rows), None)
    drop_guards(api.repo)
    with api.repo.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET call_id = 'call-z' WHERE call_id = 'call-b'"))
    victim = next(r.audit_id for r in rows if r.call_id == "call-b")
    assert api.ctx.access.verify_audit().broken_id == victim
