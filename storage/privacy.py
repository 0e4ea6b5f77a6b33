"""Erasure and legal hold: removing a customer's calls from every store, and what must stay.

This module owns the deletion of calls (shared with retention, storage/retention.py), the
pseudonyms that replace erased ids, legal holds and the erasure-request record.

What "every store" means here: the recording file (and any sibling the recorder or the
encryption left next to it: `<name>.*`), the call row and, through `ON DELETE CASCADE`,
every row that references it (parties, segments, which are also the full-text search
entries, trace, readings, findings, results, alerts and their webhook outbox, QA reviews,
legal holds). The audit trail has no foreign key on purpose: its rows stay and their
`call_id` is replaced by a pseudonym, the one UPDATE its triggers allow (migration 0005).

Order, so a crash never leaves data that the database no longer knows about: the files go
first, then one transaction deletes the rows, pseudonymises the audit rows, writes the
tombstones and marks the request complete. A crash in between leaves rows whose recording
is gone; running the same erasure again finishes it (it is idempotent).

Pseudonyms are `psn:` + HMAC-SHA256(key, value) (32 hex digits): the same customer or call
always gets the same pseudonym, so the audit trail still links an erased call's accesses,
but without the key the number cannot be recovered by hashing every phone number.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, Table, delete, insert, or_, select, update

from storage import db
from storage.models import AuditEntry, Call, ErasureRequest, LegalHold, Tombstone

PSEUDONYM_PREFIX = "psn:"
_CALLS: Table = Call.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]
_TOMBS: Table = Tombstone.__table__  # type: ignore[assignment]
_HOLDS: Table = LegalHold.__table__  # type: ignore[assignment]
_ERASURES: Table = ErasureRequest.__table__  # type: ignore[assignment]


def load_pseudonym_key(path: Path) -> bytes:
    """The pseudonym key in `path`, created (32 random bytes, mode 0600) if missing."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_pseudonym_key(path)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    if len(key) < 16:
        raise ValueError(f"pseudonym key {path} is shorter than 16 bytes: replace it")
    return key


def pseudonym(key: bytes, value: str) -> str:
    digest = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]
    return PSEUDONYM_PREFIX + digest


def number_forms(number: str) -> list[str]:
    """The spellings of a phone number as switches store it: as given, and with or without
    the separators and the leading `+`."""
    plain = "".join(ch for ch in number.strip() if ch.isdigit() or ch == "+")
    digits = plain.lstrip("+")
    return sorted({number.strip(), plain, digits, "+" + digits} - {"", "+"})


@dataclass(frozen=True, slots=True)
class ErasureReport:
    request_id: int
    subject: str  # the pseudonym of the number
    requested_at: datetime
    completed_at: datetime
    calls_erased: int
    calls_held: tuple[str, ...]  # kept: under legal hold
    calls_active: tuple[str, ...]  # kept for now: still running, erase again after they end
    files_removed: int


@dataclass(frozen=True, slots=True)
class Tombstoned:
    call_ref: str  # the call id, or its pseudonym after erasure
    reason: str  # "retention" | "erasure"
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class HoldInfo:
    call_id: str
    reason: str
    set_by: str
    set_at: datetime


def remove_recording_files(recordings_dir: Path, relative: str) -> int:
    """Delete a call's recording and its siblings (`<name>.*`); the count removed."""
    path = recordings_dir / relative
    removed = 0
    if path.parent.is_dir():
        for candidate in path.parent.iterdir():
            if candidate.name == path.name or candidate.name.startswith(path.name + "."):
                candidate.unlink(missing_ok=True)
                removed += 1
    return removed


def delete_calls(conn: Connection, call_ids: Sequence[str]) -> None:
    """Delete calls and (by cascade) everything stored about them, in `conn`'s transaction."""
    if call_ids:
        conn.execute(delete(_CALLS).where(_CALLS.c.id.in_(list(call_ids))))


def tombstone(
    conn: Connection, call_ref: str, *, scope: str, reason: str, basis: str, actor: str,
    at: datetime,
) -> None:  # fmt: skip
    conn.execute(
        insert(_TOMBS).values(
            call_ref=call_ref,
            scope=scope,
            reason=reason,
            legal_basis=basis[:128],
            actor=actor[:64],
            deleted_at=at,
        )  # fmt: skip
    )


def _checkpoint(engine: Engine) -> None:
    """Copy the WAL into the database file and truncate it, so the page images written
    before the erasure (the erased text) leave the WAL too. Best effort: a reader that holds
    an old snapshot makes SQLite skip frames; the next writer's checkpoint finishes it."""
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    finally:
        raw.close()


class PrivacyStore:
    """Erasure requests, legal holds and tombstone look-ups on one database."""

    def __init__(self, engine: Engine, recordings_dir: Path, key: bytes) -> None:
        self._engine = engine
        self._recordings = recordings_dir
        self._key = key

    def pseudonym(self, value: str) -> str:
        return pseudonym(self._key, value)

    # -- erasure ------------------------------------------------------------------------
    def erase_caller(self, number: str, *, actor: str, at: datetime) -> ErasureReport:
        """Erase every call where `number` is the caller or the callee (see module doc)."""
        subject = self.pseudonym("".join(ch for ch in number if ch.isdigit()))
        with db.write_transaction(self._engine) as conn:
            request_id = conn.execute(
                insert(_ERASURES).values(
                    subject=subject, actor=actor[:64], requested_at=at, completed_at=None,
                    calls_erased=0, calls_held=0, files_removed=0,
                ).returning(_ERASURES.c.id)
            ).scalar_one()  # fmt: skip
        forms = number_forms(number)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_CALLS.c.id, _CALLS.c.status, _CALLS.c.recording_path).where(
                    or_(_CALLS.c.caller.in_(forms), _CALLS.c.callee.in_(forms))
                )
            ).all()
            held = set(conn.scalars(select(_HOLDS.c.call_id)).all())
        active = tuple(sorted(r.id for r in rows if r.status == "active"))
        kept = tuple(sorted(r.id for r in rows if r.id in held))
        doomed = [r for r in rows if r.status != "active" and r.id not in held]
        files = sum(remove_recording_files(self._recordings, r.recording_path) for r in doomed)
        ids = [r.id for r in doomed]
        done = at
        with db.write_transaction(self._engine) as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # overwrite the freed pages with zeros, not just unlink them
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            delete_calls(conn, ids)
            for call_id in ids:
                ref = self.pseudonym(call_id)
                conn.execute(update(_AUDIT).where(_AUDIT.c.call_id == call_id).values(call_id=ref))
                # Earlier tombstones (a recording removed by retention) named the call in clear.
                conn.execute(
                    update(_TOMBS).where(_TOMBS.c.call_ref == call_id).values(call_ref=ref)
                )
                tombstone(conn, ref, scope="call", reason="erasure",
                          basis=f"erasure request {request_id}", actor=actor, at=done)  # fmt: skip
            conn.execute(
                update(_ERASURES)
                .where(_ERASURES.c.id == request_id)
                .values(
                    completed_at=done,
                    calls_erased=len(ids),
                    calls_held=len(kept),
                    files_removed=files,
                )  # fmt: skip
            )
        if sqlite:
            _checkpoint(self._engine)
        return ErasureReport(request_id, subject, at, done, len(ids), kept, active, files)

    # -- legal hold ---------------------------------------------------------------------
    def set_hold(self, call_id: str, *, reason: str, actor: str, at: datetime) -> bool:
        """Put a call under legal hold; False when there is no such call."""
        with db.write_transaction(self._engine) as conn:
            if conn.scalar(select(_CALLS.c.id).where(_CALLS.c.id == call_id)) is None:
                return False
            conn.execute(delete(_HOLDS).where(_HOLDS.c.call_id == call_id))
            conn.execute(
                insert(_HOLDS).values(call_id=call_id, reason=reason, set_by=actor[:64], set_at=at)
            )
        return True

    def clear_hold(self, call_id: str) -> bool:
        """Lift a legal hold; False when the call had none."""
        with db.write_transaction(self._engine) as conn:
            return bool(conn.execute(delete(_HOLDS).where(_HOLDS.c.call_id == call_id)).rowcount)

    def holds(self) -> list[HoldInfo]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(_HOLDS).order_by(_HOLDS.c.set_at)).all()
        return [HoldInfo(r.call_id, r.reason, r.set_by, r.set_at) for r in rows]

    # -- tombstones ---------------------------------------------------------------------
    def deleted(self, call_id: str, scope: str = "call") -> Tombstoned | None:
        """The tombstone of a call (or of only its recording), deleted by retention or
        erasure; the reference is the pseudonym when the call was erased."""
        refs = [call_id, self.pseudonym(call_id)]
        with self._engine.connect() as conn:
            row = conn.execute(
                select(_TOMBS.c.call_ref, _TOMBS.c.reason, _TOMBS.c.deleted_at)
                .where(_TOMBS.c.call_ref.in_(refs), _TOMBS.c.scope == scope)
                .order_by(_TOMBS.c.deleted_at.desc())
                .limit(1)
            ).first()
        return None if row is None else Tombstoned(row.call_ref, row.reason, row.deleted_at)
