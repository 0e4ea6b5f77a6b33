"""The board websocket's framing (RELIABILITY.md L3): a hub tick's messages reach a browser as
one frame, a JSON array, so 200 browsers on a busy floor cost 200 sends a tick, not 200 times
the messages.

Against the real API served by uvicorn in this process, a real websockets client, and the real
board page in Chromium (`test_web_board` streams real calls to it; here the page is fed many
updates at once and must show every card).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from config.settings import load_settings
from monitor.board.hub import frame_messages
from monitor.web.api.app import create_app
from monitor.web.api.auth import COOKIE
from monitor.web.api.context import ApiContext
from storage.repository import Repository
from tests import web_support
from tests.call_events import segment, started
from tests.gateway_support import served_api

PASSWORD = web_support.PASSWORD
CALLS, ROUNDS = 40, 5


async def _token(base: str) -> str:
    async with httpx.AsyncClient(base_url=base) as c:
        r = await c.post("/api/login", json={"username": "sup", "password": PASSWORD})
        return str(r.json()["token"])


def _feed(hub: Any, round_: int, now: float | None) -> None:
    """One round of changes on every call: the calls start, then each says something (`now`:
    the hub's loop time, None when called on that loop)."""
    now = asyncio.get_running_loop().time() if now is None else now
    for i in range(CALLS):
        call_id = f"f{i:02d}"
        at = round_ * 1000
        event = (
            started(call_id)
            if round_ == 0
            else segment(call_id, "agent", at, at + 800, f"line {round_}")
        )
        hub.state.apply(event, now)


@pytest.mark.parametrize("compress", [False, True])
async def test_board_frames_are_compressed_only_when_configured(
    tmp_path: Path, compress: bool
) -> None:
    # permessage-deflate compresses every frame once per browser on the loop that reads the
    # calls' audio: off unless `[api] ws_compress` asks for it (RELIABILITY.md L3).
    api = {"ws_compress": True} if compress else {}
    async with served_api(tmp_path, {"sup": (PASSWORD, "supervisor")}, **api) as srv:
        tok = await _token(srv.url)
        url = srv.url.replace("http", "ws", 1) + "/board/ws"
        async with connect(url, additional_headers={"Cookie": f"{COOKIE}={tok}"},
                           origin=srv.url) as ws:  # type: ignore[arg-type]  # fmt: skip
            assert json.loads(await ws.recv())["type"] == "snapshot"
            assert ws.request is not None and "permessage-deflate" in str(
                ws.request.headers.get("Sec-WebSocket-Extensions")
            )  # offered by the client (websockets' default, as browsers do) ...
            assert ws.response is not None
            agreed = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in agreed) is compress  # ... taken only when asked


async def test_many_updates_reach_the_browser_in_at_most_one_frame_per_tick(
    tmp_path: Path,
) -> None:
    async with served_api(tmp_path, {"sup": (PASSWORD, "supervisor")}) as srv:
        tok = await _token(srv.url)
        url = srv.url.replace("http", "ws", 1) + "/board/ws"
        async with connect(url, additional_headers={"Cookie": f"{COOKIE}={tok}"},
                           origin=srv.url) as ws:  # type: ignore[arg-type]  # fmt: skip
            snap = json.loads(await ws.recv())
            assert snap["type"] == "snapshot"
            hub = srv.app.state.board_hub
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for r in range(ROUNDS):  # 200 changes over 1 s
                _feed(hub, r, loop.time())
                await asyncio.sleep(0.2)
            frames: list[str] = []
            last_lines: dict[str, str] = {}
            while len(last_lines) < CALLS or set(last_lines.values()) != {f"line {ROUNDS - 1}"}:
                frames.append(str(await asyncio.wait_for(ws.recv(), 5.0)))
                for m in frame_messages(frames[-1]):
                    if m["type"] == "call":
                        lines = m["call"]["parties"]["agent"]["lines"]
                        last_lines[m["call"]["call_id"]] = lines[-1]["text"] if lines else ""
            elapsed = loop.time() - t0

    msgs = [m for f in frames for m in frame_messages(f)]
    ticks = elapsed / hub.tick_s
    assert all(isinstance(json.loads(f), list) for f in frames)
    assert len(frames) <= ticks + 1, (len(frames), ticks, len(msgs))
    assert len(msgs) >= 2 * CALLS and len(msgs) >= 4 * len(frames), (len(msgs), len(frames))
    seqs = [m["seq"] for m in msgs]
    assert seqs == list(range(snap["seq"] + 1, snap["seq"] + 1 + len(seqs)))  # none lost


@pytest.mark.browser
def test_the_board_page_shows_every_card_of_coalesced_frames(tmp_path: Path, browser: Any) -> None:
    """The same 200 changes, fed to the real board page: every call's card shows with its
    last line, applied from the delta frames (no resync asked for), and no page error."""
    settings = load_settings(env={}, data_dir=tmp_path)
    repo = Repository.from_url(settings.database_url)
    repo.upgrade()
    ctx = ApiContext.for_repo(settings, repo)
    ctx.access.create_user("sup", PASSWORD, "supervisor", at=datetime.now(UTC))
    app = create_app(ctx)
    served = web_support.Served(app)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        base = served.server.url
        web_support.login(page, base, "sup")
        page.goto(f"{base}/board?lang=en")
        hub = app.state.board_hub
        deadline = time.monotonic() + 10
        while not hub.clients:  # the page's socket has joined the feed
            assert time.monotonic() < deadline, "the board page did not connect"
            time.sleep(0.05)
        for r in range(ROUNDS):
            served.loop.call_soon_threadsafe(_feed, hub, r, None)
            time.sleep(0.2)
        last = f"line {ROUNDS - 1}"
        page.wait_for_function(
            """([n, last]) => {
              const cards = [...document.querySelectorAll('.call')];
              return cards.length === n && cards.every((c) =>
                c.querySelector('.party[data-party="agent"] .lines')?.textContent.includes(last));
            }""",
            arg=[CALLS, last],
            timeout=10_000,
        )
        # ... from the deltas: a page that misread a frame asks for snapshots instead.
        assert [c.resyncs for c in hub.clients] == [0]
        assert errors == []
    finally:
        page.close()
        served.close()
        repo.close()
