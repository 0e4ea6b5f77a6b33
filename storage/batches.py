"""A batch of write records into the call database: validation, then one multi-row statement per
run of records of one kind.

`validate` refuses, before the database is touched, what would store wrong data or fail late
(a naive time, a document JSON cannot hold, a channel outside the call). `write` runs inside
the transaction `Repository.apply` opens and retries; every insert skips rows whose key
already exists, so a retried batch whose commit was in fact made changes nothing. The
analysis and alert records are written by `storage.analysis` and `storage.alerts`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, update
from sqlalchemy.dialects import postgresql, sqlite

from storage import alerts, analysis
from storage.errors import BatchRejected
from storage.models import Base
from storage.records import (
    AlertChanged,
    AlertRaised,
    CallClosed,
    CallEnded,
    CallOpened,
    CallScored,
    FindingAdded,
    ReadingAdded,
    Record,
    ResultSaved,
    SegmentAdded,
    TraceAdded,
)

_CALLS: Table = Base.metadata.tables["calls"]
_PARTIES: Table = Base.metadata.tables["parties"]
_SEGMENTS: Table = Base.metadata.tables["segments"]
_TRACE: Table = Base.metadata.tables["trace_events"]
_CLOSED_STATUSES = ("completed", "interrupted")


def validate(records: Sequence[Record]) -> None:
    """Refuse, before touching the database, what would store wrong data or fail late."""
    for i, rec in enumerate(records):
        problem = _problem(rec)
        if problem:
            raise BatchRejected(f"records[{i}]{problem}")


def _problem(rec: Record) -> str | None:
    times: dict[str, datetime] = {}
    documents: dict[str, dict[str, Any]] = {}
    if isinstance(rec, CallOpened):
        times["started_at"], documents["metadata"] = rec.started_at, rec.metadata
        for party, channel in rec.parties:
            if not 0 <= channel < rec.channels:
                return f".parties: channel {channel} of {party!r} is outside 0..{rec.channels - 1}"
    elif isinstance(rec, TraceAdded):
        times["at"], documents["data"] = rec.at, rec.data
    elif isinstance(rec, CallClosed | CallEnded):
        times["ended_at"] = rec.ended_at
        if rec.status not in _CLOSED_STATUSES:
            return f".status must be one of {_CLOSED_STATUSES}, got {rec.status!r}"
    elif isinstance(rec, SegmentAdded):
        if not 0 <= rec.start_ms <= rec.end_ms:
            return f": need 0 <= start_ms <= end_ms, got {rec.start_ms}..{rec.end_ms}"
    elif isinstance(rec, _ANALYSIS_RECORDS):
        documents.update(analysis.documents(rec))
        if found := analysis.problem(rec):
            return found
    elif isinstance(rec, AlertRaised | AlertChanged):
        documents.update(alerts.documents(rec))
        if found := alerts.problem(rec):
            return found
    else:
        return f" is not a storage record: {type(rec).__name__}"
    for name, value in times.items():
        if value.utcoffset() is None:
            return f".{name} must be timezone-aware, got {value}"
    for name, document in documents.items():
        try:
            # The JSON columns would fail on it mid-transaction, on PostgreSQL unwrapped.
            json.dumps(document)
        except (TypeError, ValueError) as exc:
            return f".{name} cannot be stored as JSON: {exc}"
    return None


def write(conn: Connection, records: Sequence[Record]) -> None:
    # Consecutive records of one kind become one multi-row statement; the order between kinds
    # is kept, so a call is inserted before its segments and closed after them.
    for kind, group in itertools.groupby(records, key=type):
        run = list(group)
        if kind is CallOpened:
            opened = [r for r in run if isinstance(r, CallOpened)]
            _insert_new(conn, _CALLS, ["id"], [_call_row(r) for r in opened])
            party_rows = [
                {"call_id": r.call_id, "party": party, "channel": channel, "samples": None}
                for r in opened
                for party, channel in r.parties
            ]
            _insert_new(conn, _PARTIES, ["call_id", "party"], party_rows)
        elif kind is SegmentAdded:
            _insert_new(
                conn,
                _SEGMENTS,
                ["call_id", "party", "start_ms", "end_ms"],
                [_segment_row(r) for r in run if isinstance(r, SegmentAdded)],
            )
        elif kind is TraceAdded:
            _insert_new(
                conn,
                _TRACE,
                ["call_id", "seq"],
                [_trace_row(r) for r in run if isinstance(r, TraceAdded)],
            )
        elif kind in _ANALYSIS_RECORDS:
            analysis.write(conn, run, _insert_new)
        elif kind is AlertRaised or kind is AlertChanged:
            alerts.write(conn, run)
        else:
            for rec in run:
                if isinstance(rec, CallClosed | CallEnded):
                    _close_call(conn, rec)


def _insert_new(conn: Connection, table: Table, key: list[str], rows: list[dict[str, Any]]) -> None:
    """INSERT rows, skipping those whose `key` already exists (a retried batch)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(index_elements=key), rows)
    else:
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(index_elements=key), rows)


def _close_call(conn: Connection, rec: CallClosed | CallEnded) -> None:
    # CallEnded (hang-up) and the CallClosed after the verdict write the same values.
    result = conn.execute(
        update(_CALLS)
        .where(_CALLS.c.id == rec.call_id)
        .values(
            status=rec.status,
            ended_at=rec.ended_at,
            end_reason=rec.end_reason,
            duration_ms=rec.duration_ms,
            recording_frames=rec.recording_frames,
        )
    )
    if result.rowcount == 0:
        raise BatchRejected(f"CallClosed for unknown call {rec.call_id!r}")
    for party, samples in rec.party_samples.items():
        result = conn.execute(
            update(_PARTIES)
            .where(_PARTIES.c.call_id == rec.call_id, _PARTIES.c.party == party)
            .values(samples=samples)
        )
        if result.rowcount == 0:
            raise BatchRejected(f"CallClosed of {rec.call_id!r} names unknown party {party!r}")


# Record fields copied as is into columns of the same name.
_CALL_FIELDS = (
    "external_id", "protocol", "started_at", "sample_rate", "channels", "recording_path",
    "agent_id", "queue", "caller", "callee", "node",
)  # fmt: skip
_CALL_UNSET = (
    "ended_at", "end_reason", "duration_ms", "recording_frames", "score", "grade",
    "quality_score", "compliance_score",
)  # fmt: skip
_ANALYSIS_RECORDS = (ReadingAdded, FindingAdded, ResultSaved, CallScored)
_SEGMENT_FIELDS = (
    "call_id", "party", "start_ms", "end_ms", "text", "language", "confidence", "latency_ms",
    "late",
)  # fmt: skip
_TRACE_FIELDS = ("call_id", "seq", "kind", "at", "media_ms", "party", "data")


def _call_row(rec: CallOpened) -> dict[str, Any]:
    row = {name: getattr(rec, name) for name in _CALL_FIELDS} | dict.fromkeys(_CALL_UNSET)
    return row | {"id": rec.call_id, "status": "active", "metadata": rec.metadata}


def _segment_row(rec: SegmentAdded) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in _SEGMENT_FIELDS}


def _trace_row(rec: TraceAdded) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in _TRACE_FIELDS}
