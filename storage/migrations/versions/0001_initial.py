"""Initial schema: calls, parties, segments, trace_events.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-21

Written out in full rather than imported from storage.models: a released migration must keep
creating the same schema however the models change later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")
BIGINT_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("ended_at", UTC_TIME, nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("recording_path", sa.String(1024), nullable=False),
        sa.Column("recording_frames", sa.BigInteger(), nullable=True),
        sa.Column("agent_id", sa.String(128), nullable=True),
        sa.Column("queue", sa.String(128), nullable=True),
        sa.Column("caller", sa.String(128), nullable=True),
        sa.Column("callee", sa.String(128), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("grade", sa.String(32), nullable=True),
        sa.Column("metadata", JSON_TYPE, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
    )
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_index("ix_calls_status_started_at", "calls", ["status", "started_at"])
    op.create_index("ix_calls_agent_id_started_at", "calls", ["agent_id", "started_at"])
    op.create_index("ix_calls_queue_started_at", "calls", ["queue", "started_at"])
    op.create_index("ix_calls_caller_started_at", "calls", ["caller", "started_at"])
    op.create_index("ix_calls_external_id_started_at", "calls", ["external_id", "started_at"])

    op.create_table(
        "parties",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("party", sa.String(32), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name="fk_parties_call_id_calls", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", "party", name="pk_parties"),
    )

    op.create_table(
        "segments",
        sa.Column("id", BIGINT_KEY, autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("party", sa.String(32), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name="fk_segments_call_id_calls", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.UniqueConstraint(
            "call_id", "party", "start_ms", "end_ms",
            name="uq_segments_call_id_party_start_ms_end_ms",
        ),
    )
    op.create_index("ix_segments_call_id_start_ms", "segments", ["call_id", "start_ms"])

    op.create_table(
        "trace_events",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("media_ms", sa.BigInteger(), nullable=True),
        sa.Column("party", sa.String(32), nullable=True),
        sa.Column("data", JSON_TYPE, nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name="fk_trace_events_call_id_calls", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", "seq", name="pk_trace_events"),
    )


def downgrade() -> None:
    op.drop_table("trace_events")
    op.drop_index("ix_segments_call_id_start_ms", table_name="segments")
    op.drop_table("segments")
    op.drop_table("parties")
    for name in (
        "ix_calls_external_id_started_at",
        "ix_calls_caller_started_at",
        "ix_calls_queue_started_at",
        "ix_calls_agent_id_started_at",
        "ix_calls_status_started_at",
        "ix_calls_started_at",
    ):
        op.drop_index(name, table_name="calls")
    op.drop_table("calls")
