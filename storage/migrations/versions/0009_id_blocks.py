"""Scale-out: collision-free alert ids across nodes (`id_blocks`).

Revision ID: 0009_id_blocks
Revises: 0008_call_node
Create Date: 2026-12-07

An alert id was the highest stored id plus one, counted in memory: two gateway nodes on one
PostgreSQL handed out the same ids. Each process now reserves a block of ids in one guarded
transaction (`storage.nodes.reserve_ids`) and numbers from it. The other tables written from
the event stream are already idempotent by their keys (trace and findings by (call id, seq),
readings by (call id, party, seq), segments by (call id, party, span), alerts by id and by
(call id, rule), outbox rows by (alert id, event, target)), so a redelivered event needs no
further key.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_id_blocks"
down_revision: str | None = "0008_call_node"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "id_blocks",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("next_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_id_blocks"),
    )
    # Numbering goes on after the alerts already stored.
    op.execute(
        "INSERT INTO id_blocks (name, next_id) "
        "SELECT 'alerts', COALESCE(MAX(id), 0) + 1 FROM alerts"
    )


def downgrade() -> None:
    op.drop_table("id_blocks")
