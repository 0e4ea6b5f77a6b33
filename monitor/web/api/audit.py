"""The audit trail: writing a row for each access to call content, and reading the trail.

Actions: `transcript.view` (call detail), `recording.play` / `recording.download`,
`export.vcon`, `review.view` / `review.create`, `calls.search` (a transcript search: `q`),
`login` (failed logins only), `audit.view`. Each row has the caller's address (`client`) and
joins the hash chain (storage/audit.py; `callwatch audit verify`).
Results: `allowed`, `denied` (401/403, written by `require_role`), `failed` (allowed, but
nothing to give: no such call or recording, or an unsatisfiable range).

The trail is only ever appended to: this router has nothing but GET, and the database
refuses UPDATE/DELETE on it (migration 0004's triggers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from monitor.web.api.auth import Ctx, Principal, require_role
from monitor.web.api.context import ApiContext
from monitor.web.api.params import aware

router = APIRouter(prefix="/api", tags=["audit"])


def record(
    ctx: ApiContext,
    user: Principal,
    action: str,
    *,
    call_id: str | None,
    status: int = 200,
    start_ms: int | None = None,
    end_ms: int | None = None,
    **detail: Any,
) -> None:
    """An `allowed` row (status < 400) or a `failed` one for `user` doing `action`."""
    ctx.access.audit(
        at=ctx.clock(),
        action=action,
        result="allowed" if status < 400 else "failed",
        status=status,
        username=user.username,
        role=user.role,
        call_id=call_id,
        start_ms=start_ms,
        end_ms=end_ms,
        detail={k: v for k, v in detail.items() if v is not None},
        client=user.client,
    )


class AuditOut(BaseModel):
    id: int
    at: datetime
    username: str | None
    role: str | None
    action: str
    call_id: str | None
    start_ms: int | None
    end_ms: int | None
    result: Literal["allowed", "denied", "failed"]
    status: int
    detail: dict[str, Any]
    client: str | None = None


AuditAdmin = Annotated[Principal, Depends(require_role("admin", audit="audit.view"))]


@router.get("/audit", responses={401: {"description": "not authenticated"},
                                 403: {"description": "admins only"}})  # fmt: skip
def list_audit(
    user: AuditAdmin,
    ctx: Ctx,
    call_id: Annotated[str | None, Query(max_length=64)] = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    result: Literal["allowed", "denied", "failed"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    order: Annotated[
        Literal["newest", "oldest"], Query(description="newest first (default) or oldest first")
    ] = "newest",
) -> list[AuditOut]:
    """The audit trail, newest first unless `order=oldest` (admins only; reading it is
    itself audited)."""
    rows = ctx.access.list_audit(
        call_id=call_id, username=username, action=action, result=result,
        since=aware(since, "since"), until=aware(until, "until"), limit=limit, offset=offset,
        newest_first=order == "newest",
    )  # fmt: skip
    record(ctx, user, "audit.view", call_id=call_id, rows=len(rows))
    return [
        AuditOut(
            id=a.audit_id,
            at=a.at,
            username=a.username,
            role=a.role,
            action=a.action,
            call_id=a.call_id,
            start_ms=a.start_ms,
            end_ms=a.end_ms,
            result=a.result,  # type: ignore[arg-type]
            status=a.status,
            detail=a.detail,
            client=a.client,
        )  # fmt: skip
        for a in rows
    ]
