"""The board websocket checks Origin and keeps checking its user (issue 17 item 5, N7).

`Origin: https://evil.example` and `Origin: null` were accepted with a supervisor's cookie, and
a disabled user's open socket kept receiving updates. Against the real API served by uvicorn
in this process, with a real websockets client: a foreign Origin is refused with HTTP 403
before any data; the page's own origin (or a configured public origin) is accepted; an open
socket is closed 4401 when its user is disabled or logs out and 4403 when the role goes, both
right after a change made through the API and, for changes made elsewhere (the CLI), within
`api.ws_reauth_s`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from monitor.web.api.auth import COOKIE
from monitor.web.api.context import ApiContext
from tests.gateway_support import served_api

PASSWORD = "board-ws-password-1"


@asynccontextmanager
async def served(tmp: Path, **api: Any) -> AsyncIterator[tuple[str, ApiContext]]:
    users = {"sup": (PASSWORD, "supervisor"), "adm": (PASSWORD, "admin")}
    async with served_api(tmp, users, **api) as srv:
        yield srv.url, srv.ctx


async def token(base: str, user: str) -> str:
    async with httpx.AsyncClient(base_url=base) as c:
        r = await c.post("/api/login", json={"username": user, "password": PASSWORD})
        return str(r.json()["token"])


def board(base: str, tok: str, origin: str | None) -> Any:
    return connect(
        base.replace("http", "ws", 1) + "/board/ws",
        additional_headers={"Cookie": f"{COOKIE}={tok}"},
        origin=origin,  # type: ignore[arg-type]
    )


async def handshake(base: str, tok: str, origin: str | None) -> int:
    try:
        async with board(base, tok, origin) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def close_code(ws: ClientConnection, within_s: float) -> int | None:
    try:
        async with asyncio.timeout(within_s):
            while True:
                await ws.recv()
    except ConnectionClosed:
        return ws.close_code
    except TimeoutError:
        return None


async def test_origin_is_checked(tmp_path: Path) -> None:
    async with served(tmp_path) as (base, _):
        tok = await token(base, "sup")
        own = base  # http://127.0.0.1:PORT: the page's own origin
        assert await handshake(base, tok, "https://evil.example") == 403
        assert await handshake(base, tok, "null") == 403
        assert await handshake(base, tok, own.replace("127.0.0.1", "localhost")) == 403
        assert await handshake(base, tok, own) == 101
        assert await handshake(base, tok, None) == 101  # not a browser: the cookie decides


async def test_configured_public_origins(tmp_path: Path) -> None:
    async with served(tmp_path, public_origins=["https://qa.example.com"]) as (base, _):
        tok = await token(base, "sup")
        assert await handshake(base, tok, "https://qa.example.com") == 101
        assert await handshake(base, tok, base) == 403


@pytest.mark.parametrize(
    ("change", "code"),
    [({"disabled": True}, 4401), ({"role": "qa"}, 4403), ("logout", 4401)],
)
async def test_a_user_change_closes_the_open_socket(
    tmp_path: Path, change: dict[str, Any] | str, code: int
) -> None:
    async with served(tmp_path) as (base, _):
        tok, admin = await token(base, "sup"), await token(base, "adm")
        async with board(base, tok, base) as ws:
            await ws.recv()  # the snapshot: the socket is live
            async with httpx.AsyncClient(base_url=base) as c:
                if change == "logout":
                    r = await c.post("/api/logout", headers={"Authorization": f"Bearer {tok}"})
                else:
                    auth = {"Authorization": f"Bearer {admin}"}
                    r = await c.patch("/api/users/sup", json=change, headers=auth)
                assert r.status_code in (200, 204), r.text
            assert await close_code(ws, within_s=3.0) == code


async def test_changes_made_elsewhere_are_seen_within_the_reauth_interval(tmp_path: Path) -> None:
    async with served(tmp_path, ws_reauth_s=1.0) as (base, ctx):
        tok = await token(base, "sup")
        async with board(base, tok, base) as ws:
            await ws.recv()
            assert await close_code(ws, within_s=1.5) is None  # still allowed: stays open
            ctx.access.set_user("sup", role=None, disabled=True)  # as `callwatch user` does
            assert await close_code(ws, within_s=3.0) == 4401


async def test_a_browser_that_stops_reading_is_dropped_after_the_send_timeout() -> None:
    """The keepalive ping cannot find a browser whose socket buffers are full (the ping waits
    behind the unsent data): one message waiting `api.ws_send_timeout_s` drops it, with a
    close frame if that can still go out, else by aborting the connection."""
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    from monitor.web import board

    class Transport:
        aborted = False

        def abort(self) -> None:
            self.aborted = True

    class Protocol:  # what uvicorn hands the app as ASGI `send`: a bound method
        def __init__(self) -> None:
            self.transport = Transport()

        async def send(self, message: object) -> None:
            await asyncio.sleep(3600)  # the buffers are full: nothing goes out

    class Stuck:
        def __init__(self) -> None:
            self._send = Protocol().send

        async def send_text(self, text: str) -> None:
            await self._send({"type": "websocket.send", "text": text})

        async def close(self, code: int) -> None:
            await self._send({"type": "websocket.close", "code": code})

    # The protocol uvicorn uses owns the ASGI `send` and its transport (what _drop aborts).
    assert AutoWebSocketsProtocol is not None
    assert callable(AutoWebSocketsProtocol.send)  # type: ignore[attr-defined]
    ws = Stuck()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(board._StoppedReading):
        await board._send(ws, "{}", 0.3)  # type: ignore[arg-type]
    await board._drop(ws, 0.3)  # type: ignore[arg-type]
    assert ws._send.__self__.transport.aborted and loop.time() - t0 < 1.5
