"""Segments transcribed late: `segments.late`.

Revision ID: 0005_late_segments
Revises: 0004_access
Create Date: 2026-12-07

A segment is `late` when ASR was overloaded and it was transcribed off the live path (the
catch-up lane, or re-read from the recording after the call). Existing rows were all live.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_late_segments"
down_revision: str | None = "0004_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.add_column(
            sa.Column("late", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("late")
