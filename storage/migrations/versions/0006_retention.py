"""Retention and erasure: tombstones, legal holds, erasure requests; the audit log accepts one
kind of rewrite, pseudonymisation.

Revision ID: 0006_retention
Revises: 0005_late_segments
Create Date: 2026-12-07

The audit triggers of 0004 are replaced by ones that still refuse DELETE and every UPDATE
except one: replacing a clear `call_id` by a pseudonym (`psn:...`) with every other column
unchanged. Erasure (storage/privacy.py) needs exactly that: the rows stay, proving who
accessed what and when, but no longer name the erased customer's calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_retention"
down_revision: str | None = "0005_late_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)
APPEND_ONLY = "audit rows are append-only"
_SAME = ("id", "at", "username", "role", "action", "start_ms", "end_ms", "result", "status")


def upgrade() -> None:
    op.create_table(
        "tombstones",
        sa.Column("id", BIGINT_KEY, autoincrement=True, nullable=False),
        sa.Column("call_ref", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("legal_basis", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("deleted_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tombstones"),
    )
    op.create_index("ix_tombstones_call_ref", "tombstones", ["call_ref"])
    op.create_table(
        "legal_holds",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name="fk_legal_holds_call_id_calls", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", name="pk_legal_holds"),
    )
    op.create_table(
        "erasure_requests",
        sa.Column("id", BIGINT_KEY, autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("requested_at", UTC_TIME, nullable=False),
        sa.Column("completed_at", UTC_TIME, nullable=True),
        sa.Column("calls_erased", sa.Integer(), nullable=False),
        sa.Column("calls_held", sa.Integer(), nullable=False),
        sa.Column("files_removed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_erasure_requests"),
    )
    _drop_triggers()
    _create_triggers(pseudonymise=True)


def downgrade() -> None:
    _drop_triggers()
    _create_triggers(pseudonymise=False)
    op.drop_table("erasure_requests")
    op.drop_table("legal_holds")
    op.drop_index("ix_tombstones_call_ref", table_name="tombstones")
    op.drop_table("tombstones")


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")


def _create_triggers(*, pseudonymise: bool) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    same = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in _SAME)
    # JSONB compares by value on PostgreSQL; SQLite stores the JSON text unchanged.
    same += " AND NEW.detail = OLD.detail" if postgres else " AND NEW.detail IS OLD.detail"
    allowed = (
        "OLD.call_id IS NOT NULL AND OLD.call_id NOT LIKE 'psn:%' AND NEW.call_id LIKE 'psn:%' "
        f"AND {same}"
        if pseudonymise
        else "FALSE"
    )
    if postgres:
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF TG_OP = 'UPDATE' AND {allowed} THEN RETURN NEW; END IF; "
            f"RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        return
    # A NULL condition must refuse too, hence COALESCE (WHEN NULL would not fire).
    same_sqlite = allowed.replace("IS NOT DISTINCT FROM", "IS").replace("FALSE", "0")
    op.execute(
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        f"WHEN NOT COALESCE(({same_sqlite}), 0) BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
    )
