"""Alembic migrations for callwatch's schema, run by `storage.db.upgrade` (no alembic.ini)."""
