"""Alert and KPI routes: the alert list with acknowledge/resolve, and per-agent / per-queue
KPIs over a period (definitions in storage/kpis.py).

Acknowledge/resolve go through the alert service when callwatch runs (it persists, traces and
publishes the change on the bus for the board and webhooks); an API built on a repository
alone (tests, tools) changes the stored state directly.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel

from monitor.web.api.auth import ANY_ROLE, Ctx, Principal, require_role
from monitor.web.api.context import ApiContext
from monitor.web.api.params import aware
from storage.errors import AlertNotFound, InvalidAlertTransition
from storage.models import AlertInfo

router = APIRouter(prefix="/api", tags=["alerts", "kpis"])
AlertId = Annotated[int, Path(ge=1, le=2**62)]
Viewer = Annotated[Principal, Depends(require_role(*ANY_ROLE))]
Handler = Annotated[Principal, Depends(require_role("supervisor", "admin"))]
_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "not authenticated"}}


class AlertOut(BaseModel):
    id: int
    call_id: str
    rule: str
    kind: str
    severity: str
    state: Literal["open", "acknowledged", "resolved"]
    raised_at: datetime
    media_start_ms: int | None
    media_end_ms: int | None
    party: str | None
    message: str
    evidence: dict[str, Any]
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    agent_id: str | None
    queue: str | None


def _out(a: AlertInfo) -> AlertOut:
    return AlertOut(**asdict(a))


@router.get("/alerts", responses=_AUTH)
def list_alerts(
    _: Viewer,
    ctx: Ctx,
    state: Literal["open", "acknowledged", "resolved"] | None = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    call_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AlertOut]:
    """Alerts, newest first, filtered by state, kind, call and raise time."""
    alerts = ctx.repo.list_alerts(
        call_id=call_id, state=state, kind=kind, since=aware(since, "since"),
        until=aware(until, "until"), limit=limit, offset=offset,
    )  # fmt: skip
    return [_out(a) for a in alerts]


@router.get("/alerts/{alert_id}", responses={**_AUTH, 404: {"description": "no such alert"}})
def get_alert(alert_id: AlertId, _: Viewer, ctx: Ctx) -> AlertOut:
    alert = ctx.repo.get_alert(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    return _out(alert)


_CHANGE: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    403: {"description": "supervisor or admin only"},
    404: {"description": "no such alert"},
    409: {"description": "not allowed from the alert's state"},
}


@router.post("/alerts/{alert_id}/acknowledge", responses=_CHANGE)
async def acknowledge(alert_id: AlertId, user: Handler, ctx: Ctx) -> AlertOut:
    """open -> acknowledged (acknowledging again changes nothing)."""
    return await _change(ctx, alert_id, "acknowledged", user)


@router.post("/alerts/{alert_id}/resolve", responses=_CHANGE)
async def resolve(alert_id: AlertId, user: Handler, ctx: Ctx) -> AlertOut:
    """open or acknowledged -> resolved."""
    return await _change(ctx, alert_id, "resolved", user)


async def _change(ctx: ApiContext, alert_id: int, state: str, user: Principal) -> AlertOut:
    import asyncio

    try:
        if ctx.alerts is not None:
            verb = ctx.alerts.acknowledge if state == "acknowledged" else ctx.alerts.resolve
            alert = await verb(alert_id, user.username)
        else:
            alert = await asyncio.to_thread(
                ctx.repo.set_alert_state, alert_id, state, by=user.username, at=ctx.clock()
            )
    except AlertNotFound:
        raise HTTPException(404, f"no alert {alert_id}") from None
    except InvalidAlertTransition as exc:
        raise HTTPException(409, str(exc)) from None
    return _out(alert)


# -- KPIs -----------------------------------------------------------------------------------


class KpiGroup(BaseModel):
    key: str | None
    calls: int
    completed: int
    interrupted: int
    avg_handle_ms: float | None
    avg_first_response_ms: float | None
    avg_talk_ratio: float | None
    dead_air_share: float | None
    compliance_rate: float | None
    grades: dict[str, int]
    alerts: dict[str, int]
    alerts_by_severity: dict[str, int]


class KpiReport(BaseModel):
    by: Literal["agent", "queue"]
    since: datetime
    until: datetime
    groups: list[KpiGroup]


@router.get("/kpis", responses=_AUTH)
def kpis(
    _: Viewer,
    ctx: Ctx,
    by: Literal["agent", "queue"],
    since: Annotated[datetime | None, Query(description="default: 7 days before `until`")] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
    key: Annotated[
        str | None, Query(min_length=1, max_length=128, description="one agent or queue")
    ] = None,
) -> KpiReport:
    """Per-agent or per-queue KPIs of the calls started in [since, until): count, average
    handle time, first response time, talk ratio, dead-air share, compliance rate, grade
    distribution and alert counts."""
    end = aware(until, "until") or ctx.clock()
    start = aware(since, "since") or end - timedelta(days=7)
    if start >= end:
        raise HTTPException(400, "since must be before until")
    groups = ctx.repo.kpis(group_by=by, since=start, until=end, key=key)
    return KpiReport(by=by, since=start, until=end,
                     groups=[KpiGroup(**asdict(g)) for g in groups])  # fmt: skip
