"""Tamper-evident audit trail: a hash chain, the client address, TRUNCATE refused.

Revision ID: 0005_audit_chain
Revises: 0004_access
Create Date: 2026-12-07

Each audit row stores `prev_hash` (the previous row's `row_hash`) and its own `row_hash` =
SHA-256 over the previous hash and the row's fields (storage/access.py `audit_row_hash`), so
an edit or a deletion made with the triggers dropped breaks the chain at that row
(`callwatch audit verify`). Rows written before this migration have no hash; the chain starts
at the first row after it. `client` is the caller's address. PostgreSQL also refuses TRUNCATE
(a statement trigger: row triggers do not see it); SQLite has no TRUNCATE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_audit_chain"
down_revision: str | None = "0004_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both backends: a batch "recreate" on SQLite would drop the triggers.
    for name in ("client", "prev_hash", "row_hash"):
        op.add_column("audit_log", sa.Column(name, sa.String(64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
        batch.drop_column("client")
