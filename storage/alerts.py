"""Alerts and their webhook outbox (the tables of migration 0003): writing `AlertRaised` /
`AlertChanged` records, state transitions, queries, and the outbox the delivery task drains.

Kept apart from `repository.py` like `analysis.py`; the repository dispatches the records here
inside its transaction and exposes the reads. The transactional-outbox rule lives here: an
alert row and its outbox rows are inserted in the same transaction, so a crash can never
store an alert without its deliveries, or deliveries of an alert that was not stored.

Idempotence for a retried batch: an alert is keyed by its id and by (call_id, rule); a second
alert for the same call and rule is skipped, and so are its outbox rows. Outbox rows are keyed
by (alert_id, event, target). A state change that is already in place is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.errors import AlertNotFound, BatchRejected, InvalidAlertTransition
from storage.models import AlertInfo, AlertRow, Call, OutboxInfo, WebhookOutboxRow
from storage.records import ALERT_SEVERITIES, ALERT_STATES, AlertChanged, AlertRaised

_ALERTS: Table = AlertRow.__table__  # type: ignore[assignment]
_OUTBOX: Table = WebhookOutboxRow.__table__  # type: ignore[assignment]

#: state -> the states it may move to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("acknowledged", "resolved"),
    "acknowledged": ("resolved",),
    "resolved": (),
}
OUTBOX_STATUSES = ("pending", "delivered", "failed")


def problem(rec: object) -> str | None:
    """Why an alert record cannot be stored, checked before the transaction; None if fine."""
    if isinstance(rec, AlertRaised):
        if rec.severity not in ALERT_SEVERITIES:
            return f".severity must be one of {ALERT_SEVERITIES}, got {rec.severity!r}"
        if not rec.rule or not rec.kind:
            return ": rule and kind must not be empty"
        if rec.raised_at.utcoffset() is None:
            return f".raised_at must be timezone-aware, got {rec.raised_at}"
    if isinstance(rec, AlertChanged):
        if rec.state not in ALERT_STATES[1:]:
            return f".state must be one of {ALERT_STATES[1:]}, got {rec.state!r}"
        if rec.at.utcoffset() is None:
            return f".at must be timezone-aware, got {rec.at}"
    return None


def documents(rec: object) -> dict[str, dict[str, Any]]:
    return {"evidence": rec.evidence} if isinstance(rec, AlertRaised) else {}


def document(alert: AlertInfo) -> dict[str, Any]:
    """The alert as a JSON document (webhook payloads, the live feed): times in ISO 8601."""
    out: dict[str, Any] = {}
    for f in fields(AlertInfo):
        value = getattr(alert, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    result = conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)
    return int(result.rowcount or 0)


def _info(row: Any) -> AlertInfo:
    return AlertInfo(
        **{f.name: getattr(row, f.name) for f in fields(AlertInfo) if f.name != "evidence"},
        evidence=dict(row.evidence),
    )


def _outbox_rows(
    alert_id: int, event: str, targets: Sequence[str], payload: dict[str, Any], at: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "alert_id": alert_id,
            "event": event,
            "target": target,
            "payload": payload,
            "status": "pending",
            "created_at": at,
            "next_attempt_at": at,
            "attempts": 0,
            "last_error": None,
            "delivered_at": None,
        }
        for target in targets
    ]


def write(conn: Connection, run: list[Any]) -> None:
    """Write a run of alert records of one type (called by Repository.apply)."""
    for rec in run:
        if isinstance(rec, AlertRaised):
            raise_alert(conn, rec)
        elif isinstance(rec, AlertChanged):
            change_state(conn, rec)


def raise_alert(conn: Connection, rec: AlertRaised) -> AlertInfo | None:
    row = {
        "id": rec.alert_id,
        "call_id": rec.call_id,
        "rule": rec.rule,
        "kind": rec.kind,
        "severity": rec.severity,
        "state": "open",
        "raised_at": rec.raised_at,
        "media_start_ms": rec.media_start_ms,
        "media_end_ms": rec.media_end_ms,
        "party": rec.party,
        "message": rec.message,
        "evidence": rec.evidence,
        "agent_id": rec.agent_id,
        "queue": rec.queue,
        "acknowledged_by": None,
        "acknowledged_at": None,
        "resolved_by": None,
        "resolved_at": None,
    }
    _insert_ignore(conn, _ALERTS, [row])
    stored = conn.execute(select(_ALERTS).where(_ALERTS.c.id == rec.alert_id)).first()
    if stored is None or stored.call_id != rec.call_id or stored.rule != rec.rule:
        # Skipped: this call already has an alert for this rule (de-duplicated), or the id is
        # taken by another alert (cannot happen with ids from reserved blocks, `id_blocks`).
        return None
    alert = _info(stored)
    payload = {"event": "alert.raised", "alert": document(alert)}
    rows = _outbox_rows(rec.alert_id, "alert.raised", rec.webhooks, payload, rec.raised_at)
    _insert_ignore(conn, _OUTBOX, rows)
    return alert


def change_state(conn: Connection, rec: AlertChanged) -> AlertInfo:
    stored = conn.execute(select(_ALERTS).where(_ALERTS.c.id == rec.alert_id)).first()
    if stored is None:
        raise AlertNotFound(f"no alert with id {rec.alert_id}")
    if stored.state != rec.state:
        if rec.state not in TRANSITIONS[stored.state]:
            raise InvalidAlertTransition(
                f"alert {rec.alert_id} is {stored.state}; it cannot become {rec.state}"
            )
        values: dict[str, Any] = {"state": rec.state}
        if rec.state == "acknowledged":
            values |= {"acknowledged_by": rec.by, "acknowledged_at": rec.at}
        else:
            values |= {"resolved_by": rec.by, "resolved_at": rec.at}
        # The WHERE on the old state makes two racing changes serialise: the loser matches 0.
        result = conn.execute(
            update(_ALERTS)
            .where(_ALERTS.c.id == rec.alert_id, _ALERTS.c.state == stored.state)
            .values(**values)
        )
        if result.rowcount == 0:
            raise InvalidAlertTransition(f"alert {rec.alert_id} changed meanwhile; try again")
        stored = conn.execute(select(_ALERTS).where(_ALERTS.c.id == rec.alert_id)).one()
    alert = _info(stored)
    event = f"alert.{rec.state}"
    payload = {"event": event, "alert": document(alert)}
    _insert_ignore(conn, _OUTBOX, _outbox_rows(rec.alert_id, event, rec.webhooks, payload, rec.at))
    return alert


# -- reads -----------------------------------------------------------------------------------


def list_alerts(
    session: Session,
    *,
    call_id: str | None,
    state: str | None,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> list[AlertInfo]:
    stmt = select(AlertRow)
    for column, wanted in (
        (AlertRow.call_id, call_id),
        (AlertRow.state, state),
        (AlertRow.kind, kind),
    ):
        if wanted is not None:
            stmt = stmt.where(column == wanted)
    if since is not None:
        stmt = stmt.where(AlertRow.raised_at >= since)
    if until is not None:
        stmt = stmt.where(AlertRow.raised_at < until)
    stmt = stmt.order_by(AlertRow.raised_at.desc(), AlertRow.id.desc()).limit(limit).offset(offset)
    return [_info(row) for row in session.scalars(stmt)]


def get_alert(session: Session, alert_id: int) -> AlertInfo | None:
    row = session.get(AlertRow, alert_id)
    return None if row is None else _info(row)


def max_alert_id(session: Session) -> int:
    return int(session.scalar(select(func.max(AlertRow.id))) or 0)


def duration_history(
    session: Session, since: datetime, limit: int
) -> list[tuple[str | None, str | None, int]]:
    """(queue, agent_id, duration_ms) of completed calls started since `since`, newest first."""
    stmt = (
        select(Call.queue, Call.agent_id, Call.duration_ms)
        .where(
            Call.status == "completed",
            Call.started_at >= since,
            Call.queue.is_not(None),
            Call.duration_ms.is_not(None),
        )
        .order_by(Call.started_at.desc())
        .limit(limit)
    )
    return [(q, a, int(d or 0)) for q, a, d in session.execute(stmt)]


def _outbox_info(row: WebhookOutboxRow) -> OutboxInfo:
    return OutboxInfo(
        **{f.name: getattr(row, f.name) for f in fields(OutboxInfo) if f.name != "payload"},
        payload=dict(row.payload),
    )


def due_outbox(session: Session, now: datetime, limit: int) -> list[OutboxInfo]:
    stmt = (
        select(WebhookOutboxRow)
        .where(WebhookOutboxRow.status == "pending", WebhookOutboxRow.next_attempt_at <= now)
        .order_by(WebhookOutboxRow.next_attempt_at, WebhookOutboxRow.id)
        .limit(limit)
    )
    return [_outbox_info(row) for row in session.scalars(stmt)]


def claim_outbox(conn: Connection, now: datetime, limit: int, lease_s: float) -> list[OutboxInfo]:
    """Take the deliveries due at `now` for this process: their next attempt moves `lease_s`
    ahead in the same transaction, so another node polling the outbox skips them (the rows
    being claimed are locked `FOR UPDATE SKIP LOCKED` on PostgreSQL: no waiting on each
    other; SQLite's write lock serialises claims anyway). A claimer that dies leaves the
    lease to expire and the delivery is made again: at least once, the receiver de-duplicates
    on the delivery id."""
    stmt = (
        select(WebhookOutboxRow)
        .where(WebhookOutboxRow.status == "pending", WebhookOutboxRow.next_attempt_at <= now)
        .order_by(WebhookOutboxRow.next_attempt_at, WebhookOutboxRow.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = [_outbox_info(row) for row in Session(bind=conn).scalars(stmt)]
    if rows:
        conn.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_([r.id for r in rows]))
            .values(next_attempt_at=now + timedelta(seconds=lease_s))
        )
    return rows


def list_outbox(session: Session, alert_id: int | None) -> list[OutboxInfo]:
    stmt = select(WebhookOutboxRow).order_by(WebhookOutboxRow.id)
    if alert_id is not None:
        stmt = stmt.where(WebhookOutboxRow.alert_id == alert_id)
    return [_outbox_info(row) for row in session.scalars(stmt)]


def next_outbox_attempt(session: Session) -> datetime | None:
    stmt = select(func.min(WebhookOutboxRow.next_attempt_at)).where(
        WebhookOutboxRow.status == "pending"
    )
    value: datetime | None = session.scalar(stmt)
    return value


def record_attempt(
    conn: Connection,
    outbox_id: int,
    *,
    status: str,
    at: datetime,
    next_attempt_at: datetime | None,
    error: str | None,
) -> None:
    if status not in OUTBOX_STATUSES:
        raise BatchRejected(f"outbox status must be one of {OUTBOX_STATUSES}, got {status!r}")
    values: dict[str, Any] = {
        "status": status,
        "attempts": _OUTBOX.c.attempts + 1,
        "last_error": error,
    }
    if status == "delivered":
        values["delivered_at"] = at
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    conn.execute(update(_OUTBOX).where(_OUTBOX.c.id == outbox_id).values(**values))
