"""Transient database failures, made real: another connection holds the write lock, or the
server kills our connections. `apply` must ride them out (retry, reconnect) or report
`StorageUnavailable`, never lose or half-write a batch."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.exc import OperationalError

from storage import db
from storage.errors import StorageUnavailable
from storage.records import CallOpened, Record, TraceAdded
from storage.repository import Repository

LOCK_WAIT_MS = 50  # how long one attempt waits for a lock before failing


def batch(call_id: str) -> list[Record]:
    at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    return [
        CallOpened(call_id, f"ext-{call_id}", at, "audiofork", 8000, 2, f"{call_id}.wav",
                   (("customer", 0), ("agent", 1))),
        TraceAdded(call_id, 0, "connected", at),
    ]  # fmt: skip


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def impatient_engine(url: str) -> Engine:
    """An engine whose statements give up on a held lock after LOCK_WAIT_MS."""
    if make_url(url).get_backend_name() == "sqlite":
        return db.make_engine(url, sqlite_busy_timeout_ms=LOCK_WAIT_MS)
    return create_engine(
        url, pool_pre_ping=True, connect_args={"options": f"-c lock_timeout={LOCK_WAIT_MS}"}
    )


@contextmanager
def write_lock_held(url: str) -> Iterator[Callable[[], None]]:
    """Another client holds the lock our INSERTs need; yields a function that releases it."""
    parsed = make_url(url)
    conn: sqlite3.Connection | psycopg.Connection[tuple[object, ...]]
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        conn = sqlite3.connect(parsed.database, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")  # SQLite's single write lock
    else:
        conn = psycopg.connect(_libpq_url(url))
        conn.execute("LOCK TABLE calls IN EXCLUSIVE MODE")  # blocks writers, not readers
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            conn.rollback()

    try:
        yield release
    finally:
        release()
        conn.close()


def test_apply_retries_until_the_lock_is_released(db_url: str) -> None:
    db.upgrade(db_url)
    repo = Repository(impatient_engine(db_url), retry_delays_s=[0.1] * 30)
    try:
        with write_lock_held(db_url) as release:
            timer = threading.Timer(0.6, release)
            timer.start()
            started = time.monotonic()
            repo.apply(batch("c1"))
            waited = time.monotonic() - started
            timer.join()
        # Each attempt fails after ~50 ms, so only retrying can have carried it past 0.6 s.
        assert waited >= 0.5
        call = repo.get_call("c1")
        assert call is not None and [t.kind for t in call.trace] == ["connected"]
    finally:
        repo.close()


def test_apply_reports_unavailable_when_retries_run_out(db_url: str) -> None:
    db.upgrade(db_url)
    repo = Repository(impatient_engine(db_url), retry_delays_s=[0.05, 0.05])
    try:
        with write_lock_held(db_url):
            with pytest.raises(StorageUnavailable, match="after 3 attempts") as info:
                repo.apply(batch("c1"))
        assert isinstance(info.value.__cause__, OperationalError)
        assert repo.get_call("c1") is None  # nothing half-written
        repo.apply(batch("c1"))  # the same batch goes through once the lock is gone
        assert repo.get_call("c1") is not None
    finally:
        repo.close()


@pytest.mark.postgres
def test_pooled_connections_killed_by_the_server_are_replaced(
    pg_server_url: str, pg_database_url: str
) -> None:
    # What a PostgreSQL restart or failover does to the pool. No retries here, and reads never
    # retry: only pool_pre_ping (checking a pooled connection before use) can hide it.
    repo = Repository(db.make_engine(pg_database_url), retry_delays_s=())
    try:
        repo.upgrade()
        repo.apply(batch("c1"))
        name = make_url(pg_database_url).database
        with psycopg.connect(_libpq_url(pg_server_url), autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()) AS t",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1  # the pooled connection was there
        assert [c.call_id for c in repo.list_calls()] == ["c1"]
        repo.apply(batch("c2"))
        assert [c.call_id for c in repo.list_calls()] == ["c2", "c1"]  # same start: by id
    finally:
        repo.close()
