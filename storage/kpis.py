"""Per-agent and per-queue KPIs over a period, from the stored calls and their results.

Definitions (a call belongs to the period by its `started_at`, `since` inclusive, `until`
exclusive; calls without an agent/queue are grouped under the key None):

* `calls` - calls started in the period (any status); `completed` / `interrupted` by status.
* `avg_handle_ms` - mean `duration_ms` of the closed calls (still-active calls have none).
* `avg_first_response_ms` - mean of the conversation result's `first_response_ms` (the
  agent's first words after the customer first spoke), over calls that have one.
* `avg_talk_ratio` - mean of the conversation result's `agent_talk_ratio` (agent talk over
  agent + customer talk), over calls that have one.
* `dead_air_share` - total dead air over total conversation time, summed over the calls with
  a conversation result (a ratio of sums, so long calls weigh by their length).
* `compliance_rate` - share of calls with a compliance result whose `passed` is true.
* `grades` - calls per grade (excellent / good / pass / needs_improvement) and `ungraded`.
* `alerts` - alerts raised on those calls, by kind, and `alerts_by_severity`.

Averages are None where no call had the value. Aggregation runs in Python over one query per
table, because the values live in JSON documents whose SQL accessors differ between SQLite
and PostgreSQL; the period and key filters are indexed on `calls`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, case, func, select
from sqlalchemy.orm import Session

from storage.analysis import GRADES
from storage.models import Base, Call, CallResultRow

GROUP_COLUMNS = {"agent": Call.agent_id, "queue": Call.queue}
_RESULTS: Table = CallResultRow.__table__  # type: ignore[assignment]


@dataclass
class GroupKpis:
    key: str | None
    calls: int = 0
    completed: int = 0
    interrupted: int = 0
    avg_handle_ms: float | None = None
    avg_first_response_ms: float | None = None
    avg_talk_ratio: float | None = None
    dead_air_share: float | None = None
    compliance_rate: float | None = None
    grades: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    alerts_by_severity: dict[str, int] = field(default_factory=dict)


@dataclass
class _Acc:
    calls: int = 0
    status: Counter[str] = field(default_factory=Counter)
    durations: list[int] = field(default_factory=list)
    first_responses: list[float] = field(default_factory=list)
    talk_ratios: list[float] = field(default_factory=list)
    dead_air_ms: int = 0
    conversation_ms: int = 0
    compliance: list[bool] = field(default_factory=list)
    grades: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(GRADES, 0)))
    alerts: Counter[str] = field(default_factory=Counter)
    severities: Counter[str] = field(default_factory=Counter)


def compute(
    session: Session,
    *,
    group_by: str,
    since: datetime,
    until: datetime,
    key: str | None = None,
) -> list[GroupKpis]:
    """KPIs per agent or queue (`group_by`), optionally for one `key` only, sorted by key."""
    if group_by not in GROUP_COLUMNS:
        raise ValueError(f"group_by must be one of {tuple(GROUP_COLUMNS)}, got {group_by!r}")
    for name, value in (("since", since), ("until", until)):
        if value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    column = GROUP_COLUMNS[group_by]
    where: list[ColumnElement[bool]] = [Call.started_at >= since, Call.started_at < until]
    if key is not None:
        where.append(column == key)
    calls = session.execute(
        select(Call.id, column, Call.status, Call.duration_ms, Call.grade).where(*where)
    ).all()
    group_of = {call_id: k for call_id, k, *_ in calls}
    accs: dict[str | None, _Acc] = {}
    for _call_id, k, status, duration_ms, grade in calls:
        acc = accs.setdefault(k, _Acc())
        acc.calls += 1
        acc.status[status] += 1
        if status != "active" and duration_ms is not None:
            acc.durations.append(duration_ms)
        acc.grades[grade if grade is not None else "ungraded"] += 1
    ids = select(Call.id).where(*where).scalar_subquery()
    results = session.execute(
        select(_RESULTS.c.call_id, _RESULTS.c.kind, _RESULTS.c.data).where(
            _RESULTS.c.call_id.in_(ids),
            _RESULTS.c.party == "",
            _RESULTS.c.kind.in_(("conversation", "compliance")),
        )
    ).all()
    for call_id, kind, data in results:
        _add_result(accs[group_of[call_id]], kind, data)
    alerts = Base.metadata.tables.get("alerts")
    if alerts is not None:
        rows = session.execute(
            select(alerts.c.call_id, alerts.c.kind, alerts.c.severity).where(
                alerts.c.call_id.in_(ids)
            )
        ).all()
        for call_id, kind, severity in rows:
            acc = accs[group_of[call_id]]
            acc.alerts[kind] += 1
            acc.severities[severity] += 1
    return [_finish(k, accs[k]) for k in sorted(accs, key=lambda k: (k is None, k or ""))]


def _add_result(acc: _Acc, kind: str, data: dict[str, Any]) -> None:
    if kind == "compliance":
        if isinstance(data.get("passed"), bool):
            acc.compliance.append(data["passed"])
        return
    if (first := data.get("first_response_ms")) is not None:
        acc.first_responses.append(float(first))
    if (ratio := data.get("agent_talk_ratio")) is not None:
        acc.talk_ratios.append(float(ratio))
    if data.get("duration_ms"):
        acc.dead_air_ms += int(data.get("dead_air_total_ms") or 0)
        acc.conversation_ms += int(data["duration_ms"])


def _mean(values: list[float] | list[int]) -> float | None:
    return sum(values) / len(values) if values else None


def _finish(key: str | None, acc: _Acc) -> GroupKpis:
    return GroupKpis(
        key=key,
        calls=acc.calls,
        completed=acc.status["completed"],
        interrupted=acc.status["interrupted"],
        avg_handle_ms=_mean(acc.durations),
        avg_first_response_ms=_mean(acc.first_responses),
        avg_talk_ratio=_mean(acc.talk_ratios),
        dead_air_share=acc.dead_air_ms / acc.conversation_ms if acc.conversation_ms else None,
        compliance_rate=_mean([1.0 if p else 0.0 for p in acc.compliance]),
        grades=dict(acc.grades),
        alerts=dict(sorted(acc.alerts.items())),
        alerts_by_severity=dict(sorted(acc.severities.items())),
    )


@dataclass(frozen=True, slots=True)
class DayTotals:
    """Finished calls started since a moment, counted in SQL (no cap on how many): what the
    live board's KPI strip starts from after a restart."""

    handled: int  # closed calls with a duration
    handle_ms: int
    scored: int  # of those, graded
    compliance_sum: float  # over graded calls with a compliance score
    compliance_n: int
    needs_improvement: int


def day_totals(session: Session, since: datetime) -> DayTotals:
    graded = Call.grade.is_not(None)
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Call.duration_ms), 0),
            func.count(Call.grade),
            func.coalesce(func.sum(case((graded, Call.compliance_score))), 0.0),
            func.count(case((graded, Call.compliance_score))),
            func.count(case((Call.grade == "needs_improvement", 1))),
        ).where(Call.started_at >= since, Call.status != "active", Call.duration_ms.is_not(None))
    ).one()
    return DayTotals(int(row[0]), int(row[1]), int(row[2]), float(row[3]), int(row[4]), int(row[5]))
