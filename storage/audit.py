"""The audit trail of access to call content: one append-only, tamper-evident row per access
(recording, transcript, export, review), allowed or denied.

Append-only: this module only ever INSERTs into the audit log (and the migrations' triggers
refuse UPDATE/DELETE/TRUNCATE in the database itself). Tamper-evident: each row carries
`row_hash` = SHA-256(previous row's hash, this row's fields), written under a lock so the
chain has one order; `verify_audit` walks it and names the first row that does not match (an
edit, or a deletion just before it, made by someone who dropped the triggers).

`AuditTrail` is a part of `AccessStore` (storage/access.py), which supplies the connections.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, select, text

from storage.models import AuditEntry

AUDIT_RESULTS = ("allowed", "denied", "failed")
_AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class AuditInfo:
    audit_id: int
    at: datetime
    username: str | None
    role: str | None
    action: str
    call_id: str | None
    start_ms: int | None
    end_ms: int | None
    result: str
    status: int
    detail: dict[str, Any]
    client: str | None = None


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """What `verify_audit` found: rows whose chain verified, rows from before the chain
    (migration 0005), and the first row that broke it (None: intact) with why."""

    verified: int
    unchained: int
    broken_id: int | None = None
    problem: str | None = None


def call_digest(call_id: str | None) -> str | None:
    """What the audit chain hashes for a call id: erasure may later replace the id by its
    pseudonym (storage/privacy.py), which must not look like tampering."""
    return hashlib.sha256(call_id.encode()).hexdigest() if call_id else None


def audit_row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous row's hash and this row's fields, canonical JSON."""
    at: datetime = row["at"]
    fields = [
        at.astimezone(UTC).isoformat(timespec="microseconds"),
        row["username"], row["role"], row["action"], row["call_digest"], row["start_ms"],
        row["end_ms"], row["result"], row["status"], row["client"], row["detail"] or {},
    ]  # fmt: skip
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


class AuditTrail:
    """The audit methods of `AccessStore`; it provides `_write` and `_read`."""

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def audit(
        self,
        *,
        at: datetime,
        action: str,
        result: str,
        status: int,
        username: str | None = None,
        role: str | None = None,
        call_id: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        detail: dict[str, Any] | None = None,
        client: str | None = None,
    ) -> None:
        if result not in AUDIT_RESULTS:
            raise ValueError(f"result must be one of {AUDIT_RESULTS}, got {result!r}")
        row = {
            "at": at, "username": username, "role": role, "action": action,
            "call_id": call_id[:64] if call_id else call_id, "start_ms": start_ms,
            "end_ms": end_ms, "result": result, "status": status,
            "detail": json.loads(json.dumps(detail or {}, default=str)),  # as stored
            "client": client[:64] if client else client,
        }  # fmt: skip
        row["call_digest"] = call_digest(row["call_id"])
        with self._write() as conn:
            if conn.dialect.name == "postgresql":  # one writer at a time extends the chain
                conn.execute(text("SELECT pg_advisory_xact_lock(7401731)"))
            # (SQLite: the write transaction began IMMEDIATE, so it already holds the lock.)
            prev = conn.execute(
                select(_AUDIT.c.row_hash)
                .where(_AUDIT.c.row_hash.is_not(None))
                .order_by(_AUDIT.c.id.desc())
                .limit(1)
            ).scalar()
            prev = prev or ""
            row_hash = audit_row_hash(prev, row)
            conn.execute(insert(_AUDIT).values(**row, prev_hash=prev, row_hash=row_hash))

    def verify_audit(self, batch: int = 1000) -> AuditCheck:
        """Walk the chain in id order; the first row whose hashes do not match is named."""
        verified = unchained = 0
        prev: str | None = None  # None: the chain has not started yet
        last_id = 0
        with self._read() as conn:
            while True:
                rows = (
                    conn.execute(
                        select(_AUDIT)
                        .where(_AUDIT.c.id > last_id)
                        .order_by(_AUDIT.c.id)
                        .limit(batch)
                    )
                    .mappings()
                    .all()
                )
                if not rows:
                    return AuditCheck(verified, unchained)
                for r in rows:
                    last_id = r["id"]
                    if r["row_hash"] is None and prev is None:
                        unchained += 1  # written before migration 0005
                        continue
                    expected_prev = prev or ""
                    if r["prev_hash"] != expected_prev:
                        why = "its prev_hash does not match the row before (one deleted?)"
                        return AuditCheck(verified, unchained, r["id"], why)
                    if r["row_hash"] != audit_row_hash(expected_prev, dict(r)):
                        why = "its fields do not match its hash (changed after writing)"
                        return AuditCheck(verified, unchained, r["id"], why)
                    pseudonymised = (r["call_id"] or "").startswith("psn:")  # by an erasure
                    if not pseudonymised and r["call_digest"] != call_digest(r["call_id"]):
                        why = "its call id does not match its hash (changed after writing)"
                        return AuditCheck(verified, unchained, r["id"], why)
                    prev = r["row_hash"]
                    verified += 1

    def list_audit(
        self,
        *,
        call_id: str | None = None,
        username: str | None = None,
        action: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[AuditInfo]:
        """Audit rows matching every given filter, oldest first (the order they happened)
        unless `newest_first`."""
        stmt = select(_AUDIT)
        for column, wanted in (
            (_AUDIT.c.call_id, call_id),
            (_AUDIT.c.username, username),
            (_AUDIT.c.action, action),
            (_AUDIT.c.result, result),
        ):
            if wanted is not None:
                stmt = stmt.where(column == wanted)
        if since is not None:
            stmt = stmt.where(_AUDIT.c.at >= since)
        if until is not None:
            stmt = stmt.where(_AUDIT.c.at < until)
        order = _AUDIT.c.id.desc() if newest_first else _AUDIT.c.id
        stmt = stmt.order_by(order).limit(limit).offset(offset)
        with self._read() as conn:
            return [
                AuditInfo(
                    r["id"],
                    r["at"],
                    r["username"],
                    r["role"],
                    r["action"],
                    r["call_id"],
                    r["start_ms"],
                    r["end_ms"],
                    r["result"],
                    r["status"],
                    dict(r["detail"]),
                    r["client"],
                )  # fmt: skip
                for r in conn.execute(stmt).mappings()
            ]
