"""Analysis results: quality readings, findings, call-level results, call scores.

Revision ID: 0002_analysis
Revises: 0001_initial
Create Date: 2026-11-21

Written out in full (not imported from storage.models), like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002_analysis"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")


def _call_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["call_id"], ["calls.id"], name=f"fk_{table}_call_id_calls", ondelete="CASCADE"
    )


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("quality_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("compliance_score", sa.Float(), nullable=True))
    op.create_table(
        "quality_readings",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("party", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("values", JSON_TYPE, nullable=False),
        _call_fk("quality_readings"),
        sa.PrimaryKeyConstraint("call_id", "party", "seq", name="pk_quality_readings"),
    )
    op.create_table(
        "findings",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=True),
        sa.Column("party", sa.String(32), nullable=True),
        sa.Column("start_ms", sa.BigInteger(), nullable=True),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("data", JSON_TYPE, nullable=False),
        _call_fk("findings"),
        sa.PrimaryKeyConstraint("call_id", "seq", name="pk_findings"),
    )
    op.create_index("ix_findings_kind_call_id", "findings", ["kind", "call_id"])
    op.create_table(
        "call_results",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("party", sa.String(32), nullable=False),
        sa.Column("data", JSON_TYPE, nullable=False),
        _call_fk("call_results"),
        sa.PrimaryKeyConstraint("call_id", "kind", "party", name="pk_call_results"),
    )


def downgrade() -> None:
    op.drop_table("call_results")
    op.drop_index("ix_findings_kind_call_id", table_name="findings")
    op.drop_table("findings")
    op.drop_table("quality_readings")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("compliance_score")
        batch.drop_column("quality_score")
