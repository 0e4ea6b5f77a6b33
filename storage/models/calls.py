"""The calls themselves in the SQL schema: the declarative base every table shares (the
naming convention, `UtcDateTime`, the portable JSON and key types), the calls, their parties,
transcript segments and each call's trace of events, and the frozen dataclasses the repository
returns instead of those rows (`CallSummary`, `CallDetail`, `PartyInfo`, `SegmentInfo`,
`TraceInfo`).

Portability rules, so one schema serves SQLite (default) and PostgreSQL (production):

* Timestamps are `UtcDateTime`: timezone-aware UTC in Python on both backends (SQLite has no
  time zones, so UTC is stored and re-attached on the way out). Naive datetimes are refused.
* JSON columns use SQLAlchemy's generic `JSON` type (TEXT in SQLite), as JSONB on PostgreSQL
  so later work can index and compare documents.
* Surrogate keys are BIGINT on PostgreSQL but INTEGER on SQLite, where only
  `INTEGER PRIMARY KEY` is an alias of the rowid and autoincrements.
* Constraint and index names come from one naming convention, so migrations can refer to them
  by name on both backends.

Calls carry the nullable `score`/`grade` columns QA scoring fills.
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
