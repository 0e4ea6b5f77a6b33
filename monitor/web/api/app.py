"""The FastAPI application: routers, error mapping and the OpenAPI document.

`create_app(ctx)` builds one app around an `ApiContext`; `Callwatch` serves it in-process
(monitor/web/api/server.py) and tests drive it with httpx. The OpenAPI document is at
/api/openapi.json and interactive docs at /api/docs, when `api.docs` is on (by default only on
a loopback API). Security headers on every response: monitor/web/api/headers.py.

Route handlers that touch the database are plain `def` functions: FastAPI runs them in its
thread pool, so a slow query never blocks the event loop that also carries live call audio.
Errors: storage that is unreachable answers 503 with what to check; NUL characters in the
URL are refused with 400 before any handler (PostgreSQL cannot store or compare them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from monitor.web.api import audit, auth, calls, capture, health, insights, privacy
from monitor.web.api.context import ApiContext
from monitor.web.api.headers import DOCS_URL, OPENAPI_URL, add_security_headers, docs_enabled
from monitor.web.api.throttle import HashGate, LoginThrottle
from monitor.web.board import mount_board
from storage.errors import StorageError, StorageUnavailable

log = logging.getLogger("callwatch.api")


def create_app(ctx: ApiContext) -> FastAPI:
    docs = docs_enabled(ctx.settings.api)
    app = FastAPI(
        title="callwatch API",
        version="1",
        summary="Search, replay, alerts, KPIs and vCon export of monitored calls.",
        openapi_url=OPENAPI_URL if docs else None,
        docs_url=DOCS_URL if docs else None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    api = ctx.settings.api
    app.state.login_throttle = LoginThrottle(
        max_failures=api.login_max_failures,
        max_address_failures=api.login_max_address_failures,
        window_s=api.login_window_s,
        lockout_s=api.login_lockout_s,
    )
    app.state.hash_gate = HashGate(limit=api.login_concurrency, max_waiting=api.login_queue)
    app.include_router(auth.router)
    app.include_router(audit.router)
    app.include_router(calls.router)
    app.include_router(capture.router)
    app.include_router(insights.router)
    app.include_router(health.router)
    app.include_router(privacy.router)
    _add_error_handling(app)
    add_security_headers(app)
    mount_board(app, ctx)  # the live board and replay pages (monitor/web/board.py)
    return app


def _add_error_handling(app: FastAPI) -> None:
    @app.middleware("http")
    async def refuse_nul(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        raw = unquote(request.url.path) + unquote(request.url.query)
        if "\x00" in raw:
            return JSONResponse({"detail": "NUL characters are not allowed in URLs"}, 400)
        return await call_next(request)

    @app.exception_handler(StorageUnavailable)
    async def unavailable(_: Request, exc: StorageUnavailable) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return JSONResponse(
            {"detail": "the call database is unreachable right now; try again shortly"},
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StorageError)
    async def storage_error(_: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error: %s", exc)
        return JSONResponse({"detail": f"storage error: {type(exc).__name__}"}, 500)
