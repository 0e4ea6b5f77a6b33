"""Call routes: search, detail (the transcript view), the recording with range requests, the
vCon export and QA reviews. Every access to call content writes an audit row.

Roles (see docs/api.md "HTTP API"): every role may search, open a call and play its recording;
downloading the recording (`?download=true`), exporting a vCon and QA reviews are for
`qa` and `admin`.
"""

from __future__ import annotations

import errno
import logging
import secrets
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from email.utils import formatdate
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, StringConstraints

from monitor.events import missing_speech
from monitor.runtime.sealer import recording_keys
from monitor.web.api import media, vcon
from monitor.web.api.audit import record
from monitor.web.api.auth import ANY_ROLE, Ctx, Principal, authorize, optional_user, require_role
from monitor.web.api.context import ApiContext
from monitor.web.api.params import aware
from monitor.web.api.privacy import gone_410
from monitor.web.api.schemas import CallDetailOut, CallItem, CallPage, VconOut, in_media_order
from storage.encryption import DecryptionError
from storage.models import CallDetail
from storage.recordings import HEADER_BYTES
from storage.search import CallQuery

log = logging.getLogger("callwatch.api")
router = APIRouter(prefix="/api", tags=["calls"])
QA_ROLES = ("qa", "admin")
CallId = Annotated[str, Path(min_length=1, max_length=128)]
Filter = Annotated[str | None, Query(min_length=1, max_length=128)]
Ms = Annotated[int | None, Query(ge=0, le=10**11)]
_DENIED: dict[int | str, dict[str, Any]] = {
    401: {"description": "not authenticated"},
    403: {"description": "role not allowed"},
    404: {"description": "no such call"},
    409: {"description": "the switch's call id names several calls: `detail.call_ids`"},
}


@router.get("/calls", responses={401: {"description": "not authenticated"}})
def search_calls(
    user: Annotated[Principal, Depends(require_role(*ANY_ROLE))],
    ctx: Ctx,
    q: Annotated[
        str | None, Query(max_length=200, description="transcript words or characters")
    ] = None,
    agent: Filter = None,
    queue: Filter = None,
    caller: Filter = None,
    grade: Literal["excellent", "good", "pass", "needs_improvement"] | None = None,
    alert_kind: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="calls with an alert of this kind"),
    ] = None,
    status: Literal["active", "completed", "interrupted"] | None = None,
    since: Annotated[
        datetime | None, Query(description="started at or after (UTC if no zone)")
    ] = None,
    until: Annotated[datetime | None, Query(description="started before")] = None,
    min_duration_ms: Ms = None,
    max_duration_ms: Ms = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CallPage:
    """Calls matching every filter, newest first. `q` matches transcript text: each
    whitespace- or punctuation-separated term must occur in the call (Mandarin by characters,
    Traditional characters find Simplified, case-insensitive)."""
    query = CallQuery(
        text=q, agent=agent, queue=queue, caller=caller, grade=grade, alert_kind=alert_kind,
        status=status, since=aware(since, "since"), until=aware(until, "until"),
        min_duration_ms=min_duration_ms, max_duration_ms=max_duration_ms,
        limit=limit, offset=offset,
    )  # fmt: skip
    calls, total = ctx.repo.search_calls(query)
    if q is not None:  # searching transcripts reads call content: audited with the terms
        record(ctx, user, "calls.search", call_id=None, q=q, matches=total)
    items = [CallItem(**{k: v for k, v in asdict(c).items() if k in CallItem.model_fields})
             for c in calls]  # fmt: skip
    return CallPage(total=total, limit=limit, offset=offset, items=items)


def _find(ctx: ApiContext, user: Principal, call_id: str, action: str) -> CallDetail:
    call = ctx.repo.get_call(call_id)
    if call is None:
        gone_410(ctx, user, call_id, action, "call")
        record(ctx, user, action, call_id=call_id, status=404, reason="no such call")
        raise HTTPException(404, f"no call {call_id!r}: search with GET /api/calls")
    if call.call_id != call_id and call.external_id == call_id:
        ids = ctx.repo.call_ids_for_external(call_id)
        if len(ids) > 1:  # a switch reused its id: never pick one silently
            record(ctx, user, action, call_id=None, status=409, reason="ambiguous", ids=ids)
            message = f"the switch's call id {call_id!r} names {len(ids)} calls: use one of"
            raise HTTPException(409, {"message": f"{message} call_ids", "call_ids": ids})
    return call


def recording_failure(call: CallDetail) -> dict[str, Any] | None:
    """Where and why the call's recording stopped (its `recording_failed` trace entry, from
    monitor/runtime/recording.py), or None: the recording covers the call."""
    for t in call.trace:
        if t.kind == "recording_failed":
            return {"at_ms": t.media_ms or 0, "error": str(t.data.get("error", "")),
                    "reason": str(t.data.get("reason", "write failed"))}  # fmt: skip
    return None


def _duration_ms(call: CallDetail) -> int | None:
    if call.duration_ms is not None:
        return call.duration_ms
    if call.recording_frames and call.sample_rate:
        return call.recording_frames * 1000 // call.sample_rate
    return None


@router.get("/calls/{call_id}", responses=_DENIED)
def call_detail(
    call_id: CallId,
    user: Annotated[Principal, Depends(require_role(*ANY_ROLE, audit="transcript.view"))],
    ctx: Ctx,
    readings: Annotated[bool, Query(description="include the periodic quality readings")] = False,
) -> CallDetailOut:
    """One call: parties, transcript, quality, compliance, findings, alerts and trace
    (`call_id` may also be the switch's call id or a unique prefix). Audited."""
    call = _find(ctx, user, call_id, "transcript.view")
    analysis = ctx.repo.get_analysis(call.call_id)
    alerts = ctx.repo.list_alerts(call_id=call.call_id, limit=1000)
    record(ctx, user, "transcript.view", call_id=call.call_id, start_ms=0,
           end_ms=_duration_ms(call), segments=len(call.segments))  # fmt: skip
    body = asdict(call)
    body["transcript"] = body.pop("segments")
    body["trace"] = [asdict(t) for t in in_media_order(call.trace)]
    body["recording_url"] = f"/api/calls/{call.call_id}/recording"
    body["recording_failed"] = recording_failure(call)
    body["transcript_missing"] = missing_speech(call.trace)
    body["transcript_complete"] = not body["transcript_missing"]
    body |= analysis.document(readings)
    body["alerts"] = [asdict(a) for a in alerts]
    return CallDetailOut.model_validate(body)


@router.head(
    "/calls/{call_id}/recording",
    response_class=Response,
    operation_id="recording_head",
    responses={**_DENIED, 200: {"description": "size and range support, no audio"}},
)
@router.get(
    "/calls/{call_id}/recording",
    response_class=Response,
    responses={
        **_DENIED,
        200: {
            "content": {"audio/wav": {}},
            "description": "the whole recording",
            "headers": media.VERSION_HEADERS,
        },
        206: {
            "content": {"audio/wav": {}},
            "description": "the requested byte range",
            "headers": media.VERSION_HEADERS,
        },
        409: {"description": "the switch's call id names several calls (their ids listed)"},
        416: {"description": "range starts past the end"},
        503: {"description": media.WITHHELD + " (Retry-After)"},
    },
)
def recording(
    call_id: CallId,
    request: Request,
    ctx: Ctx,
    user: Annotated[Principal | None, Depends(optional_user)],
    download: Annotated[bool, Query(description="as an attachment (qa, admin)")] = False,
) -> Response:
    """The call's WAV recording (one channel per party). Supports `Range: bytes=...` for
    seeking (206); each request is audited with the media-time span it covers. Playing is a
    ranged stream: every play response is a 206 of at most `api.play_window_s` of audio
    (`inline`; the player asks on from there); only `?download=true` sends the whole file
    (200, attachment). `HEAD` answers the same headers without the audio, and is not
    audited as a playback."""
    action = "recording.download" if download else "recording.play"
    who = authorize(request, ctx, user, QA_ROLES if download else ANY_ROLE, action)
    call = _find(ctx, who, call_id, action)
    path = ctx.settings.recordings_dir / call.recording_path
    failed = recording_failure(call)
    if not path.is_file():
        gone_410(ctx, who, call.call_id, action, "recording")
        if failed is not None:  # the disk refused it before any audio: there is none
            record(ctx, who, action, call_id=call.call_id, status=404, reason="recording failed")
            raise HTTPException(404, f"call {call.call_id} has no recording: it failed at "
                                f"{failed['at_ms'] / 1000:g} s ({failed['reason']})")  # fmt: skip
        record(ctx, who, action, call_id=call.call_id, status=404, reason="recording missing")
        raise HTTPException(404, f"the recording of call {call.call_id} is missing on disk")
    if media.withheld(path, call.status):
        record(ctx, who, action, call_id=call.call_id, status=503, reason="redaction pending")
        raise HTTPException(503, media.WITHHELD, headers={"Retry-After": "30"})
    try:
        source = media.open_recording(path, recording_keys(ctx.settings)[1])
    except DecryptionError as exc:
        record(ctx, who, action, call_id=call.call_id, status=500, reason=str(exc))
        raise HTTPException(500, f"cannot decrypt the recording: {exc}") from None
    size = source.size
    stat = path.stat()
    etag = f'"{size:x}-{stat.st_mtime_ns:x}"'
    modified = formatdate(stat.st_mtime, usegmt=True)
    wanted = request.headers.get("range")
    if request.headers.get("if-range", etag) not in (etag, modified):
        wanted = None  # the file changed since the client's copy: send it whole (RFC 9110)
    try:
        rng = media.parse_range(wanted, size)
    except media.RangeNotSatisfiable as exc:
        record(ctx, who, action, call_id=call.call_id, status=416, reason=str(exc))
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    if not download:  # play: a window of the call, never the file (docstring of media.py)
        block = 2 * max(call.channels, 1)
        window = round(ctx.settings.api.play_window_s * call.sample_rate) * block
        try:
            rng = media.play_window(rng, size, HEADER_BYTES + window)
        except media.RangeNotSatisfiable as exc:
            record(ctx, who, action, call_id=call.call_id, status=416, reason=str(exc))
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, length = (0, size) if rng is None else (rng.start, rng.length)
    start_ms, end_ms = media.media_span_ms(rng, size, call.sample_rate, call.channels)
    status = 200 if rng is None else 206
    head = request.method == "HEAD"
    body: Iterator[bytes] = iter(())
    if not head:
        try:  # a disk error on the first read is a 5xx, never a short 2xx (RELIABILITY S4)
            body = media.primed(source.read(start, length))
        except OSError as exc:
            error_id = secrets.token_hex(4)
            reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            log.error("recording read failed: %s (error id %s)", reason, error_id,
                      extra={"call_id": call.call_id})  # fmt: skip
            record(ctx, who, action, call_id=call.call_id, status=500,
                   reason=f"read error {reason}", error_id=error_id)  # fmt: skip
            raise HTTPException(500, f"the recording could not be read from disk "
                                f"(error id {error_id})") from None  # fmt: skip
        record(ctx, who, action, call_id=call.call_id, status=status, start_ms=start_ms,
               end_ms=end_ms, bytes=f"{start}-{start + length - 1}/{size}")  # fmt: skip
    headers = {
        # size and mtime change at every flush of a live call's recording: a range request
        # with `If-Range` never mixes two versions of the file
        "ETag": etag,
        "Last-Modified": modified,
        "Accept-Ranges": "bytes",
        "Content-Length": str(length),
        "Content-Disposition": f"{'attachment' if download else 'inline'}; "
        f'filename="{call.call_id}.wav"',
        "Cache-Control": "private, no-store",
    }
    if rng is not None:
        headers["Content-Range"] = f"bytes {rng.start}-{rng.end}/{size}"
    if failed is not None:  # a player must not take it for the whole call
        headers["X-Recording-Failed-At-Ms"] = str(failed["at_ms"])
    if head:  # Content-Length is the body a GET would send (RFC 9110 §9.3.2)
        return Response(status_code=status, media_type="audio/wav", headers=headers)
    # A read error later in the stream aborts it: the client sees fewer bytes than
    # Content-Length promised, never a complete-looking file.
    return StreamingResponse(body, status_code=status, media_type="audio/wav", headers=headers)


def _content(ctx: ApiContext, call: CallDetail) -> Iterator[bytes] | None:
    """The recording's bytes as served (decrypted if sealed), for the vCon content hash."""
    path = ctx.settings.recordings_dir / call.recording_path
    if not path.is_file() or media.withheld(path, call.status):
        return None
    source = media.open_recording(path, recording_keys(ctx.settings)[1])
    return source.read(0, source.size)


@router.get("/calls/{call_id}/vcon", responses=_DENIED, response_model_exclude_none=True)
def export_vcon(
    call_id: CallId,
    request: Request,
    user: Annotated[Principal, Depends(require_role(*QA_ROLES, audit="export.vcon"))],
    ctx: Ctx,
    inline: Annotated[
        bool, Query(description="the recording inside the document (base64url), not a URL")
    ] = False,
) -> VconOut:
    """The call as a vCon JSON document (IETF vCon core draft): parties, the recording as
    dialog (an absolute URL under `api.public_base_url`, or inline), transcript and
    quality/compliance report as analysis. Audited."""
    call = _find(ctx, user, call_id, "export.vcon")
    base = ctx.settings.api.public_base_url or str(request.base_url)
    doc = vcon.build(
        call,
        ctx.repo.get_analysis(call.call_id),
        ctx.repo.list_alerts(call_id=call.call_id, limit=1000),
        recording=_content(ctx, call),
        recording_url=f"{base.rstrip('/')}/api/calls/{call.call_id}/recording",
        inline=inline,
    )
    record(ctx, user, "export.vcon", call_id=call.call_id, start_ms=0,
           end_ms=_duration_ms(call), uuid=doc["uuid"], inline=inline)  # fmt: skip
    return VconOut.model_validate(doc)


# -- QA reviews -----------------------------------------------------------------------------

CriterionValue = (
    Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
    | bool
    | Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]
)


class ReviewIn(BaseModel):
    score: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    comment: Annotated[str, StringConstraints(max_length=4000, pattern=r"^[^\x00]*$")] = ""
    criteria: Annotated[
        dict[Annotated[str, StringConstraints(min_length=1, max_length=64,
                                              pattern=r"^[^\x00]+$")], CriterionValue],
        Field(max_length=50),
    ] = {}  # fmt: skip
    model_config = {"extra": "forbid"}


class ReviewOut(BaseModel):
    id: int
    call_id: str
    username: str
    created_at: datetime
    score: float | None
    comment: str
    criteria: dict[str, Any]


@router.get("/calls/{call_id}/reviews", responses=_DENIED)
def list_reviews(
    call_id: CallId,
    user: Annotated[Principal, Depends(require_role(*QA_ROLES, audit="review.view"))],
    ctx: Ctx,
) -> list[ReviewOut]:
    """QA reviews of the call, oldest first (qa, admin). Audited."""
    call = _find(ctx, user, call_id, "review.view")
    reviews = ctx.access.list_reviews(call.call_id)
    record(ctx, user, "review.view", call_id=call.call_id, reviews=len(reviews))
    return [ReviewOut(id=r.review_id, **{k: v for k, v in asdict(r).items() if k != "review_id"})
            for r in reviews]  # fmt: skip


@router.post("/calls/{call_id}/reviews", status_code=201, responses=_DENIED)
def add_review(
    call_id: CallId,
    body: ReviewIn,
    user: Annotated[Principal, Depends(require_role(*QA_ROLES, audit="review.create"))],
    ctx: Ctx,
) -> ReviewOut:
    """Add a manual QA score (0-100), comment and per-criterion marks (qa, admin). Audited."""
    call = _find(ctx, user, call_id, "review.create")
    r = ctx.access.add_review(call.call_id, username=user.username, at=ctx.clock(),
                              score=body.score, comment=body.comment,
                              criteria=dict(body.criteria))  # fmt: skip
    record(ctx, user, "review.create", call_id=call.call_id, review_id=r.review_id)
    return ReviewOut(id=r.review_id, **{k: v for k, v in asdict(r).items() if k != "review_id"})
