"""Schema and engine tests on real databases: migrations create exactly what the models
describe, upgrades are idempotent and safe to race, SQLite connections get their pragmas."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Column, Integer, MetaData, inspect, text

from storage import db
from storage.errors import MigrationError, StorageUnavailable
from storage.models import Base

TABLES = {"calls", "parties", "segments", "trace_events", "alerts", "webhook_outbox"}


def test_upgrade_creates_the_schema_the_models_describe(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision() == "0009_id_blocks"
        assert TABLES <= set(inspect(engine).get_table_names())
        assert db.schema_diffs(engine) == []
    finally:
        engine.dispose()


def test_schema_comparison_is_not_vacuous(db_url: str) -> None:
    # The agreement test above is only worth something if a real drift shows up as a diff.
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        drifted = MetaData(naming_convention=Base.metadata.naming_convention)
        for table in Base.metadata.sorted_tables:
            table.to_metadata(drifted)
        drifted.tables["calls"].append_column(Column("talk_ratio", Integer, nullable=True))
        diffs = db.schema_diffs(engine, drifted)
        assert [d[0] for d in diffs] == ["add_column"]
        assert diffs[0][3].name == "talk_ratio"
    finally:
        engine.dispose()


def test_important_indexes_exist(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        insp = inspect(engine)
        call_indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("calls")}
        for column in ("status", "agent_id", "queue", "caller", "external_id"):
            assert (column, "started_at") in call_indexes
        assert ("started_at",) in call_indexes
        segment_indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("segments")}
        assert ("call_id", "start_ms") in segment_indexes
        assert insp.get_pk_constraint("trace_events")["constrained_columns"] == ["call_id", "seq"]
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    db.upgrade(db_url)
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert versions == [("0009_id_blocks",)]
    finally:
        engine.dispose()


def test_concurrent_upgrades_at_start_both_succeed(db_url: str) -> None:
    # Two app instances starting together against one fresh database.
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def start() -> None:
        try:
            barrier.wait()
            db.upgrade(db_url)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    engine = db.make_engine(db_url)
    try:
        assert db.current_revision(engine) == db.head_revision()
        assert db.schema_diffs(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_everything_and_upgrade_restores_it(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        cfg = db.alembic_config()
        with db.write_transaction(engine) as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        db.upgrade(engine)
        assert db.schema_diffs(engine) == []
    finally:
        engine.dispose()


def test_database_from_a_newer_callwatch_is_refused(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
        with pytest.raises(MigrationError, match="0099_future"):
            db.upgrade(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(("level", "expected"), [("FULL", 2), ("NORMAL", 1)])
def test_sqlite_connections_get_wal_and_pragmas(tmp_path: Path, level: str, expected: int) -> None:
    path = tmp_path / "nested" / "dir" / "cw.db"  # missing directories are created
    engine = db.make_engine(
        f"sqlite:///{path}", sqlite_synchronous=level, sqlite_busy_timeout_ms=1234
    )
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragma == {
            "journal_mode": "wal",
            "synchronous": expected,
            "busy_timeout": 1234,
            "foreign_keys": 1,
        }
        assert path.exists()
    finally:
        engine.dispose()


def test_sqlite_transactions_are_real_so_a_failed_migration_leaves_no_trace(
    tmp_path: Path,
) -> None:
    # sqlite3's legacy mode would autocommit DDL; our BEGIN makes it roll back.
    engine = db.make_engine(f"sqlite:///{tmp_path / 'cw.db'}")
    try:
        with pytest.raises(RuntimeError), db.write_transaction(engine) as conn:
            conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
            raise RuntimeError("migration step failed")
        assert "scratch" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_upgrade_of_an_unreachable_server_says_so() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(StorageUnavailable, match="cannot reach"):
        db.upgrade("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_make_engine_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend 'mysql'"):
        db.make_engine("mysql://localhost/x")
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        db.make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="SOMETIMES")
