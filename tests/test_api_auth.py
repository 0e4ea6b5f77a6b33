"""API access control on real databases: login, tokens (header and cookie), roles, users,
the first-admin CLI command, and the audit trail's append-only guarantee."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from monitor.cli import main as cli_main
from storage.access import AccessStore
from tests.fixtures_api import PASSWORD, ApiHarness


def test_login_gives_a_token_that_works_as_header_and_cookie(api: ApiHarness) -> None:
    r = api.client.post("/api/login", json={"username": "qa1", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["role"] == "qa" and body["username"] == "qa1"
    cookie = r.headers["set-cookie"]
    assert "cw_token=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    api.client.cookies.clear()
    hdr = {"Authorization": f"Bearer {body['token']}"}
    assert api.client.get("/api/me", headers=hdr).json() == {"username": "qa1", "role": "qa"}
    api.client.cookies.set("cw_token", body["token"])
    assert api.client.get("/api/me").json()["role"] == "qa"
    api.client.cookies.clear()
    assert api.client.get("/api/me").status_code == 401


def test_wrong_password_unknown_user_and_disabled_user_are_refused(api: ApiHarness) -> None:
    for user, pw in (("qa1", "wrong password"), ("nobody", PASSWORD)):
        r = api.client.post("/api/login", json={"username": user, "password": pw})
        assert r.status_code == 401
    rows = api.ctx.access.list_audit(action="login")
    assert [(a.username, a.result, a.status) for a in rows] == [
        ("qa1", "denied", 401),
        ("nobody", "denied", 401),
    ]
    r = api.client.patch("/api/users/qa1", json={"disabled": True}, headers=api.headers("admin"))
    assert r.status_code == 200 and r.json()["disabled"] is True
    # The existing token stops working at once, and a new login is refused.
    assert api.client.get("/api/me", headers=api.headers("qa")).status_code == 401
    r = api.client.post("/api/login", json={"username": "qa1", "password": PASSWORD})
    assert r.status_code == 401


def test_tokens_expire_and_logout_revokes(api: ApiHarness) -> None:
    assert api.client.get("/api/me", headers=api.headers("qa")).status_code == 200
    assert api.client.post("/api/logout", headers=api.headers("qa")).status_code == 204
    assert api.client.get("/api/me", headers=api.headers("qa")).status_code == 401
    token = api.login("supervisor1")
    hdr = {"Authorization": f"Bearer {token}"}
    api.clock.advance(api.settings.api.token_ttl_s - 1)
    assert api.client.get("/api/me", headers=hdr).status_code == 200
    api.clock.advance(2)
    assert api.client.get("/api/me", headers=hdr).status_code == 401


def test_tokens_and_passwords_are_stored_hashed(api: ApiHarness) -> None:
    with api.repo.engine.connect() as conn:
        hashes = conn.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
        pw = conn.execute(text("SELECT password_hash FROM users")).scalars().all()
    assert hashes and not set(hashes) & set(api.tokens.values())
    assert all(len(h) == 64 for h in hashes)
    assert all(p.startswith("scrypt$") and PASSWORD not in p for p in pw)


def test_only_admins_manage_users(api: ApiHarness) -> None:
    new = {"username": "sup2", "password": "another secret", "role": "supervisor"}
    for role in ("supervisor", "qa"):
        assert api.client.get("/api/users", headers=api.headers(role)).status_code == 403
        assert api.client.post("/api/users", json=new, headers=api.headers(role)).status_code == 403
    r = api.client.post("/api/users", json=new, headers=api.headers("admin"))
    assert r.status_code == 201 and r.json()["role"] == "supervisor"
    assert api.client.post("/api/users", json=new, headers=api.headers("admin")).status_code == 409
    names = [
        u["username"] for u in api.client.get("/api/users", headers=api.headers("admin")).json()
    ]
    assert names == sorted(["admin1", "qa1", "supervisor1", "sup2"])
    assert "password" not in str(api.client.get("/api/users", headers=api.headers("admin")).json())
    r = api.client.patch("/api/users/admin1", json={"role": "qa"}, headers=api.headers("admin"))
    assert r.status_code == 409  # an admin cannot lock themselves (and everyone) out
    assert api.client.get("/api/users", headers={}).status_code == 401


def test_audit_rows_cannot_be_changed_even_in_sql(api: ApiHarness) -> None:
    api.client.post("/api/login", json={"username": "qa1", "password": "nope nope"})
    assert api.ctx.access.list_audit()
    for stmt in ("UPDATE audit_log SET result = 'allowed'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with api.repo.engine.begin() as conn:
                conn.execute(text(stmt))
    assert [a.result for a in api.ctx.access.list_audit()] == ["denied"]
    # ... and the API offers no way to change them: only GET exists on the audit route.
    paths = api.client.get("/api/openapi.json").json()["paths"]
    assert set(paths["/api/audit"]) == {"get"}
    for method in ("delete", "put", "patch", "post"):
        r = api.client.request(method.upper(), "/api/audit", headers=api.headers("admin"))
        assert r.status_code == 405


def test_cli_creates_the_first_admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    data = tmp_path / "data"
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-admin-pw\n"))
    argv = [
        "user",
        "create",
        "root",
        "--role",
        "admin",
        "--password-stdin",
        "--data-dir",
        str(data),
    ]
    assert cli_main(argv) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-admin-pw\n"))
    assert cli_main(argv) == 1  # taken
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli_main(["user", "create", "x", "--role", "qa", "--password-stdin",
                     "--data-dir", str(data)]) == 2  # fmt: skip
    from storage.repository import Repository

    repo = Repository.from_url(f"sqlite:///{(data / 'callwatch.db').resolve()}")
    try:
        store = AccessStore(repo.engine)
        assert [(u.username, u.role) for u in store.list_users()] == [("root", "admin")]
        assert store.authenticate("root", "s3cret-admin-pw") is not None
    finally:
        repo.close()


def test_repeated_wrong_passwords_lock_the_login_for_a_while(api: ApiHarness) -> None:
    def attempt(password: str) -> int:
        body = {"username": "qa1", "password": password}
        return api.client.post("/api/login", json=body).status_code

    assert [attempt("wrong guess") for _ in range(5)] == [401] * 5
    r = api.client.post("/api/login", json={"username": "qa1", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 300
    # other users are not affected; the lock ends after login_lockout_s
    assert api.client.post("/api/login", json={"username": "admin1", "password": PASSWORD}
                           ).status_code == 200  # fmt: skip
    api.clock.advance(301)
    assert attempt(PASSWORD) == 200
    rows = [(a.status, a.result) for a in api.ctx.access.list_audit(action="login")]
    assert rows == [(401, "denied")] * 5 + [(429, "denied")]
