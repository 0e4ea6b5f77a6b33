"""The shape of stored calls: the SQL schema as SQLAlchemy 2.0 declarative models and the
frozen dataclasses the repository returns instead of them.

This package owns the *shape* of the database; `storage/migrations/versions/` owns how a
database gets that shape, and a test checks the two agree (alembic `compare_metadata`) on
SQLite and PostgreSQL. ORM classes stay inside `storage`: the repository maps rows to the
dataclasses, which hold no session state and can cross threads.

The tables by domain, one module each:

* `calls` - the declarative base and its portable types; calls, parties, transcript segments,
  trace events; `CallSummary`, `CallDetail` and their parts.
* `analysis` - quality readings, findings, call results, alerts, webhook deliveries, id
  blocks; `AlertInfo`, `OutboxInfo`.
* `governance` - users, login tokens, the audit log, QA reviews, legal holds, erasure
  requests, tombstones.

Importing this package imports all three, so `Base.metadata` always holds every table (the
migrations' comparison and `create_all` depend on it); the names are importable from here.
"""

from storage.models.analysis import (
    AlertInfo,
    AlertRow,
    CallResultRow,
    FindingRow,
    IdBlock,
    OutboxInfo,
    QualityReadingRow,
    WebhookOutboxRow,
)
from storage.models.calls import (
    CALL_STATUSES,
    NAMING_CONVENTION,
    Base,
    BigIntKey,
    Call,
    CallDetail,
    CallSummary,
    JsonType,
    Party,
    PartyInfo,
    Segment,
    SegmentInfo,
    TraceEvent,
    TraceInfo,
    UtcDateTime,
)
from storage.models.governance import (
    ApiToken,
    AuditEntry,
    ErasureRequest,
    LegalHold,
    QaReview,
    Tombstone,
    User,
)

__all__ = [
    "CALL_STATUSES",
    "NAMING_CONVENTION",
    "AlertInfo",
    "AlertRow",
    "ApiToken",
    "AuditEntry",
    "Base",
    "BigIntKey",
    "Call",
    "CallDetail",
    "CallResultRow",
    "CallSummary",
    "ErasureRequest",
    "FindingRow",
    "IdBlock",
    "JsonType",
    "LegalHold",
    "OutboxInfo",
    "Party",
    "PartyInfo",
    "QaReview",
    "QualityReadingRow",
    "Segment",
    "SegmentInfo",
    "Tombstone",
    "TraceEvent",
    "TraceInfo",
    "User",
    "UtcDateTime",
    "WebhookOutboxRow",
]
