"""Pausing and resuming a live call's capture from the API (PCI DSS: stop recording while a
customer reads out card data; docs/privacy.md).

`POST /api/calls/{call_id}/pause` and `/resume` (supervisor or admin; the call id or the
switch's id of a call that is live on this node). While paused, the call's recording gets
zeros instead of the audio, ASR and the quality measures get nothing to hear, the board shows
the call as paused, and the trace records who paused and resumed it and when. Each request is
audited. A call that is not live (or has hung up, its verdict still to come) answers 404;
pausing a paused call changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from monitor.web.api.audit import record
from monitor.web.api.auth import Ctx, Principal, authorize, optional_user
from monitor.web.api.context import LiveCallControl

router = APIRouter(prefix="/api", tags=["calls"])
CallId = Annotated[str, Path(min_length=1, max_length=128)]
ROLES = ("supervisor", "admin")


def _live(ctx: Ctx, call_id: str) -> LiveCallControl:
    calls = ctx.live or {}
    call = calls.get(call_id) or next(
        (c for c in list(calls.values()) if c.metadata.external_id == call_id), None
    )
    if call is None:
        raise HTTPException(404, f"call {call_id} is not live on this node: nothing to pause")
    if call.completion is not None:  # hung up, its verdict still to come: nothing to capture
        raise HTTPException(404, f"call {call_id} has ended: nothing to pause or resume")
    return call


async def _set(
    ctx: Ctx, request: Request, user: Principal | None, call_id: str, paused: bool
) -> dict[str, Any]:
    audit = "capture.pause" if paused else "capture.resume"
    who = authorize(request, ctx, user, ROLES, audit)
    call = _live(ctx, call_id)
    changed = await call.set_capture(paused=paused, by=who.username, how="api")
    record(ctx, who, audit, call_id=call.call_id, changed=changed)
    return {"call_id": call.call_id, "paused": paused, "changed": changed}


User = Annotated[Principal | None, Depends(optional_user)]
_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not authenticated"},
    403: {"description": "role not allowed (supervisor or admin)"},
    404: {"description": "the call is not live on this node"},
}


@router.post("/calls/{call_id}/pause", responses=_ANSWERS)
async def pause(call_id: CallId, request: Request, ctx: Ctx, user: User) -> dict[str, Any]:
    """Stop capturing the call's audio (the recording gets zeros, no ASR) until `/resume`."""
    return await _set(ctx, request, user, call_id, paused=True)


@router.post("/calls/{call_id}/resume", responses=_ANSWERS)
async def resume(call_id: CallId, request: Request, ctx: Ctx, user: User) -> dict[str, Any]:
    """Capture the call's audio again."""
    return await _set(ctx, request, user, call_id, paused=False)
