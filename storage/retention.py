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

Several gateway nodes (scale-out, `node` given) each keep their calls' recordings on their
own disk, and one database. So each node deletes the files of its *own* expired calls
(`calls.node`) and records it with the call's `recording` tombstone; the rows are deleted by
whichever node holds the retention lock (`rows=True`), and of another node's calls only those
whose recording its owner has already deleted: a row is never deleted while its file may
still be on a disk that nobody would look at again. Rows of no node (single box, or written
before scale-out) are handled whole by the lock holder, as on a single box.
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
    node: str | None = None,
    rows: bool = True,
) -> RetentionReport:
    """One retention pass at wall time `now` (tests pass a clock well in the future).
    `node`: this gateway node's name (scale-out; see the module docstring): its own expired
    recordings are deleted, and with `rows` (the retention lock's holder) the rows that may
    go. Without `node` every call is this process's (a single box)."""
    calls = recordings = files = held = 0
    owner = _CALLS.c.node
    for queue, rule in _rules(default, queues):
        in_queue = (
            _CALLS.c.queue.is_(None) | _CALLS.c.queue.not_in(list(queues))
            if queue is None
            else _CALLS.c.queue == queue
        )
        whole_cut = now - timedelta(days=rule.days) if rule.days > 0 else None
        rec_days = rule.recording_days if rule.days <= 0 else min(rule.recording_days, rule.days)
        rec_cut = now - timedelta(days=rec_days) if rule.recording_days > 0 else None
        if node is not None:
            # This node's own files, whether the call or only its recording expires.
            for cut in {c for c in (whole_cut, rec_cut) if c is not None}:
                n, f, h = _expire(engine, recordings_dir, in_queue & (owner == node), cut,
                                  whole=False, batch=batch, now=now)  # fmt: skip
                # (held calls are counted by the rows pass when this node runs it too)
                recordings, files, held = recordings + n, files + f, held + (0 if rows else h)
            if not rows:
                continue
        # Rows (and the files of calls of no node): another node's call only once its owner
        # deleted its recording (tombstoned above, on that node).
        mine = owner.is_(None) if node is None else owner.is_(None) | (owner == node)
        deletable = None if node is None else mine | exists().where(*_recording_gone())
        if whole_cut is not None:
            where = in_queue if deletable is None else in_queue & deletable
            n, f, h = _expire(engine, recordings_dir, where, whole_cut, whole=True, batch=batch,
                              now=now)  # fmt: skip
            calls, files, held = calls + n, files + f, held + h
        if rec_cut is not None:
            where = in_queue if node is None else in_queue & owner.is_(None)
            n, f, h = _expire(engine, recordings_dir, where, rec_cut, whole=False, batch=batch,
                              now=now)  # fmt: skip
            recordings, files, held = recordings + n, files + f, held + h
    return RetentionReport(now, calls, recordings, files, held)


def _recording_gone() -> tuple[ColumnElement[bool], ...]:
    """The call's recording was deleted (its `recording` tombstone)."""
    return (_TOMBS.c.call_ref == _CALLS.c.id, _TOMBS.c.scope == "recording")


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
        old = old & ~exists().where(*_recording_gone())
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
