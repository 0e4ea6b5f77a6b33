"""The read queries over calls: the ones crash recovery asks (calls left active, calls never
finalised), the call list with filters and transcript search, one call in detail, and the
doors to search, KPIs and analysis (`storage/search.py`, `kpis.py`, `analysis.py`).

`CallQueries` is a part of `Repository` (storage/repository.py), which supplies the read
session: one snapshot per unit of work. Results are frozen dataclasses in storage's own
vocabulary (`storage.models`); ORM objects never leave these methods.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage import analysis, kpis, nodes, search
from storage.kpis import DayTotals
from storage.models import (
    CALL_STATUSES,
    Call,
    CallDetail,
    CallSummary,
    PartyInfo,
    Segment,
    SegmentInfo,
    TraceEvent,
    TraceInfo,
)

MAX_LIST_LIMIT = 1000


class CallQueries:
    """The call reads of `Repository`; it provides `_session`."""

    def _session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def active_calls(self, node: str | None = None) -> list[CallSummary]:
        """Calls still 'active', oldest first: at start-up these were cut off by a crash.
        With `node` (scale-out), only that node's calls: the others' are alive elsewhere."""
        stmt = select(Call).where(Call.status == "active").order_by(Call.started_at, Call.id)
        if node is not None:
            stmt = stmt.where(Call.node == node)
        with self._session() as session:
            return [_summary(call) for call in session.scalars(stmt)]

    def unfinalised_calls(self, since: datetime, node: str | None = None) -> list[CallSummary]:
        """Calls that ended since `since` but never got their verdict (no `finalised` trace
        entry): a crash came between hang-up and the call's last transcript. With `node`
        (scale-out), only that node's: another node's may still be waiting for transcripts."""
        finalised = select(TraceEvent.call_id).where(
            TraceEvent.call_id == Call.id, TraceEvent.kind == "finalised"
        )
        stmt = (
            select(Call)
            .where(Call.status != "active", Call.ended_at >= since, ~finalised.exists())
            .order_by(Call.started_at, Call.id)
        )
        if node is not None:
            stmt = stmt.where(Call.node == node)
        with self._session() as session:
            return [_summary(call) for call in session.scalars(stmt)]

    def next_trace_seq(self, call_id: str) -> int:
        """The seq the call's next trace row gets: one past the highest stored, 0 if none
        (numbers written by other nodes, `nodes.FOREIGN_SEQ_BASE` up, are not the call's)."""
        stmt = select(func.max(TraceEvent.seq)).where(
            TraceEvent.call_id == call_id, TraceEvent.seq < nodes.FOREIGN_SEQ_BASE
        )
        with self._session() as session:
            highest = session.scalar(stmt)
        return 0 if highest is None else highest + 1

    def list_calls(
        self,
        *,
        text: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
        caller: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[CallSummary]:
        """Calls matching every given filter, newest first.

        `text` is a case-insensitive substring of any transcript segment of the call, matched
        character by character (so Mandarin needs no word segmentation); `%` and `_` in it are
        literal. `since` is inclusive and `until` exclusive, both on `started_at`.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        if status is not None and status not in CALL_STATUSES:
            raise ValueError(f"status must be one of {CALL_STATUSES}, got {status!r}")
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
        stmt = select(Call)
        if text:
            matching = select(Segment.call_id).where(Segment.text.icontains(text, autoescape=True))
            stmt = stmt.where(Call.id.in_(matching))
        for column, wanted in (
            (Call.agent_id, agent),
            (Call.queue, queue),
            (Call.caller, caller),
            (Call.status, status),
        ):
            if wanted is not None:
                stmt = stmt.where(column == wanted)
        if since is not None:
            stmt = stmt.where(Call.started_at >= since)
        if until is not None:
            stmt = stmt.where(Call.started_at < until)
        stmt = stmt.order_by(Call.started_at.desc(), Call.id.desc()).limit(limit)
        with self._session() as session:
            return [_summary(call) for call in session.scalars(stmt)]

    def search_calls(self, query: search.CallQuery) -> tuple[list[CallSummary], int]:
        """One page of calls matching `query` and the total count (see storage/search.py)."""
        with self._session() as session:
            return search.search_calls(session, query)

    def kpis(
        self, *, group_by: str, since: datetime, until: datetime, key: str | None = None
    ) -> list[kpis.GroupKpis]:
        """Per-agent or per-queue KPIs over a period (see storage/kpis.py)."""
        with self._session() as session:
            return kpis.compute(session, group_by=group_by, since=since, until=until, key=key)

    def day_totals(self, since: datetime) -> DayTotals:
        """Finished calls started at or after `since`, totalled in SQL (storage/kpis.py)."""
        with self._session() as session:
            return kpis.day_totals(session, since)

    def get_call(self, call_id: str) -> CallDetail | None:
        """One call with parties, transcript and trace, or None.

        `call_id` may be our id, the switch's external id (the newest call with it wins), or a
        prefix of our id that matches exactly one call (an ambiguous prefix gives None).
        """
        if not call_id:
            return None
        with self._session() as session:
            call = session.get(Call, call_id)
            if call is None:
                call = session.scalars(
                    select(Call)
                    .where(Call.external_id == call_id)
                    .order_by(Call.started_at.desc(), Call.id.desc())
                    .limit(1)
                ).first()
            if call is None:
                # substr, not LIKE: SQLite's LIKE ignores ASCII case and ids are case-sensitive.
                found = session.scalars(
                    select(Call).where(func.substr(Call.id, 1, len(call_id)) == call_id).limit(2)
                ).all()
                call = found[0] if len(found) == 1 else None
            if call is None:
                return None
            segments = session.scalars(
                select(Segment)
                .where(Segment.call_id == call.id)
                .order_by(Segment.start_ms, Segment.party, Segment.id)
            )
            trace = session.scalars(
                select(TraceEvent).where(TraceEvent.call_id == call.id).order_by(TraceEvent.seq)
            )
            return CallDetail(
                **_summary_fields(call),
                metadata=dict(call.metadata_),
                parties=tuple(PartyInfo(p.party, p.channel, p.samples) for p in call.parties),
                segments=tuple(
                    SegmentInfo(
                        s.id,
                        s.party,
                        s.start_ms,
                        s.end_ms,
                        s.text,
                        s.language,
                        s.confidence,
                        s.latency_ms,
                        s.late,
                    )
                    for s in segments
                ),
                trace=tuple(
                    TraceInfo(t.seq, t.kind, t.at, t.media_ms, t.party, dict(t.data)) for t in trace
                ),
            )

    def call_ids_for_external(self, external_id: str) -> list[str]:
        """Our ids of every call with this switch call id, newest first (a switch may reuse
        its ids: the API answers 409 rather than pick one)."""
        with self._session() as session:
            return list(
                session.scalars(
                    select(Call.id)
                    .where(Call.external_id == external_id)
                    .order_by(Call.started_at.desc(), Call.id.desc())
                )
            )

    def get_analysis(self, call_id: str) -> analysis.CallAnalysis:
        """Quality readings, findings and result documents of one call (by our id)."""
        with self._session() as session:
            return analysis.load(session, call_id)


def _summary_fields(call: Call) -> dict[str, Any]:
    # CallSummary's fields are the calls columns by name, except our id is `call_id` there.
    return {
        f.name: call.id if f.name == "call_id" else getattr(call, f.name)
        for f in fields(CallSummary)
    }


def summary(call: Call) -> CallSummary:
    """A calls row as the storage dataclass (also used by storage.search)."""
    return CallSummary(**_summary_fields(call))


_summary = summary
