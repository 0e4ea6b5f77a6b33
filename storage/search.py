"""Call search: every filter of the API's call list, and transcript full-text search that
works the same on SQLite and PostgreSQL, Mandarin included.

Full text, the choice: a query is normalised (NFKC, so full-width Latin and digits become
ASCII; Traditional to Simplified Chinese with OpenCC, as the ASR stores Simplified;
lower case) and cut into terms at whitespace and punctuation (ASCII and CJK). A call matches
when *each* term occurs as a substring of one of its transcript segments, compared with
`lower(text) LIKE lower('%term%') ESCAPE '/'` (`%`, `_` and `/` in the term are escaped, so
they match literally). Substring matching is character-level: Mandarin needs no word
segmentation, and "退款" finds "我要退款了" exactly as "refund" finds "refunded".

Why not the engines' full-text search: SQLite FTS5 and PostgreSQL tsvector tokenise by
words, which splits Chinese badly (or not at all) without extra tokenisers (jieba,
zhparser) that are not portable; a pg_trgm index needs an extension and the right locale for
CJK. Why not our own character n-gram table: it costs a write per character and a second
source of truth for the transcript. LIKE on the stored text is one portable query with
identical results on both backends; its cost is a scan of the segments of the calls that
pass the other filters (time range, agent, queue ... are indexed and applied first), which
is fine for a QA tool's searches over months of calls. If it ever is not, PostgreSQL can add
a pg_trgm GIN index on `lower(text)` without any change here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select, true
from sqlalchemy.orm import Session

from storage.analysis import GRADES
from storage.models import CALL_STATUSES, Base, Call, CallSummary, Segment

MAX_TERMS = 8
# Whitespace and punctuation (ASCII and the CJK/full-width forms Whisper writes).
_SEPARATORS = re.compile(r"[\s\.,;:!\?\"'()\[\]{}<>，。、；：！？“”‘’（）《》【】「」『』…—·～~-]+")


@dataclass(frozen=True, slots=True)
class CallQuery:
    """Filters of the call list; every one given must hold. Times are UTC-aware; `since`
    inclusive, `until` exclusive on `started_at`; durations in ms, both bounds inclusive."""

    text: str | None = None
    agent: str | None = None
    queue: str | None = None
    caller: str | None = None
    grade: str | None = None
    alert_kind: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None
    limit: int = 50
    offset: int = 0


def search_terms(text: str) -> list[str]:
    """The normalised terms of a full-text query (empty when it has none)."""
    text = unicodedata.normalize("NFKC", text)
    text = _t2s().convert(text).lower()
    return [t for t in _SEPARATORS.split(text) if t][:MAX_TERMS]


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def _conditions(q: CallQuery) -> list[ColumnElement[bool]]:
    if q.status is not None and q.status not in CALL_STATUSES:
        raise ValueError(f"status must be one of {CALL_STATUSES}, got {q.status!r}")
    if q.grade is not None and q.grade not in GRADES:
        raise ValueError(f"grade must be one of {GRADES}, got {q.grade!r}")
    for name in ("since", "until"):
        value = getattr(q, name)
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    where: list[ColumnElement[bool]] = []
    for column, wanted in (
        (Call.agent_id, q.agent),
        (Call.queue, q.queue),
        (Call.caller, q.caller),
        (Call.status, q.status),
        (Call.grade, q.grade),
    ):
        if wanted is not None:
            where.append(column == wanted)
    if q.since is not None:
        where.append(Call.started_at >= q.since)
    if q.until is not None:
        where.append(Call.started_at < q.until)
    if q.min_duration_ms is not None:
        where.append(Call.duration_ms >= q.min_duration_ms)
    if q.max_duration_ms is not None:
        where.append(Call.duration_ms <= q.max_duration_ms)
    for term in search_terms(q.text or ""):
        where.append(
            exists().where(
                Segment.call_id == Call.id,
                func.lower(Segment.text).contains(term, autoescape=True),
            )
        )
    if q.alert_kind is not None:
        alerts = Base.metadata.tables.get("alerts")
        if alerts is None:  # pragma: no cover - the alerts migration is part of head
            raise ValueError("alert search needs the alerts table")
        where.append(exists().where(alerts.c.call_id == Call.id, alerts.c.kind == q.alert_kind))
    return where


def search_calls(session: Session, q: CallQuery) -> tuple[list[CallSummary], int]:
    """One page of matching calls (newest first) and how many match in all
    (`Repository.search_calls` runs this in its read session)."""
    from storage.call_queries import summary

    where = _conditions(q)
    page = (
        select(Call)
        .where(and_(true(), *where))
        .order_by(Call.started_at.desc(), Call.id.desc())
        .limit(q.limit)
        .offset(q.offset)
    )
    count = select(func.count()).select_from(Call).where(and_(true(), *where))
    calls = [summary(c) for c in session.scalars(page)]
    total = int(session.scalar(count) or 0)
    return calls, total
