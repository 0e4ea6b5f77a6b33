"""The shape of stored calls: the SQL schema as SQLAlchemy 2.0 declarative models (calls,
parties, transcript segments, each call's trace of events) and the frozen dataclasses the
repository returns instead of them (`CallSummary`, `CallDetail`, `PartyInfo`, `SegmentInfo`,
`TraceInfo`).

This module owns the *shape* of the database; `storage/migrations/versions/` owns how a
database gets that shape, and a test checks the two agree (alembic `compare_metadata`) on
SQLite and PostgreSQL. ORM classes stay inside `storage`: the repository maps rows to the
dataclasses, which hold no session state and can cross threads.

Portability rules, so one schema serves SQLite (default) and PostgreSQL (production):

* Timestamps are `UtcDateTime`: timezone-aware UTC in Python on both backends (SQLite has no
  time zones, so UTC is stored and re-attached on the way out). Naive datetimes are refused.
* JSON columns use SQLAlchemy's generic `JSON` type (TEXT in SQLite), as JSONB on PostgreSQL
  so later work can index and compare documents.
* Surrogate keys are BIGINT on PostgreSQL but INTEGER on SQLite, where only
  `INTEGER PRIMARY KEY` is an alias of the rowid and autoincrements.
* Constraint and index names come from one naming convention, so migrations can refer to them
  by name on both backends.

Alerts (`alerts`) and their webhook deliveries (`webhook_outbox`) came with migration 0003.
Designed to grow: quality metrics, compliance results, alerts and audit rows will reference
`calls.id` (and `segments.id` for compliance hits on a segment); calls already carry the
nullable `score`/`grade` columns that QA scoring will fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CALL_STATUSES = ("active", "completed", "interrupted")
"""'active' from CallOpened until CallClosed; a crash leaves calls 'active' for recovery."""

JsonType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
BigIntKey: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz` and returns it in the session's zone; SQLite stores text
    without a zone. Converting to UTC on the way in and attaching/normalising UTC on the way
    out makes both return the same value, and keeps SQLite's text ordering chronological.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            # A naive time is ambiguous (local? UTC?) and would sort wrongly against the rest.
            raise ValueError(f"datetime must be timezone-aware, got naive {value.isoformat()}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JsonType}


class Call(Base):
    """One monitored call: who, when, how it ended, where its recording is."""

    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128))
    protocol: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    recording_path: Mapped[str] = mapped_column(String(1024))
    recording_frames: Mapped[int | None] = mapped_column(BigInteger)
    agent_id: Mapped[str | None] = mapped_column(String(128))
    queue: Mapped[str | None] = mapped_column(String(128))
    caller: Mapped[str | None] = mapped_column(String(128))
    callee: Mapped[str | None] = mapped_column(String(128))
    # Filled by QA scoring later (0..100 and a label such as "A" or "needs_review").
    score: Mapped[float | None] = mapped_column(Float)
    grade: Mapped[str | None] = mapped_column(String(32))
    quality_score: Mapped[float | None] = mapped_column(Float)
    compliance_score: Mapped[float | None] = mapped_column(Float)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    #: The gateway node that owns the call (scale-out, `node.name`); None on a single box.
    node: Mapped[str | None] = mapped_column(String(64))

    parties: Mapped[list[Party]] = relationship(
        back_populates="call", order_by="Party.channel", cascade="all, delete-orphan"
    )

    # Each filter column leads a composite index with started_at, so "filter, newest first"
    # is one index range scan; the leading column alone serves plain equality lookups.
    __table_args__ = (
        Index("ix_calls_started_at", "started_at"),
        Index("ix_calls_status_started_at", "status", "started_at"),
        Index("ix_calls_agent_id_started_at", "agent_id", "started_at"),
        Index("ix_calls_queue_started_at", "queue", "started_at"),
        Index("ix_calls_caller_started_at", "caller", "started_at"),
        Index("ix_calls_external_id_started_at", "external_id", "started_at"),
        Index("ix_calls_node_status", "node", "status"),
    )


class Party(Base):
    """One side of a call (customer, agent, ...) and the recording channel it is on."""

    __tablename__ = "parties"

    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    party: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[int] = mapped_column(Integer)
    # Samples of this party's leg received (written at CallClosed).
    samples: Mapped[int | None] = mapped_column(BigInteger)

    call: Mapped[Call] = relationship(back_populates="parties")


class Segment(Base):
    """One transcribed stretch of one party's speech, in media time."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), ForeignKey("calls.id", ondelete="CASCADE"))
    party: Mapped[str] = mapped_column(String(32))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    #: Transcribed off the live path (overload catch-up); see `SegmentAdded.late`.
    late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_segments_call_id_start_ms", "call_id", "start_ms"),
        # One party cannot say two things over exactly the same span: a second row with the
        # same key is the same segment from a retried batch, so inserts skip it.
        UniqueConstraint("call_id", "party", "start_ms", "end_ms"),
    )


class TraceEvent(Base):
    """One entry of a call's ordered trace (connected, metadata, utterance, ..., finalised)."""

    __tablename__ = "trace_events"

    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    # Per-call order from 0; the primary key makes a retried row a no-op, not a duplicate.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    media_ms: Mapped[int | None] = mapped_column(BigInteger)
    party: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]]


class QualityReadingRow(Base):
    """One periodic per-party measurement (the fields vary by measure, so a JSON document)."""

    __tablename__ = "quality_readings"

    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    party: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    values: Mapped[dict[str, Any]]


class FindingRow(Base):
    """Something found over a media-time span (dead air, overtalk, phrase hit or miss...)."""

    __tablename__ = "findings"

    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str | None] = mapped_column(String(16))
    party: Mapped[str | None] = mapped_column(String(32))
    start_ms: Mapped[int | None] = mapped_column(BigInteger)
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_findings_kind_call_id", "kind", "call_id"),)


class CallResultRow(Base):
    """A call-level summary document (per-party quality, conversation, compliance...)."""

    __tablename__ = "call_results"

    call_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    party: Mapped[str] = mapped_column(String(32), primary_key=True)  # "" = the whole call
    data: Mapped[dict[str, Any]]


class AlertRow(Base):
    """One alert on a call (migration 0003). `id` is allocated by the alert service from a
    block it reserved (`IdBlock`, migration 0009: collision-free across nodes), not by the
    database at insert, so the live feed can name the alert before it is committed;
    (call_id, rule) is unique: an alert is raised at most once per call and rule."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=False)
    call_id: Mapped[str] = mapped_column(String(64), ForeignKey("calls.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    raised_at: Mapped[datetime]
    media_start_ms: Mapped[int | None] = mapped_column(BigInteger)
    media_end_ms: Mapped[int | None] = mapped_column(BigInteger)
    party: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]]
    agent_id: Mapped[str | None] = mapped_column(String(128))
    queue: Mapped[str | None] = mapped_column(String(128))
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("call_id", "rule"),
        Index("ix_alerts_raised_at", "raised_at"),
        Index("ix_alerts_state_raised_at", "state", "raised_at"),
        Index("ix_alerts_kind_raised_at", "kind", "raised_at"),
    )


class WebhookOutboxRow(Base):
    """One webhook delivery still to make (or made): written in the alert's transaction, so an
    alert is never stored without its deliveries; the delivery task updates it."""

    __tablename__ = "webhook_outbox"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))  # alert.raised, alert.acknowledged, ...
    target: Mapped[str] = mapped_column(String(64))  # a [[webhooks.targets]] name
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("alert_id", "event", "target"),
        Index("ix_webhook_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )


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


class IdBlock(Base):
    """Hands out ids that several processes on one database never share (migration 0009):
    a process reserves a block (`storage.nodes.reserve_ids`) and numbers from it in memory,
    so an alert is named before it is committed without two nodes picking the same id."""

    __tablename__ = "id_blocks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # "alerts"
    next_id: Mapped[int] = mapped_column(BigInteger)


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


# -- what the repository returns: frozen storage vocabulary, no ORM state --------------------


@dataclass(frozen=True, slots=True)
class PartyInfo:
    party: str  # "customer", "agent", ...
    channel: int  # channel index in the recording
    samples: int | None  # samples received on this leg; None until the call is closed


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    segment_id: int
    party: str
    start_ms: int
    end_ms: int
    text: str
    language: str
    confidence: float
    latency_ms: int | None
    late: bool = False  # transcribed off the live path (overload catch-up)


@dataclass(frozen=True, slots=True)
class TraceInfo:
    seq: int
    kind: str
    at: datetime
    media_ms: int | None
    party: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallSummary:
    call_id: str
    external_id: str
    protocol: str
    status: str  # one of CALL_STATUSES
    started_at: datetime  # UTC, timezone-aware
    ended_at: datetime | None
    end_reason: str | None
    duration_ms: int | None
    sample_rate: int
    channels: int
    recording_path: str  # relative to the recordings directory
    recording_frames: int | None
    agent_id: str | None
    queue: str | None
    caller: str | None
    callee: str | None
    score: float | None
    grade: str | None
    quality_score: float | None
    compliance_score: float | None


@dataclass(frozen=True, slots=True)
class CallDetail(CallSummary):
    metadata: dict[str, Any]
    parties: tuple[PartyInfo, ...]  # by channel
    segments: tuple[SegmentInfo, ...]  # by (start_ms, party)
    trace: tuple[TraceInfo, ...]  # by seq


@dataclass(frozen=True, slots=True)
class AlertInfo:
    id: int
    call_id: str
    rule: str
    kind: str
    severity: str  # "info" | "warning" | "critical"
    state: str  # "open" | "acknowledged" | "resolved"
    raised_at: datetime  # UTC
    media_start_ms: int | None
    media_end_ms: int | None
    party: str | None
    message: str
    evidence: dict[str, Any]
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    agent_id: str | None
    queue: str | None


@dataclass(frozen=True, slots=True)
class OutboxInfo:
    id: int
    alert_id: int
    event: str
    target: str
    payload: dict[str, Any]
    status: str  # "pending" | "delivered" | "failed"
    created_at: datetime
    next_attempt_at: datetime
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
