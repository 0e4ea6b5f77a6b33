"""What callwatch concludes about a call, in the SQL schema: periodic quality readings,
findings over media-time spans, call-level result documents, alerts (migration 0003) with their
webhook deliveries (`webhook_outbox`), the id blocks alert ids come from (migration 0009), and
the frozen dataclasses the repository returns for alerts and deliveries (`AlertInfo`,
`OutboxInfo`). Every row references `calls.id` (storage/models/calls.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.calls import Base, BigIntKey


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


class IdBlock(Base):
    """Hands out ids that several processes on one database never share (migration 0009):
    a process reserves a block (`storage.nodes.reserve_ids`) and numbers from it in memory,
    so an alert is named before it is committed without two nodes picking the same id."""

    __tablename__ = "id_blocks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # "alerts"
    next_id: Mapped[int] = mapped_column(BigInteger)


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
