"""Who may see calls and what became of them, in the SQL schema: API users and their login
tokens, the append-only audit log and QA reviews (migration 0004; `storage/access.py`), and
the privacy tables (migration 0005; `storage/privacy.py`, `storage/retention.py`): legal
holds, erasure requests and the tombstones that prove a deletion.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.calls import Base, BigIntKey


class User(Base):
    """A person who may use the API: supervisor, qa or admin (see storage/access.py)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # "scrypt$n$r$p$salt$hash" (base64); never the password itself.
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean)


class ApiToken(Base):
    """A login token, stored as its SHA-256 only: a leaked table cannot be replayed."""

    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigIntKey, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"),)


class AuditEntry(Base):
    """One access to call content (recording, transcript, export, review), allowed or denied.

    Append-only: the API has no route that changes or deletes these rows, and migration
    0004 adds triggers that make the database itself refuse UPDATE and DELETE. `call_id`
    has no foreign key on purpose: the trail outlives calls, and records attempts on ids that
    never existed.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    username: Mapped[str | None] = mapped_column(String(64))  # None: not authenticated
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str | None] = mapped_column(String(64))
    # The media-time span accessed (a byte range of the recording converted to ms).
    start_ms: Mapped[int | None] = mapped_column(BigInteger)
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    result: Mapped[str] = mapped_column(String(16))  # "allowed" | "denied"
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status answered
    detail: Mapped[dict[str, Any]]
    client: Mapped[str | None] = mapped_column(String(64))  # the caller's address
    # The hash chain (migration 0005): the previous row's hash, and this row's.
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    row_hash: Mapped[str | None] = mapped_column(String(64))
    #: SHA-256 of `call_id` as written: the chain covers it, so pseudonymising stays verifiable.
    call_digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_call_id_at", "call_id", "at"),
        Index("ix_audit_log_username_at", "username", "at"),
    )


class QaReview(Base):
    """A QA reviewer's manual score and comment on a call."""

    __tablename__ = "qa_reviews"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), ForeignKey("calls.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    score: Mapped[float | None] = mapped_column(Float)
    comment: Mapped[str] = mapped_column(Text)
    # Per-criterion scores or flags, e.g. {"greeting": 5, "empathy": 3}.
    criteria: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_qa_reviews_call_id_created_at", "call_id", "created_at"),)


class Tombstone(Base):
    """Proof that a call's data was deleted, holding no personal data (migration 0005):
    `call_ref` is the call id after retention, its pseudonym (`psn:...`) after erasure."""

    __tablename__ = "tombstones"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    call_ref: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))  # "call" | "recording"
    reason: Mapped[str] = mapped_column(String(16))  # "retention" | "erasure"
    legal_basis: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(64))
    deleted_at: Mapped[datetime]

    __table_args__ = (Index("ix_tombstones_call_ref", "call_ref"),)


class LegalHold(Base):
    """A call that retention and erasure must keep (set and cleared by an admin, audited)."""

    __tablename__ = "legal_holds"

    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime]


class ErasureRequest(Base):
    """One erasure request (GDPR Art. 17 / PIPL Art. 47): subject pseudonymised, when it
    was asked and completed, what it removed and what a legal hold kept."""

    __tablename__ = "erasure_requests"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(64))  # psn:<keyed hash of the number>
    actor: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    calls_erased: Mapped[int] = mapped_column(Integer)
    calls_held: Mapped[int] = mapped_column(Integer)
    files_removed: Mapped[int] = mapped_column(Integer)
