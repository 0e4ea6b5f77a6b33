"""Engines, write transactions and schema migrations for callwatch's SQL database.

This module owns how callwatch talks to a database before any query is written:

* `make_engine(url)` builds an engine for the two supported backends. SQLite (the default) is
  set up on every new DB-API connection by a `connect` listener: WAL journal, the configured
  `synchronous` level, a busy timeout and foreign keys on. PostgreSQL (`postgresql+psycopg://`)
  gets `pool_pre_ping` so a restarted server is not reported as a failed first query.
* `write_transaction(engine)` is the one way writes open a transaction; on SQLite it takes the
  write lock up front (`BEGIN IMMEDIATE`) so waiting for another writer happens under the busy
  timeout instead of failing at the first INSERT.
* `upgrade(target)` runs `alembic upgrade head` programmatically with the migrations shipped in
  this package (no alembic.ini). The application calls it at every start.
* `schema_diffs(engine)` compares the live schema with the ORM models (used by tests, and
  usable as a start-up self-check).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from storage.errors import MigrationError, StorageError, StorageUnavailable
from storage.models import Base

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
SQLITE_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

# Execution option read by the SQLite `begin` listener: which BEGIN variant to emit.
_SQLITE_BEGIN_OPTION = "callwatch_sqlite_begin"
# Any constant works; it only has to be the same in every callwatch process sharing a database.
_PG_MIGRATION_LOCK_ID = 0x63616C6C  # "call"


def make_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    sqlite_busy_timeout_ms: int = 5000,
    echo: bool = False,
) -> Engine:
    """An engine for `url` (`sqlite:///path.db` or `postgresql+psycopg://...`).

    `sqlite_synchronous` and `sqlite_busy_timeout_ms` only apply to SQLite. For a file
    database the parent directory is created, as SQLite itself refuses a missing directory.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(f"url: backend {backend!r} is not supported, use sqlite or postgresql")
    level = sqlite_synchronous.upper()
    if level not in SQLITE_SYNCHRONOUS_LEVELS:
        raise ValueError(
            f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS_LEVELS}, "
            f"got {sqlite_synchronous!r}"
        )
    if sqlite_busy_timeout_ms < 0:
        raise ValueError(f"sqlite_busy_timeout_ms must be >= 0, got {sqlite_busy_timeout_ms}")

    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, echo=echo)

    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, echo=echo)
    _configure_sqlite(engine, level, sqlite_busy_timeout_ms)
    return engine


def _configure_sqlite(engine: Engine, synchronous: str, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module: its legacy mode only begins before DML, so
        # reads would not be repeatable and DDL would autocommit (see SQLAlchemy's SQLite docs).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # First, so that even switching to WAL waits for a writer in another connection.
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            # WAL: readers (API, board) never block the writer thread and vice versa.
            _enable_wal(cursor, busy_timeout_ms / 1000)
            # FULL syncs the WAL at each commit (survives power loss); NORMAL may lose the last
            # commits on power loss but never on a process crash (RELIABILITY.md §5.2).
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            # Off by default in SQLite; without it ON DELETE CASCADE and FKs are not enforced.
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _enable_wal(cursor: Any, timeout_s: float) -> None:
    # WAL is a property of the database file, so only the first connection ever switches it.
    # That switch needs an exclusive lock and SQLite answers SQLITE_BUSY at once, without the
    # busy handler, when another connection opening the new file holds a lock (deadlock
    # avoidance). Hence our own wait, bounded by the same busy timeout.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
            continue
        if mode not in ("wal", "memory"):  # in-memory databases cannot use WAL, and need not
            raise StorageError(f"SQLite refused WAL journal mode (stays {mode!r})")
        return


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that commits on success and rolls back on error.

    On SQLite the transaction starts with `BEGIN IMMEDIATE`: a deferred transaction that reads
    first and writes later can fail with SQLITE_BUSY at once when another writer committed in
    between, whereas taking the lock at BEGIN waits up to the busy timeout.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn


def alembic_config() -> Config:
    """An Alembic config for the migrations in this package, without any ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Explicit, so Alembic does not warn about the legacy space/comma path splitting.
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for a database never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(target: Engine | str) -> None:
    """Migrate the database to the head revision (a no-op when it is already there).

    Safe to call from several processes starting at once: the whole upgrade runs in one
    transaction that first takes a lock (an advisory lock on PostgreSQL, the write lock on
    SQLite), so the second process finds the schema already at head. Raises
    `StorageUnavailable` when the database cannot be reached, `MigrationError` otherwise.
    """
    engine = make_engine(target) if isinstance(target, str) else target
    cfg = alembic_config()
    try:
        with write_transaction(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK_ID})")
            # env.py runs the migrations on this connection, inside this transaction.
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except CommandError as exc:
        raise MigrationError(
            f"cannot upgrade {engine.url.render_as_string(hide_password=True)} to "
            f"{head_revision()}: {exc} (is the database newer than this callwatch?)"
        ) from exc
    except OperationalError as exc:
        raise StorageUnavailable(
            f"cannot reach {engine.url.render_as_string(hide_password=True)} to migrate: {exc}"
        ) from exc
    except SQLAlchemyError as exc:
        raise MigrationError(
            f"upgrade of {engine.url.render_as_string(hide_password=True)} failed: {exc}"
        ) from exc
    finally:
        if isinstance(target, str):
            engine.dispose()


def schema_diffs(engine: Engine, metadata: MetaData = Base.metadata) -> list[Any]:
    """Differences between the live schema and `metadata` (the ORM models by default), as
    alembic autogenerate sees them (tables, columns, types, nullability, indexes, unique
    constraints, foreign keys); empty when they agree."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))
