"""callwatch's storage: the SQL call database and the recordings on disk.

Modules, each importable on its own (importing this package loads no database driver):

* `storage.records` - the write records the live side hands over (`CallOpened`, ...).
* `storage.repository` - `Repository`: batched writes (`apply`) and read queries, returning
  `CallSummary` / `CallDetail` dataclasses.
* `storage.batches` - validating and writing one batch of records (`Repository.apply`).
* `storage.call_queries` - the call reads of `Repository` (recovery, list, detail).
* `storage.models` - the schema (SQLAlchemy 2.0 models) and those frozen result dataclasses, one
  module per domain: `calls`, `analysis` (readings, findings, alerts), `governance` (users, audit,
  privacy).
* `storage.alerts` - alerts and the webhook outbox (written in the alert's transaction).
* `storage.db` - engines (SQLite pragmas, PostgreSQL), write transactions, `upgrade()`.
* `storage.migrations` - Alembic revisions, run programmatically by `storage.db.upgrade`.
* `storage.search` - call search filters and portable (Mandarin-capable) transcript search.
* `storage.kpis` - per-agent / per-queue KPIs over a period.
* `storage.access` - `AccessStore`: API users, hashed tokens, QA reviews, and the append-only,
  hash-chained audit log (`storage.audit`).
* `storage.recordings` - `WavRecorder` (crash-safe growing WAV) and `repair_wav`.
* `storage.errors` - `StorageError` and its few subclasses.
"""

from storage.errors import (
    BatchRejected,
    MigrationError,
    RecordingError,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "BatchRejected",
    "MigrationError",
    "RecordingError",
    "StorageError",
    "StorageUnavailable",
]
