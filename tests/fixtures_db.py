"""Database fixtures (a pytest plugin registered in tests/conftest.py).

* `db_url` - parametrized over `sqlite` (a real file in `tmp_path`) and `postgres` (a fresh
  database `cw_test_<random>` created on the server named by `CALLWATCH_TEST_PG_URL` and
  dropped afterwards). Without that variable the postgres case is skipped locally and fails
  under `CI=true`, so CI can never pass by silently not testing PostgreSQL.
* `repo` - a `Repository` on `db_url`, migrated to head, closed afterwards.
* `pg_repo` - the same on a fresh PostgreSQL database only (the scale-out tests);
  `pg_module_repo` one per test module (a floor of processes shared by its tests).
* `pg_server_url` - the server URL itself, for tests that need PostgreSQL specifically.

Test modules read only fixtures; the environment is read here, once per test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

from storage.repository import Repository

PG_URL_ENV = "CALLWATCH_TEST_PG_URL"


def _pg_server_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if url:
        return url
    message = (
        f"{PG_URL_ENV} is not set: PostgreSQL tests need a server. scripts/test starts one; "
        f"by hand: export {PG_URL_ENV}=$(scripts/pg-test-server start)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pg_server_url() -> str:
    """URL of the PostgreSQL server for tests (its maintenance database)."""
    return _pg_server_url()


@contextmanager
def fresh_pg_database(server_url: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database on `server_url`, dropped on exit."""
    name = f"cw_test_{secrets.token_hex(6)}"
    # CREATE/DROP DATABASE cannot run inside a transaction block, hence AUTOCOMMIT; NullPool
    # so no pooled connection outlives the fixture.
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # FORCE (PostgreSQL 13+) ends connections a failed test may have left open.
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def pg_database_url(pg_server_url: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database that is dropped after the test."""
    with fresh_pg_database(pg_server_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database, once per supported backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callwatch.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    return url


def _migrated(url: str) -> Iterator[Repository]:
    repository = Repository.from_url(url)
    repository.upgrade()
    try:
        yield repository
    finally:
        repository.close()


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    """A repository on `db_url`, migrated to head like the application does at start."""
    yield from _migrated(db_url)


@pytest.fixture
def pg_repo(pg_database_url: str) -> Iterator[Repository]:
    """A repository on a fresh PostgreSQL database, migrated to head (scale-out tests)."""
    yield from _migrated(pg_database_url)


@pytest.fixture(scope="module")
def pg_module_repo() -> Iterator[Repository]:
    """`pg_repo` shared by a module's tests (one floor of processes for several proofs)."""
    with fresh_pg_database(_pg_server_url()) as url:
        yield from _migrated(url)
