"""Tamper-evident audit trail: a hash chain, the client address, TRUNCATE refused.

Revision ID: 0007_audit_chain
Revises: 0006_retention
Create Date: 2026-12-07

Each audit row stores `prev_hash` (the previous row's `row_hash`) and its own `row_hash` =
SHA-256 over the previous hash and the row's fields (storage/audit.py `audit_row_hash`), so
an edit or a deletion made with the triggers dropped breaks the chain at that row
(`callwatch audit verify`). Rows written before this migration have no hash; the chain starts
at the first row after it. `client` is the caller's address. PostgreSQL also refuses TRUNCATE
(a statement trigger: row triggers do not see it); SQLite has no TRUNCATE.

Erasure (0006) replaces an erased call's `call_id` by its pseudonym. So that this does not
break the chain, the hash covers `call_digest` (SHA-256 of the call id as written, which names
no one once the call is gone) rather than `call_id`; `audit verify` checks that the two agree
on every row not pseudonymised. The triggers of 0006 are re-made so that the one permitted
UPDATE also leaves the new columns as they were.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_audit_chain"
down_revision: str | None = "0006_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY = "audit rows are append-only"
#: What the one permitted UPDATE (pseudonymising `call_id`) must leave as it was.
_SAME = (
    "id", "at", "username", "role", "action", "start_ms", "end_ms", "result", "status",
    "client", "prev_hash", "row_hash", "call_digest",
)  # fmt: skip


def upgrade() -> None:
    # Plain ADD COLUMN on both backends: a batch "recreate" on SQLite would drop the triggers.
    for name in ("client", "prev_hash", "row_hash", "call_digest"):
        op.add_column("audit_log", sa.Column(name, sa.String(64), nullable=True))
    _remake_triggers(_SAME)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    _remake_triggers(_SAME[:9])
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("call_digest")
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
        batch.drop_column("client")


def _remake_triggers(same_columns: tuple[str, ...]) -> None:
    """Append-only, but for pseudonymising `call_id` with every other column unchanged."""
    postgres = op.get_bind().dialect.name == "postgresql"
    same = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in same_columns)
    same += " AND NEW.detail = OLD.detail" if postgres else " AND NEW.detail IS OLD.detail"
    allowed = (
        "OLD.call_id IS NOT NULL AND OLD.call_id NOT LIKE 'psn:%' AND NEW.call_id LIKE 'psn:%' "
        f"AND {same}"
    )
    if postgres:
        # The function is replaced in place: the row and TRUNCATE triggers keep calling it.
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN IF TG_OP = 'UPDATE' AND {allowed} THEN RETURN NEW; END IF; "
            f"RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        return
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    # A NULL condition must refuse too, hence COALESCE (WHEN NULL would not fire).
    op.execute(
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log WHEN NOT "
        f"COALESCE(({allowed.replace('IS NOT DISTINCT FROM', 'IS')}), 0) "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
    )
