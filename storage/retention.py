"""Retention: deleting calls and recordings past their age (GDPR Art. 5(1)(e), PIPL Art. 19).

This module owns the retention pass. Each queue has a rule (`[retention]` and its
`queues` overrides in config/settings.py): `days` for the call and all that is stored about
it (transcript segments, which are also the search entries, trace, readings, findings,
results, alerts, reviews), `recording_days` for the recording alone. 0 means forever. Age
is counted from the call's start; running calls and calls under legal hold are never
touched. Every deletion leaves a tombstone (call id, scope, time, basis, actor) and no
personal data.

Files go before rows, as in erasure (storage/privacy.py): a crash between the two leaves
rows whose recording is missing, and the next pass deletes them; never an orphaned file.
A pass deletes at most `batch` calls per transaction so it never holds the write lock long.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, Engine, Table, exists, func, select

from storage import db
from storage.models import Call, LegalHold, Tombstone
from storage.privacy import delete_calls, remove_recording_files, tombstone

_CALLS: Table = Call.__table__  # type: ignore[assignment]
_HOLDS: Table = LegalHold.__table__  # type: ignore[assignment]
_TOMBS: Table = Tombstone.__table__  # type: ignore[assignment]
ACTOR = "retention"


@dataclass(frozen=True, slots=True)
class Rule:
    """Days to keep (0 = forever): the call, and its recording (0 = as long as the call)."""

    days: float = 0.0
    recording_days: float = 0.0


@dataclass(frozen=True, slots=True)
class RetentionReport:
    ran_at: datetime
    calls_deleted: int
    recordings_deleted: int
    files_removed: int
    held_skipped: int  # past their age but under legal hold


def run_retention(
    engine: Engine,
    recordings_dir: Path,
    *,
    default: Rule,
    queues: Mapping[str, Rule],
    now: datetime,
    batch: int = 500,
) -> RetentionReport:
    """One retention pass at wall time `now` (tests pass a clock well in the future)."""
    calls = recordings = files = held = 0
    for queue, rule in _rules(default, queues):
        in_queue = (
            _CALLS.c.queue.is_(None) | _CALLS.c.queue.not_in(list(queues))
            if queue is None
            else _CALLS.c.queue == queue
        )
        if rule.days > 0:
            n, f, h = _expire(engine, recordings_dir, in_queue, now - timedelta(days=rule.days),
                              whole=True, batch=batch, now=now)  # fmt: skip
            calls, files, held = calls + n, files + f, held + h
        rec_days = rule.recording_days if rule.days <= 0 else min(rule.recording_days, rule.days)
        if rule.recording_days > 0:
            n, f, h = _expire(engine, recordings_dir, in_queue, now - timedelta(days=rec_days),
                              whole=False, batch=batch, now=now)  # fmt: skip
            recordings, files, held = recordings + n, files + f, held + h
    return RetentionReport(now, calls, recordings, files, held)


def _rules(default: Rule, queues: Mapping[str, Rule]) -> list[tuple[str | None, Rule]]:
    return [(None, default), *queues.items()]


def _expire(
    engine: Engine,
    recordings_dir: Path,
    in_queue: ColumnElement[bool],
    cutoff: datetime,
    *,
    whole: bool,
    batch: int,
    now: datetime,
) -> tuple[int, int, int]:
    """Delete calls (whole) or recordings started before `cutoff`; (deleted, files, held)."""
    old = (_CALLS.c.started_at < cutoff) & (_CALLS.c.status != "active") & in_queue
    on_hold = exists().where(_HOLDS.c.call_id == _CALLS.c.id)
    if not whole:  # recordings already removed have a tombstone of scope "recording"
        gone = exists().where(_TOMBS.c.call_ref == _CALLS.c.id, _TOMBS.c.scope == "recording")
        old = old & ~gone
    deleted = files = 0
    with engine.connect() as conn:
        held = conn.scalar(select(func.count()).where(old & on_hold)) or 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(_CALLS.c.id, _CALLS.c.recording_path).where(old & ~on_hold).limit(batch)
            ).all()
        if not rows:
            return deleted, files, int(held)
        files += sum(remove_recording_files(recordings_dir, r.recording_path) for r in rows)
        scope = "call" if whole else "recording"
        basis = f"retention: {scope} older than {cutoff.date().isoformat()}"
        with db.write_transaction(engine) as conn:
            if whole:
                delete_calls(conn, [r.id for r in rows])
            for r in rows:
                tombstone(
                    conn, r.id, scope=scope, reason="retention", basis=basis, actor=ACTOR, at=now
                )
        deleted += len(rows)
        if len(rows) < batch:
            return deleted, files, int(held)
