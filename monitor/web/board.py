"""The board's routes on the API app: the pages, their static files, and the websocket feed.

Pages are plain HTML + ES modules from `static/` (no build step). Who may open what:
the board (`/board`, `/board/ws`) — supervisor and admin; the replay page (`/replay`) — qa and
admin. A visitor without a valid `cw_token` cookie is sent to `/login`; a signed-in user whose
role may not open a page gets 403 with a page that says so. The JSON the pages load comes from
the API (`/api/...`, including `/api/me` and `/api/logout`), which checks roles again on
every call.

The websocket authenticates with the same cookie (browsers send cookies on the handshake);
a refusal closes with 4401 (not signed in) or 4403 (wrong role) so the page can react. A
handshake whose `Origin` is not one of `api.public_origins` (by default: this host) is refused
with HTTP 403 (cross-site websocket hijacking). An open socket re-checks its user every
`api.ws_reauth_s` and within a second of a user change made through the API, and closes 4401
(logged out, expired, disabled) or 4403 (role removed). A browser that stops reading is
dropped once one message waits `api.ws_send_timeout_s` to be sent (close 1013, the connection
aborted if the close cannot be sent either): its queue in the hub is bounded already
(`BoardHub`), this bounds the socket and the task.
Frames are JSON: the first is a snapshot (an object), then one frame per hub tick (or fewer,
for a browser that reads slowly): a JSON array of `call`/`kpis`/`alert`/`remove` deltas, each
with a `seq`; a snapshot may come again later (after a resync). A delta whose `seq` is not
above the last one seen is already in the snapshot; the browser sends `{"type": "resync"}`
when it saw a gap and gets a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from monitor.board.hub import SNAPSHOT, BoardHub, Client
from monitor.runtime.logs import fields
from monitor.web.api.auth import COOKIE

log = logging.getLogger("callwatch.board")

STATIC = Path(__file__).resolve().parent / "static"
BOARD_ROLES = ("supervisor", "admin")
REPLAY_ROLES = ("qa", "admin")
HOME = {"supervisor": "/board", "admin": "/board", "qa": "/replay"}

_FORBIDDEN = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<title>callwatch · 403</title><link rel="stylesheet" href="/static/style.css">
<script type="module" src="/static/forbidden.js"></script></head><body class="login">
<div class="card login-card" id="forbidden"><h1>403</h1>
<p id="forbidden-msg" data-role="{role}">{message}</p>
<p><a href="{home}">{home}</a> · <a href="/login">/login</a></p></div></body></html>"""
#: The 403 text in the page's language (the same texts as static/i18n.js, which re-renders
#: it when the browser saved another choice): ?lang=, else the browser's Accept-Language.
_FORBIDDEN_TEXT = {
    "en": ("Your role ({role}) may not open this page.",
           {"supervisor": "supervisor", "qa": "QA analyst", "admin": "administrator"}),
    "zh": ("您的角色（{role}）无权打开此页面。",
           {"supervisor": "主管", "qa": "质检员", "admin": "管理员"}),
}  # fmt: skip


def forbidden_page(role: str, home: str, query_lang: str | None, accept: str) -> str:
    lang = query_lang if query_lang in _FORBIDDEN_TEXT else None
    lang = lang or ("zh" if accept.strip().lower().startswith("zh") else "en")
    text, roles = _FORBIDDEN_TEXT[lang]
    message = html.escape(text.format(role=roles.get(role, role)))
    return _FORBIDDEN.format(lang=lang, role=html.escape(role), message=message, home=home)


def _user(ctx: Any, token: str | None) -> Any:
    """The signed-in user for a `cw_token` value, or None."""
    if not token or len(token) > 512:
        return None
    return ctx.access.user_for_token(token, at=ctx.clock())


def mount_board(app: FastAPI, ctx: Any) -> BoardHub:
    """Add the board and replay pages and the live feed to the API app; returns the hub (its
    feed starts with the first browser and stops with `hub.close()`)."""
    hub = BoardHub(ctx.bus, ctx.board_reader)
    app.state.board_hub = hub
    app.mount("/static", StaticFiles(directory=STATIC), name="board-static")

    async def page(request: Request, name: str, roles: tuple[str, ...]) -> Response:
        user = await asyncio.to_thread(_user, ctx, request.cookies.get(COOKIE))
        if user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)
        if user.role not in roles:
            home = HOME.get(user.role, "/login")
            body = forbidden_page(user.role, home, request.query_params.get("lang"),
                                  request.headers.get("accept-language", ""))  # fmt: skip
            return HTMLResponse(body, status_code=403)
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/board", status_code=303)

    @app.get("/login", include_in_schema=False)
    async def login_page() -> Response:
        return FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-store"})

    @app.get("/board", include_in_schema=False)
    async def board_page(request: Request) -> Response:
        return await page(request, "board.html", BOARD_ROLES)

    @app.get("/replay", include_in_schema=False)
    async def replay_page(request: Request) -> Response:
        return await page(request, "replay.html", REPLAY_ROLES)

    @app.websocket("/board/ws")
    async def board_ws(ws: WebSocket) -> None:
        if not _origin_allowed(ws, ctx.settings.api.public_origins):
            await ws.close(code=4403)  # before accept: the handshake is answered HTTP 403
            return
        token = ws.cookies.get(COOKIE)
        code = await _refusal(ctx, token)
        await ws.accept()
        if code is not None:
            await ws.close(code=code)
            return
        await hub.ensure_started()
        client = hub.join()
        reader = asyncio.create_task(_read(ws, client))
        loop = asyncio.get_running_loop()
        recheck_at, seen = loop.time() + ctx.settings.api.ws_reauth_s, ctx.users_changed
        send_timeout_s = ctx.settings.api.ws_send_timeout_s
        try:
            await _send(ws, json.dumps(hub.state.snapshot()), send_timeout_s)
            while not reader.done():
                # Wakes at least once a second to notice user changes.
                frame = await client.next(1.0)
                if reader.done():
                    break
                if loop.time() >= recheck_at or ctx.users_changed != seen:
                    recheck_at = loop.time() + ctx.settings.api.ws_reauth_s
                    seen = ctx.users_changed
                    if (code := await _refusal(ctx, token)) is not None:
                        await ws.close(code=code)
                        break
                if frame == SNAPSHOT:
                    frame = json.dumps(hub.state.snapshot())
                if frame is not None:
                    await _send(ws, frame, send_timeout_s)
        except _StoppedReading:
            log.warning(
                "board client dropped: it stopped reading",
                extra=fields(timeout_s=send_timeout_s, clients=len(hub.clients)),
            )
            await _drop(ws, send_timeout_s)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the browser went away (RuntimeError: sent after close)
        finally:
            hub.leave(client)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await reader

    return hub


class _StoppedReading(Exception):
    """A message waited too long to be sent: the browser is not reading."""


async def _send(ws: WebSocket, text: str, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await ws.send_text(text)
    except TimeoutError:
        raise _StoppedReading from None


async def _drop(ws: WebSocket, timeout_s: float) -> None:
    """Close 1013; if even the close frame cannot go out, abort the connection (the server
    would otherwise wait on the unsent data and keep the socket)."""
    try:
        async with asyncio.timeout(min(timeout_s, 2.0)):
            await ws.close(code=1013)
            return
    except (TimeoutError, RuntimeError, WebSocketDisconnect):
        pass
    # uvicorn's websocket protocol object is the ASGI `send` callable's owner.
    transport = getattr(getattr(ws._send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()


async def _refusal(ctx: Any, token: str | None) -> int | None:
    """None while the token's user may watch the board; else the close code."""
    user = await asyncio.to_thread(_user, ctx, token)
    if user is None:
        return 4401
    return None if user.role in BOARD_ROLES else 4403


def _origin_allowed(ws: WebSocket, public_origins: tuple[str, ...]) -> bool:
    """A browser always sends Origin: it must be a configured public origin (or, with none
    configured, this host's). No Origin: not a browser, so no cross-site risk (the cookie or
    token still decides)."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if public_origins:
        return origin in {o.rstrip("/").lower() for o in public_origins}
    host = ws.headers.get("host", "").lower()
    return bool(host) and origin in (f"http://{host}", f"https://{host}")


async def _read(ws: WebSocket, client: Client) -> None:
    """The browser's side of the feed: `resync` asks for a snapshot; a close ends the feed."""
    try:
        while True:
            text = await ws.receive_text()
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(text).get("type") == "resync":
                    client.resync()
    except WebSocketDisconnect:
        client.close()  # wake the sender so it notices
        raise


def _quote(path: str) -> str:
    return quote(path, safe="/")
