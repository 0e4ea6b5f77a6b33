"""Scale-out: the node that owns each call, `calls.node`.

Revision ID: 0008_call_node
Revises: 0007_audit_chain
Create Date: 2026-12-07

With several gateway nodes on one PostgreSQL (docs/scale-out.md) a call lives on one node;
when that node's heartbeat expires, a surviving node closes the node's active calls as
interrupted / `node_lost`, and a node restarting after a crash recovers only its own calls.
Rows written before this migration (and every call of the single-box mode) have no node.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_call_node"
down_revision: str | None = "0007_audit_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both backends (no batch recreate of `calls` on SQLite).
    op.add_column("calls", sa.Column("node", sa.String(64), nullable=True))
    op.create_index("ix_calls_node_status", "calls", ["node", "status"])


def downgrade() -> None:
    op.drop_index("ix_calls_node_status", table_name="calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("node")
