"""The repository: the one door to the call database for the rest of callwatch.

It owns the write path (`apply` a batch of `storage.records` in one transaction, retried on
transient errors and idempotent for a retried batch; the batch itself is validated and written
by `storage/batches.py`), the doors to alerts and the webhook outbox (`storage/alerts.py`) and
the read sessions. The read queries over calls (active calls for crash recovery, the call list
with filters and transcript search, one call in detail) are `CallQueries` in
`storage/call_queries.py`, part of this class. Results are frozen dataclasses in storage's own
vocabulary; ORM objects never leave the storage package.

Threading: `apply` blocks and is meant for the storage writer thread, never the event loop.
Every method opens its own connection or session (one per unit of work), so one `Repository`
may be shared by the writer thread and request handlers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import Session

from storage import alerts, batches, db, nodes
from storage.call_queries import MAX_LIST_LIMIT, CallQueries
from storage.errors import BatchRejected, StorageError, StorageUnavailable
from storage.models import (
    AlertInfo,
    CallDetail,
    CallSummary,
    OutboxInfo,
    PartyInfo,
    SegmentInfo,
    TraceInfo,
)
from storage.records import ALERT_STATES, AlertChanged, Record

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


class Repository(CallQueries):
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
        batches.validate(records)
        last: OperationalError | None = None
        for attempt in range(len(self._retry_delays_s) + 1):
            if attempt:
                time.sleep(self._retry_delays_s[attempt - 1])
            try:
                with db.write_transaction(self._engine) as conn:
                    batches.write(conn, records)
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
