"""The repository: the one door to the call database for the rest of callwatch.

It owns the write path (`apply` a batch of `storage.records` in one transaction, retried on
transient errors and idempotent for a retried batch) and the read queries (active calls for
crash recovery, the call list with filters and transcript search, one call in detail). Results
are frozen dataclasses in storage's own vocabulary; ORM objects never leave this module.

Threading: `apply` blocks and is meant for the storage writer thread, never the event loop.
Every method opens its own connection or session (one per unit of work), so one `Repository`
may be shared by the writer thread and request handlers.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import Session

from storage import alerts, analysis, db, kpis, nodes, search
from storage.errors import BatchRejected, StorageError, StorageUnavailable
from storage.kpis import DayTotals
from storage.models import (
    CALL_STATUSES,
    AlertInfo,
    Base,
    Call,
    CallDetail,
    CallSummary,
    OutboxInfo,
    PartyInfo,
    Segment,
    SegmentInfo,
    TraceEvent,
    TraceInfo,
)
from storage.records import (
    ALERT_STATES,
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
MAX_LIST_LIMIT = 1000

__all__ = [
    "AlertInfo",
    "CallDetail",
    "CallSummary",
    "MAX_LIST_LIMIT",
    "PartyInfo",
    "Repository",
    "SegmentInfo",
    "TraceInfo",
]


class Repository:
    """Writes batches of records and answers queries over calls.

    `retry_delays_s` are the waits between attempts of `apply` after an `OperationalError`
    (database locked, connection lost); one more attempt than there are delays is made.
    """

    def __init__(self, engine: Engine, *, retry_delays_s: Sequence[float] = (0.1, 0.5, 2.0)):
        if any(delay < 0 for delay in retry_delays_s):
            raise ValueError(f"retry_delays_s must not be negative, got {retry_delays_s!r}")
        self._engine = engine
        self._retry_delays_s = tuple(retry_delays_s)
        # Reads see one snapshot across their queries (a call and its rows from the same
        # moment); SQLite's real BEGIN already gives that. Same pool, other option.
        pg = engine.dialect.name == "postgresql"
        self._reader = engine.execution_options(isolation_level="REPEATABLE READ") if pg else engine

    @classmethod
    def from_url(cls, url: str, sqlite_synchronous: str = "FULL") -> Repository:
        return cls(db.make_engine(url, sqlite_synchronous=sqlite_synchronous))

    @property
    def engine(self) -> Engine:
        return self._engine

    def upgrade(self) -> None:
        """Migrate the schema to head; the application does this at every start."""
        db.upgrade(self._engine)

    def close(self) -> None:
        """Close pooled connections (the engine stays usable and reconnects on demand)."""
        self._engine.dispose()

    # -- writes -----------------------------------------------------------------------------

    def apply(self, records: Sequence[Record]) -> None:
        """Write `records` in one transaction, in order.

        Raises `BatchRejected` (permanent: invalid record, unknown call, constraint violated)
        or `StorageUnavailable` (transient errors outlasted the retries). Re-applying a batch
        that was in fact committed (a commit whose acknowledgement was lost) changes nothing:
        existing calls, parties, trace rows (call_id, seq) and segments (same party and span)
        are skipped, and closing a call twice writes the same values.
        """
        if not records:
            return
        _validate(records)
        last: OperationalError | None = None
        for attempt in range(len(self._retry_delays_s) + 1):
            if attempt:
                time.sleep(self._retry_delays_s[attempt - 1])
            try:
                with db.write_transaction(self._engine) as conn:
                    _write(conn, records)
                return
            except OperationalError as exc:
                last = exc
            except (IntegrityError, DataError) as exc:
                raise BatchRejected(f"database refused the batch: {exc.orig}") from exc
            except DBAPIError as exc:
                raise StorageError(f"writing the batch failed: {exc.orig}") from exc
            except StatementError as exc:  # a value that could not be bound at all
                raise BatchRejected(f"a record cannot be stored: {exc.orig!r}") from exc
        raise StorageUnavailable(
            f"batch of {len(records)} records not written after "
            f"{len(self._retry_delays_s) + 1} attempts: {last.orig if last else ''}"
        ) from last

    # -- reads ------------------------------------------------------------------------------

    def active_calls(self, node: str | None = None) -> list[CallSummary]:
        """Calls still 'active', oldest first: at start-up these were cut off by a crash.
        With `node` (scale-out), only that node's calls: the others' are alive elsewhere."""
        stmt = select(Call).where(Call.status == "active").order_by(Call.started_at, Call.id)
        if node is not None:
            stmt = stmt.where(Call.node == node)
        with self._session() as session:
            return [_summary(call) for call in session.scalars(stmt)]

    def unfinalised_calls(self, since: datetime, node: str | None = None) -> list[CallSummary]:
        """Calls that ended since `since` but never got their verdict (no `finalised` trace
        entry): a crash came between hang-up and the call's last transcript. With `node`
        (scale-out), only that node's: another node's may still be waiting for transcripts."""
        finalised = select(TraceEvent.call_id).where(
            TraceEvent.call_id == Call.id, TraceEvent.kind == "finalised"
        )
        stmt = (
            select(Call)
            .where(Call.status != "active", Call.ended_at >= since, ~finalised.exists())
            .order_by(Call.started_at, Call.id)
        )
        if node is not None:
            stmt = stmt.where(Call.node == node)
        with self._session() as session:
            return [_summary(call) for call in session.scalars(stmt)]

    def next_trace_seq(self, call_id: str) -> int:
        """The seq the call's next trace row gets: one past the highest stored, 0 if none
        (numbers written by other nodes, `nodes.FOREIGN_SEQ_BASE` up, are not the call's)."""
        stmt = select(func.max(TraceEvent.seq)).where(
            TraceEvent.call_id == call_id, TraceEvent.seq < nodes.FOREIGN_SEQ_BASE
        )
        with self._session() as session:
            highest = session.scalar(stmt)
        return 0 if highest is None else highest + 1

    def list_calls(
        self,
        *,
        text: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
        caller: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[CallSummary]:
        """Calls matching every given filter, newest first.

        `text` is a case-insensitive substring of any transcript segment of the call, matched
        character by character (so Mandarin needs no word segmentation); `%` and `_` in it are
        literal. `since` is inclusive and `until` exclusive, both on `started_at`.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        if status is not None and status not in CALL_STATUSES:
            raise ValueError(f"status must be one of {CALL_STATUSES}, got {status!r}")
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
        stmt = select(Call)
        if text:
            matching = select(Segment.call_id).where(Segment.text.icontains(text, autoescape=True))
            stmt = stmt.where(Call.id.in_(matching))
        for column, wanted in (
            (Call.agent_id, agent),
            (Call.queue, queue),
            (Call.caller, caller),
            (Call.status, status),
        ):
            if wanted is not None:
                stmt = stmt.where(column == wanted)
        if since is not None:
            stmt = stmt.where(Call.started_at >= since)
        if until is not None:
            stmt = stmt.where(Call.started_at < until)
        stmt = stmt.order_by(Call.started_at.desc(), Call.id.desc()).limit(limit)
        with self._session() as session:
            return [_summary(call) for call in session.scalars(stmt)]

    def search_calls(self, query: search.CallQuery) -> tuple[list[CallSummary], int]:
        """One page of calls matching `query` and the total count (see storage/search.py)."""
        with self._session() as session:
            return search.search_calls(session, query)

    def kpis(
        self, *, group_by: str, since: datetime, until: datetime, key: str | None = None
    ) -> list[kpis.GroupKpis]:
        """Per-agent or per-queue KPIs over a period (see storage/kpis.py)."""
        with self._session() as session:
            return kpis.compute(session, group_by=group_by, since=since, until=until, key=key)

    def day_totals(self, since: datetime) -> DayTotals:
        """Finished calls started at or after `since`, totalled in SQL (storage/kpis.py)."""
        with self._session() as session:
            return kpis.day_totals(session, since)

    def get_call(self, call_id: str) -> CallDetail | None:
        """One call with parties, transcript and trace, or None.

        `call_id` may be our id, the switch's external id (the newest call with it wins), or a
        prefix of our id that matches exactly one call (an ambiguous prefix gives None).
        """
        if not call_id:
            return None
        with self._session() as session:
            call = session.get(Call, call_id)
            if call is None:
                call = session.scalars(
                    select(Call)
                    .where(Call.external_id == call_id)
                    .order_by(Call.started_at.desc(), Call.id.desc())
                    .limit(1)
                ).first()
            if call is None:
                # substr, not LIKE: SQLite's LIKE ignores ASCII case and ids are case-sensitive.
                found = session.scalars(
                    select(Call).where(func.substr(Call.id, 1, len(call_id)) == call_id).limit(2)
                ).all()
                call = found[0] if len(found) == 1 else None
            if call is None:
                return None
            segments = session.scalars(
                select(Segment)
                .where(Segment.call_id == call.id)
                .order_by(Segment.start_ms, Segment.party, Segment.id)
            )
            trace = session.scalars(
                select(TraceEvent).where(TraceEvent.call_id == call.id).order_by(TraceEvent.seq)
            )
            return CallDetail(
                **_summary_fields(call),
                metadata=dict(call.metadata_),
                parties=tuple(PartyInfo(p.party, p.channel, p.samples) for p in call.parties),
                segments=tuple(
                    SegmentInfo(
                        s.id,
                        s.party,
                        s.start_ms,
                        s.end_ms,
                        s.text,
                        s.language,
                        s.confidence,
                        s.latency_ms,
                        s.late,
                    )
                    for s in segments
                ),
                trace=tuple(
                    TraceInfo(t.seq, t.kind, t.at, t.media_ms, t.party, dict(t.data)) for t in trace
                ),
            )

    def call_ids_for_external(self, external_id: str) -> list[str]:
        """Our ids of every call with this switch call id, newest first (a switch may reuse
        its ids: the API answers 409 rather than pick one)."""
        with self._session() as session:
            return list(
                session.scalars(
                    select(Call.id)
                    .where(Call.external_id == external_id)
                    .order_by(Call.started_at.desc(), Call.id.desc())
                )
            )

    def get_analysis(self, call_id: str) -> analysis.CallAnalysis:
        """Quality readings, findings and result documents of one call (by our id)."""
        with self._session() as session:
            return analysis.load(session, call_id)

    # -- alerts and the webhook outbox --------------------------------------------------------

    def list_alerts(
        self,
        *,
        call_id: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AlertInfo]:
        """Alerts matching every given filter, newest first (`since` inclusive, `until`
        exclusive, both on `raised_at`)."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        if offset < 0:
            raise ValueError(f"offset must not be negative, got {offset}")
        if state is not None and state not in ALERT_STATES:
            raise ValueError(f"state must be one of {ALERT_STATES}, got {state!r}")
        _check_aware(since=since, until=until)
        with self._session() as session:
            return alerts.list_alerts(
                session,
                call_id=call_id,
                state=state,
                kind=kind,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
            )

    def get_alert(self, alert_id: int) -> AlertInfo | None:
        with self._session() as session:
            return alerts.get_alert(session, alert_id)

    def set_alert_state(
        self,
        alert_id: int,
        state: str,
        *,
        by: str,
        at: datetime,
        call_id: str = "",
        webhooks: Sequence[str] = (),
    ) -> AlertInfo:
        """Move an alert open -> acknowledged -> resolved (or open -> resolved) and queue its
        webhook deliveries in the same transaction; setting the state it already has is a
        no-op. Raises `AlertNotFound` or `InvalidAlertTransition` (both `StorageError`)."""
        rec = AlertChanged(alert_id, call_id, state, by, at, tuple(webhooks))
        if found := alerts.problem(rec):
            raise ValueError(f"AlertChanged{found}")
        alert: AlertInfo = self._in_transaction(lambda conn: alerts.change_state(conn, rec))
        return alert

    def reserve_ids(self, name: str, count: int) -> int:
        """The first of `count` ids of `name` ("alerts") no other process gets (scale-out:
        several nodes on one database); see `storage.nodes.reserve_ids`."""
        return nodes.reserve_ids(self._engine, name, count)

    def foreign_seq(self) -> int:
        """A trace number for an event of a call this node does not own (scale-out); see
        `storage.nodes.foreign_seq`."""
        return nodes.foreign_seq(self._engine)

    def max_alert_id(self) -> int:
        """The highest alert id stored (0 if none): the alert service counts on from it."""
        with self._session() as session:
            return alerts.max_alert_id(session)

    def duration_history(
        self, since: datetime, limit: int = 50_000
    ) -> list[tuple[str | None, str | None, int]]:
        """(queue, agent_id, duration_ms) of completed calls with a queue started since
        `since`, newest first: the history the learned duration baselines come from."""
        _check_aware(since=since)
        with self._session() as session:
            return alerts.duration_history(session, since, limit)

    def due_outbox(self, now: datetime, limit: int = 100) -> list[OutboxInfo]:
        """Pending webhook deliveries whose next attempt is due at `now`, oldest due first."""
        with self._session() as session:
            return alerts.due_outbox(session, now, limit)

    def claim_outbox(self, now: datetime, limit: int, lease_s: float) -> list[OutboxInfo]:
        """Due deliveries, claimed for `lease_s` so no other node sends them meanwhile
        (several nodes on one database each run a delivery task); see `alerts.claim_outbox`."""
        with db.write_transaction(self._engine) as conn:
            return alerts.claim_outbox(conn, now, limit, lease_s)

    def next_outbox_attempt(self) -> datetime | None:
        """When the earliest pending delivery is due (None if nothing is pending)."""
        with self._session() as session:
            return alerts.next_outbox_attempt(session)

    def list_outbox(self, alert_id: int | None = None) -> list[OutboxInfo]:
        with self._session() as session:
            return alerts.list_outbox(session, alert_id)

    def record_outbox_attempt(
        self,
        outbox_id: int,
        *,
        status: str,
        at: datetime,
        next_attempt_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        """Count one delivery attempt: delivered, failed for good, or pending again."""
        self._in_transaction(
            lambda conn: alerts.record_attempt(
                conn, outbox_id, status=status, at=at, next_attempt_at=next_attempt_at,
                error=error,
            )
        )  # fmt: skip

    def _in_transaction(self, work: Any) -> Any:
        try:
            with db.write_transaction(self._engine) as conn:
                return work(conn)
        except OperationalError as exc:
            raise StorageUnavailable(f"database write failed: {exc.orig}") from exc
        except (IntegrityError, DataError) as exc:
            raise BatchRejected(f"database refused the write: {exc.orig}") from exc
        except DBAPIError as exc:
            raise StorageError(f"database write failed: {exc.orig}") from exc

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with Session(self._reader) as session:
                yield session
        except OperationalError as exc:
            raise StorageUnavailable(f"database query failed: {exc.orig}") from exc
        except DBAPIError as exc:
            raise StorageError(f"database query failed: {exc.orig}") from exc


def _check_aware(**values: datetime | None) -> None:
    for name, value in values.items():
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")


def _summary_fields(call: Call) -> dict[str, Any]:
    # CallSummary's fields are the calls columns by name, except our id is `call_id` there.
    return {
        f.name: call.id if f.name == "call_id" else getattr(call, f.name)
        for f in fields(CallSummary)
    }


def summary(call: Call) -> CallSummary:
    """A calls row as the storage dataclass (also used by storage.search)."""
    return CallSummary(**_summary_fields(call))


_summary = summary


def _validate(records: Sequence[Record]) -> None:
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


def _write(conn: Connection, records: Sequence[Record]) -> None:
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
