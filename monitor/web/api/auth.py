"""Who is calling: login, tokens, roles, and the user-management routes.

A request authenticates with `Authorization: Bearer <token>` or, for browsers (an <audio>
element's range requests cannot carry headers), the `cw_token` cookie set by
`POST /api/login`. The cookie is HttpOnly and SameSite=Strict, so other sites can neither read
it nor make the browser send it with a forged request.

Roles: `supervisor` (live board, alerts), `qa` (search, replay, review, export), `admin`
(everything, plus users and the audit trail). Routes declare what they allow with
`require_role(...)`; given an `audit` action, a refusal (401/403) is written to the audit log
before it is answered, so denied attempts on call content leave a trace too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, StringConstraints

from monitor.web.api.context import ApiContext
from monitor.web.api.throttle import HashBusy, HashGate, LoginThrottle
from storage.access import ROLES, UserExists, UserInfo

COOKIE = "cw_token"
Role = Literal["supervisor", "qa", "admin"]
#: Text fields refuse NUL (PostgreSQL cannot store it) and stay bounded.
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256, pattern=r"^[^\x00]+$")]


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: str
    token: str
    client: str | None = None  # the caller's address (for the audit trail)


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


# Declared so the OpenAPI document (and /api/docs' "Authorize") shows both ways in; they
# never reject on their own (auto_error=False): `authorize` decides, and audits refusals.
_BEARER = HTTPBearer(auto_error=False, description="token from POST /api/login")
_COOKIE = APIKeyCookie(name=COOKIE, auto_error=False, description="set by POST /api/login")


#: Header the pages send with every API call. A request that changes state and is
#: authenticated by the cookie alone must carry it: another site cannot make a browser add a
#: custom header (without a CORS preflight this API never grants), so a forged form or
#: `fetch` is refused even where a browser ignores SameSite (CSRF).
CSRF_HEADER = "X-Callwatch-Request"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def optional_user(
    request: Request,
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    cookie: Annotated[str | None, Depends(_COOKIE)],
) -> Principal | None:
    """The caller, from the Bearer header or else the cookie; None without a live token."""
    token = bearer.credentials if bearer is not None else cookie
    if not token or len(token) > 512:
        return None
    if (
        bearer is None
        and request.method not in _SAFE_METHODS
        and CSRF_HEADER not in request.headers
    ):
        raise HTTPException(
            403,
            f"a cookie-authenticated {request.method} needs the {CSRF_HEADER} header "
            "(the pages send it; API clients use 'Authorization: Bearer ...')",
        )
    user = ctx.access.user_for_token(token, at=ctx.clock())
    if user is None:
        return None
    client = request.client.host if request.client else None
    return Principal(user.user_id, user.username, user.role, token, client)


def require_role(*roles: str, audit: str | None = None) -> Callable[..., Principal]:
    """A dependency that returns the caller if their role is one of `roles`.

    Otherwise 401 (no valid token) or 403 (wrong role), and when `audit` names an action, an
    audit row with result "denied" for the call in the path (if any).
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {ROLES}")

    def dependency(
        request: Request, ctx: Ctx, user: Annotated[Principal | None, Depends(optional_user)]
    ) -> Principal:
        return authorize(request, ctx, user, roles, audit)

    return dependency


def authorize(
    request: Request,
    ctx: ApiContext,
    user: Principal | None,
    roles: tuple[str, ...],
    audit: str | None,
) -> Principal:
    """`user` if their role is one of `roles`; else audit the refusal (when `audit` names an
    action) and raise 401/403. For routes whose rule depends on a parameter."""
    if user is not None and user.role in roles:
        return user
    status, reason = (401, "not authenticated") if user is None else (403, "role not allowed")
    if audit is not None:
        ctx.access.audit(
            at=ctx.clock(),
            action=audit,
            result="denied",
            status=status,
            username=user.username if user else None,
            role=user.role if user else None,
            call_id=request.path_params.get("call_id"),
            detail={"reason": reason, "path": request.url.path},
            client=request.client.host if request.client else None,
        )
    if user is None:
        raise HTTPException(
            401,
            "log in first: POST /api/login, then send the token as 'Authorization: Bearer ...'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise HTTPException(403, f"this needs one of the roles {', '.join(roles)}; you are {user.role}")


ANY_ROLE = ROLES
AnyUser = Annotated[Principal, Depends(require_role(*ANY_ROLE))]
Admin = Annotated[Principal, Depends(require_role("admin"))]


# -- routes ---------------------------------------------------------------------------------


class LoginIn(BaseModel):
    username: Name
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class LoginOut(BaseModel):
    token: str
    username: str
    role: Role
    expires_in_s: int


class UserOut(BaseModel):
    username: str
    role: Role
    disabled: bool
    created_at: str


class UserIn(BaseModel):
    username: Name
    password: Password
    role: Role


class UserPatch(BaseModel):
    role: Role | None = None
    disabled: bool | None = None
    model_config = {"extra": "forbid"}


def user_out(user: UserInfo) -> UserOut:
    return UserOut(
        username=user.username,
        role=user.role,  # type: ignore[arg-type]
        disabled=user.disabled,
        created_at=user.created_at.isoformat(),
    )


router = APIRouter(prefix="/api", tags=["auth"])
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "not authenticated"}}
_FORBIDDEN: dict[int | str, dict[str, Any]] = {
    **_UNAUTHORIZED,
    403: {"description": "role not allowed"},
}


_LOCKED = {
    "description": "too many failures",
    "headers": {"Retry-After": {"description": "seconds until a login may succeed again",
                                "schema": {"type": "integer", "minimum": 1}}},
}  # fmt: skip


@router.post(
    "/login",
    responses={**_UNAUTHORIZED, 429: _LOCKED, 503: {"description": "too many logins at once"}},
)
async def login(body: LoginIn, request: Request, response: Response, ctx: Ctx) -> LoginOut:
    """Exchange a username and password for a token (also set as the `cw_token` cookie).
    Repeated wrong passwords lock that username out from that address for a while, and an
    address that fails for many usernames is locked out as a whole (429). Password checks run
    a few at a time off the event loop; a flood beyond that is answered 503."""
    now = ctx.clock()
    throttle: LoginThrottle = request.app.state.login_throttle
    gate: HashGate = request.app.state.hash_gate
    # The peer address; uvicorn replaces it from X-Forwarded-For only for `api.trusted_proxies`.
    address = request.client.host if request.client else "?"
    wait_s = throttle.retry_after_s(body.username, address, now)
    if wait_s:
        await asyncio.to_thread(
            ctx.access.audit,
            at=now, action="login", result="denied", status=429, username=body.username,
            detail={"reason": "too many failed logins"}, client=address,
        )  # fmt: skip
        raise HTTPException(
            429, f"too many failed logins: try again in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )  # fmt: skip
    try:
        async with gate.slot():
            user = await asyncio.to_thread(ctx.access.authenticate, body.username, body.password)
    except HashBusy:
        raise HTTPException(
            503, "too many logins at once: try again shortly", headers={"Retry-After": "2"}
        ) from None
    if user is None:
        throttle.failed(body.username, address, now)
        await asyncio.to_thread(
            ctx.access.audit,
            at=now, action="login", result="denied", status=401, username=body.username,
            detail={"reason": "wrong username or password, or user disabled"}, client=address,
        )  # fmt: skip
        raise HTTPException(401, "wrong username or password")
    throttle.succeeded(body.username, address)
    ttl = ctx.settings.api.token_ttl_s
    token = await asyncio.to_thread(ctx.access.issue_token, user.user_id, at=now, ttl_s=ttl)
    response.set_cookie(
        COOKIE,
        token,
        max_age=ttl,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.api.secure_cookie,
        path="/",
    )
    return LoginOut(token=token, username=user.username, role=user.role, expires_in_s=ttl)  # type: ignore[arg-type]


@router.post("/logout", status_code=204, responses=_UNAUTHORIZED)
def logout(user: AnyUser, response: Response, ctx: Ctx) -> Response:
    """Revoke the token used for this request and clear the cookie."""
    ctx.access.revoke_token(user.token, at=ctx.clock())
    ctx.users_changed += 1
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/me", responses=_UNAUTHORIZED)
def me(user: AnyUser) -> dict[str, str]:
    """Who the token belongs to."""
    return {"username": user.username, "role": user.role}


@router.get("/users", responses=_FORBIDDEN)
def list_users(_: Admin, ctx: Ctx) -> list[UserOut]:
    return [user_out(u) for u in ctx.access.list_users()]


@router.post("/users", status_code=201, responses={**_FORBIDDEN, 409: {"description": "taken"}})
def create_user(body: UserIn, _: Admin, ctx: Ctx) -> UserOut:
    try:
        user = ctx.access.create_user(body.username, body.password, body.role, at=ctx.clock())
    except UserExists as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return user_out(user)


@router.patch("/users/{username}", responses={**_FORBIDDEN, 404: {"description": "no user"}})
def change_user(username: str, body: UserPatch, admin: Admin, ctx: Ctx) -> UserOut:
    """Change a user's role or disable them (a disabled user's tokens stop working)."""
    if username == admin.username and (body.disabled or body.role not in (None, "admin")):
        raise HTTPException(409, "admins cannot demote or disable themselves")
    user = ctx.access.set_user(username, role=body.role, disabled=body.disabled)
    ctx.users_changed += 1
    if user is None:
        raise HTTPException(404, f"no user {username!r}")
    return user_out(user)
