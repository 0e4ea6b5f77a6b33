"""Retention (issue 18 item 5, RELIABILITY.md §10 P6) on SQLite and PostgreSQL: calls past
their queue's period are deleted with everything derived from them, recordings alone after
`recording_days`, a tombstone remains, legal holds and running calls are kept; the server
task and `callwatch retention run` do the same pass."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from config.settings import load_settings
from monitor.cli import main as cli_main
from monitor.runtime.retention import RetentionTask, privacy_store, retention_pass
from storage.records import FindingAdded, ReadingAdded, TraceAdded
from storage.repository import Repository
from storage.search import CallQuery
from tests.api_data import DAY, seed, write_wav
from tests.fixtures_api import ApiHarness

PER_CALL_TABLES = ("segments", "parties", "trace_events", "quality_readings", "findings",
                   "call_results", "alerts", "webhook_outbox", "qa_reviews")  # fmt: skip


def _seed_all(repo: Repository, recordings: Path) -> None:
    seed(repo, recordings)
    for call_id in ("c2", "c3", "c5"):
        write_wav(recordings / f"2026/11/20/{call_id}.wav", 0.5)
    repo.apply(
        [ReadingAdded(c, "customer", 0, 0, 2000, {"snr_db": 20.0}) for c in ("c1", "c2", "c5")]
        + [FindingAdded(c, 0, "quality", "dead_air", "minor", None, 0, 1000, {}) for c in
           ("c1", "c2")]
        + [TraceAdded(c, repo.next_trace_seq(c), "words", DAY, 0, "customer",
                      {"words": [["refund", 0, 400]]}) for c in ("c1", "c2")]
    )  # fmt: skip


def _count(repo: Repository, table: str, call_id: str) -> int:
    with repo.engine.connect() as conn:
        if table == "webhook_outbox":
            sql = "SELECT count(*) FROM webhook_outbox o JOIN alerts a ON a.id = o.alert_id " \
                  "WHERE a.call_id = :c"  # fmt: skip
        else:
            sql = f"SELECT count(*) FROM {table} WHERE call_id = :c"
        return int(conn.execute(text(sql), {"c": call_id}).scalar_one())


def test_p6_calls_past_30_days_are_gone_held_and_running_calls_stay(
    repo: Repository, tmp_path: Path
) -> None:
    settings = load_settings(env={}, data_dir=tmp_path, retention={"days": 30})
    _seed_all(repo, settings.recordings_dir)
    store = privacy_store(settings, repo.engine)
    assert store.set_hold("c2", reason="dispute", actor="admin1", at=DAY)
    assert {c.call_id for c in repo.search_calls(CallQuery(text="refund"))[0]} == {"c1", "c5"}
    # Day 29 after the newest calls: only c5 (a month older) is past its age.
    r = retention_pass(settings, repo.engine, DAY + timedelta(days=29))
    assert (r.calls_deleted, r.held_skipped) == (1, 0)
    assert repo.get_call("c5") is None and repo.get_call("c1") is not None

    r = retention_pass(settings, repo.engine, DAY + timedelta(days=31))  # the fake clock
    assert (r.calls_deleted, r.held_skipped, r.files_removed) == (2, 1, 2)  # c1, c3; c2 held
    for gone in ("c1", "c3", "c5"):
        assert repo.get_call(gone) is None
        assert all(_count(repo, t, gone) == 0 for t in PER_CALL_TABLES), gone
        assert store.deleted(gone) is not None  # the tombstone
        assert not (settings.recordings_dir / f"2026/11/20/{gone}.wav").exists()
    assert repo.search_calls(CallQuery(text="refund"))[0] == []  # search entries too
    # The held call of the same age and the running one are untouched.
    held = repo.get_call("c2")
    assert held is not None and len(held.segments) == 2 and _count(repo, "findings", "c2") == 1
    assert (settings.recordings_dir / "2026/11/20/c2.wav").exists()
    assert repo.get_call("c4") is not None and repo.get_call("c4").status == "active"  # type: ignore[union-attr]
    with repo.engine.connect() as conn:
        rows = conn.execute(text("SELECT call_ref, scope, reason, actor FROM tombstones")).all()
    assert sorted(tuple(r) for r in rows) == [
        ("c1", "call", "retention", "retention"),
        ("c3", "call", "retention", "retention"),
        ("c5", "call", "retention", "retention"),
    ]
    # Lifting the hold lets the next pass take it.
    assert store.clear_hold("c2")
    assert retention_pass(settings, repo.engine, DAY + timedelta(days=31)).calls_deleted == 1


def test_recording_days_and_queue_overrides(api: ApiHarness) -> None:
    settings = load_settings(
        env={}, data_dir=api.settings.data_dir,
        retention={"days": 0, "recording_days": 0,
                   "queues": {"billing": {"days": 365, "recording_days": 7},
                              "cards": {"recording_days": 10}}},
    )  # fmt: skip
    _seed_all(api.repo, settings.recordings_dir)
    r = retention_pass(settings, api.repo.engine, DAY + timedelta(days=8))
    # billing: c1, c3 (a week old) and c5 lose their recordings; cards' c2 is 8 days old.
    assert (r.calls_deleted, r.recordings_deleted, r.files_removed) == (0, 3, 3)
    assert not (settings.recordings_dir / "2026/11/20/c1.wav").exists()
    assert (settings.recordings_dir / "2026/11/20/c2.wav").exists()
    call = api.repo.get_call("c1")
    assert call is not None and len(call.segments) == 2  # the transcript stays a year
    qa = api.headers("qa")
    assert api.client.get("/api/calls/c1/recording", headers=qa).status_code == 410
    assert api.client.get("/api/calls/c2/recording", headers=qa).status_code == 206  # played
    # A second pass finds nothing new: tombstoned recordings are not counted again.
    r = retention_pass(settings, api.repo.engine, DAY + timedelta(days=8))
    assert (r.calls_deleted, r.recordings_deleted) == (0, 0)
    assert (
        retention_pass(settings, api.repo.engine, DAY + timedelta(days=11)).recordings_deleted == 1
    )
    # The admin route runs the same pass with the server's settings (nothing set: no-op).
    r2 = api.client.post("/api/admin/retention/run", headers=api.headers("admin"))
    assert r2.status_code == 200 and r2.json()["calls_deleted"] == 0
    assert api.client.post("/api/admin/retention/run", headers=qa).status_code == 403


def test_server_task_and_cron_command(tmp_path: Path) -> None:
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'callwatch.db'}")
    repo.upgrade()
    settings = load_settings(env={}, data_dir=tmp_path, retention={"days": 30})
    _seed_all(repo, settings.recordings_dir)

    async def run_task() -> None:
        task = RetentionTask(settings, repo.engine, clock=lambda: DAY + timedelta(days=29))
        task.start()
        for _ in range(200):
            if task.last is not None:
                break
            await asyncio.sleep(0.02)
        await task.stop()
        assert task.last is not None and task.last.calls_deleted == 1  # c5

    asyncio.run(run_task())
    assert repo.get_call("c5") is None and repo.get_call("c1") is not None
    cfg = tmp_path / "cw.toml"
    cfg.write_text("[retention]\ndays = 1\n")
    assert cli_main(["retention", "run", "--config", str(cfg), "--data-dir", str(tmp_path)]) == 0
    assert repo.get_call("c1") is None and repo.get_call("c4") is not None  # c4 is running
    repo.close()
