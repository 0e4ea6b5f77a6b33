"""API fixtures (pytest plugin): the FastAPI app on a real database, with one user per role.

* `api` - an `ApiHarness` on `repo` (so once on SQLite and once on PostgreSQL): the app, a
  `TestClient`, the settings (data dir in `tmp_path`), a controllable clock and a logged-in
  token per role (`harness.headers("qa")`).
* `seeded` - the same with the hand-checkable calls of tests/api_data.py stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from config.settings import Settings, load_settings
from monitor.web.api.app import create_app
from monitor.web.api.context import ApiContext
from storage.repository import Repository

PASSWORD = "correct horse battery"
ROLES = ("supervisor", "qa", "admin")


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 21, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class ApiHarness:
    settings: Settings
    repo: Repository
    ctx: ApiContext
    app: FastAPI
    client: TestClient
    clock: Clock
    tokens: dict[str, str] = field(default_factory=dict)

    def login(self, username: str, password: str = PASSWORD) -> str:
        r = self.client.post("/api/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        self.client.cookies.clear()  # tests pick header or cookie explicitly
        return str(r.json()["token"])

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_api(
    repo: Repository, data_dir: Path, *, api: dict[str, object] | None = None, **kw: object
) -> ApiHarness:
    # Password hashing at scrypt's minimum cost (2**14): the fixtures hash a dozen passwords.
    settings = load_settings(env={}, data_dir=data_dir, api={"scrypt_n": 2**14, **(api or {})})
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    ctx = ApiContext.for_repo(settings, repo, clock=clock, **kw)
    app = create_app(ctx)
    client = TestClient(app)
    harness = ApiHarness(settings, repo, ctx, app, client, clock)
    for role in ROLES:
        ctx.access.create_user(f"{role}1", PASSWORD, role, at=clock())
        harness.tokens[role] = harness.login(f"{role}1")
    return harness


@pytest.fixture
def api(repo: Repository, tmp_path: Path) -> Iterator[ApiHarness]:
    harness = make_api(repo, tmp_path / "data")
    with harness.client:
        yield harness


@pytest.fixture
def seeded(repo: Repository, tmp_path: Path) -> Iterator[ApiHarness]:
    from tests import api_data

    harness = make_api(repo, tmp_path / "data")
    api_data.seed(repo, harness.settings.recordings_dir)
    with harness.client:
        yield harness
