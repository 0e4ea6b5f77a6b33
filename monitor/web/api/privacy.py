"""Admin privacy routes: erasure requests, legal holds, an on-demand retention pass, and the
410 answer for calls that retention or erasure deleted.

Every route is for admins and writes an audit row. The erasure row never holds the number
asked for, only its pseudonym (`subject`): the trail must not re-create what was erased.
A call under legal hold is kept by retention and by erasure (the erasure report lists it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from monitor.runtime.retention import privacy_store, retention_pass
from monitor.web.api.audit import record
from monitor.web.api.auth import Ctx, Principal, require_role
from monitor.web.api.context import ApiContext

router = APIRouter(prefix="/api/admin", tags=["privacy"])
_ADMIN_ONLY: dict[int | str, dict[str, Any]] = {
    401: {"description": "not authenticated"},
    403: {"description": "admins only"},
}
CallId = Annotated[str, Path(min_length=1, max_length=64)]


def gone_410(ctx: ApiContext, user: Principal, call_id: str, action: str, scope: str) -> None:
    """Answer 410 Gone (audited, with the pseudonym if erased) when `call_id` (or only its
    recording, scope "recording") has a tombstone; return when it has none."""
    gone = privacy_store(ctx.settings, ctx.repo.engine).deleted(call_id, scope)
    if gone is None:
        return
    record(ctx, user, action, call_id=gone.call_ref, status=410, reason=gone.reason)
    raise HTTPException(
        410, f"this {scope} was deleted by {gone.reason} at {gone.deleted_at.isoformat()}"
    )


class ErasureIn(BaseModel):
    caller: str = Field(min_length=3, max_length=64, description="the customer's number")


class ErasureOut(BaseModel):
    request_id: int
    subject: str
    requested_at: datetime
    completed_at: datetime
    calls_erased: int
    calls_held: list[str]
    calls_active: list[str]
    files_removed: int


Admin = Annotated[Principal, Depends(require_role("admin", audit="privacy.admin"))]


@router.post("/erasures", responses=_ADMIN_ONLY)
def erase(body: ErasureIn, user: Admin, ctx: Ctx) -> ErasureOut:
    """Erase every call of a customer (caller or callee): recordings, transcripts, search
    entries and all derived rows. Audit rows stay, pseudonymised. Calls under legal hold and
    calls still running are kept and listed; run the request again once they end."""
    report = privacy_store(ctx.settings, ctx.repo.engine).erase_caller(
        body.caller, actor=user.username, at=ctx.clock()
    )
    record(ctx, user, "privacy.erase", call_id=None, subject=report.subject,
           request_id=report.request_id, calls=report.calls_erased)  # fmt: skip
    return ErasureOut(
        request_id=report.request_id, subject=report.subject,
        requested_at=report.requested_at, completed_at=report.completed_at,
        calls_erased=report.calls_erased, calls_held=list(report.calls_held),
        calls_active=list(report.calls_active), files_removed=report.files_removed,
    )  # fmt: skip


class HoldIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class HoldOut(BaseModel):
    call_id: str
    reason: str
    set_by: str
    set_at: datetime


@router.put("/calls/{call_id}/legal-hold", responses=_ADMIN_ONLY)
def set_hold(call_id: CallId, body: HoldIn, user: Admin, ctx: Ctx) -> HoldOut:
    """Keep this call from retention and erasure until the hold is lifted."""
    at = ctx.clock()
    ok = privacy_store(ctx.settings, ctx.repo.engine).set_hold(
        call_id, reason=body.reason, actor=user.username, at=at
    )
    record(ctx, user, "legal_hold.set", call_id=call_id, status=200 if ok else 404,
           reason=body.reason)  # fmt: skip
    if not ok:
        raise HTTPException(404, f"no call {call_id!r}: search with GET /api/calls")
    return HoldOut(call_id=call_id, reason=body.reason, set_by=user.username, set_at=at)


@router.delete("/calls/{call_id}/legal-hold", status_code=204, responses=_ADMIN_ONLY)
def clear_hold(call_id: CallId, user: Admin, ctx: Ctx) -> None:
    """Lift a legal hold: retention applies to the call again from the next pass."""
    ok = privacy_store(ctx.settings, ctx.repo.engine).clear_hold(call_id)
    record(ctx, user, "legal_hold.clear", call_id=call_id, status=204 if ok else 404)
    if not ok:
        raise HTTPException(404, f"call {call_id!r} has no legal hold")


@router.get("/legal-holds", responses=_ADMIN_ONLY)
def list_holds(user: Admin, ctx: Ctx) -> list[HoldOut]:
    holds = privacy_store(ctx.settings, ctx.repo.engine).holds()
    return [HoldOut(call_id=h.call_id, reason=h.reason, set_by=h.set_by, set_at=h.set_at)
            for h in holds]  # fmt: skip


class RetentionOut(BaseModel):
    ran_at: datetime
    calls_deleted: int
    recordings_deleted: int
    files_removed: int
    held_skipped: int


@router.post("/retention/run", responses=_ADMIN_ONLY)
def run_retention(user: Admin, ctx: Ctx) -> RetentionOut:
    """Run a retention pass now (the server also runs one every `retention.interval_s`)."""
    r = retention_pass(ctx.settings, ctx.repo.engine, ctx.clock())
    record(ctx, user, "retention.run", call_id=None, calls=r.calls_deleted,
           recordings=r.recordings_deleted)  # fmt: skip
    return RetentionOut(ran_at=r.ran_at, calls_deleted=r.calls_deleted,
                        recordings_deleted=r.recordings_deleted, files_removed=r.files_removed,
                        held_skipped=r.held_skipped)  # fmt: skip
