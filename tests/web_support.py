"""Helpers for the browser tests: a real `callwatch serve` with its HTTP API and board on a
free port, users of each role, simulated calls streamed in the background, and logging in
through the real login page."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ivr_sim import RenderedCall, load_script, render, stream_call
from monitor.web.api.server import ApiServer
from storage.access import AccessStore
from tests.fixtures_server import LiveServer, make_server

CALLS_DIR = Path(__file__).resolve().parent / "data" / "calls"
PASSWORD = "board-test-password"
USERS = {"sup": "supervisor", "qa": "qa"}
API_RE = re.compile(r"api listening on (http://\S+)")
#: Low thresholds so the 4 s gap of dead_air_en_16k.toml is dead air and raises an alert;
#: the opt-in short ASR window (docs/benchmarks.md) for transcripts within 3 s on 2 cores.
WEB_ENV = {
    "CALLWATCH_ASR__WINDOW_MARGIN_S": "10",
    "CALLWATCH_API__PORT": "0",
    "CALLWATCH_GATEWAY__METADATA_TIMEOUT_S": "2",
    "CALLWATCH_QUALITY__CONVERSATION__DEAD_AIR_MIN_MS": "2000",
    "CALLWATCH_ALERTS__DEAD_AIR_S": "2.5",
    # The pages show clarity and every compliance stage: the whole analysis, even when the
    # ASR is scripted (tests/fixtures_server.SCRIPTED turns these off).
    "CALLWATCH_QUALITY__DNSMOS__ENABLED": "true",
    "CALLWATCH_COMPLIANCE__SEMANTIC": "true",
}


@dataclass
class WebServer:
    server: LiveServer
    base: str  # http://127.0.0.1:PORT

    @property
    def gateway(self) -> str:
        return self.server.url


class Served:
    """The API app on a real port, in a thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        self.server = ApiServer(app, "127.0.0.1", 0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        # Closed, not left to the garbage collector: an unclosed loop's self-pipe (a Unix
        # socket pair) raised ResourceWarning inside whichever later test the GC ran in.
        self.loop.close()


def start_web_server(tmp: Path, *, scripted: RenderedCall | None = None) -> WebServer:
    """`callwatch serve` with the API and board, and a user of each role. `scripted`: ASR by
    the scripted transcriber answering with that call's own lines in order (pages that show
    a transcript, not ones that judge its words; the screenshots read as the call did)."""
    env = dict(WEB_ENV)
    if scripted is not None:
        turns = sorted(scripted.turns, key=lambda t: t.start_s)
        env["CALLWATCH_ASR__SCRIPTED_LINES"] = json.dumps([t.transcript or "" for t in turns])
    srv = make_server(tmp, scripted=scripted is not None, **env)
    srv.start()
    deadline = time.monotonic() + 60
    while not (m := API_RE.search(srv.log())):
        if time.monotonic() > deadline:
            srv.stop()
            raise TimeoutError(f"the API did not start:\n{srv.log()[-3000:]}")
        time.sleep(0.1)
    access = AccessStore(srv.repo.engine)
    for name, role in USERS.items():
        access.create_user(name, PASSWORD, role, at=datetime.now(UTC))
    return WebServer(srv, m.group(1))


@dataclass
class Streaming:
    """Calls streamed on a background thread (the browser is driven from the test's)."""

    calls: list[RenderedCall]
    pace: float
    started_at: float = 0.0  # time.time() just before the first byte
    external_ids: list[str] = field(default_factory=list)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self, url: str) -> None:
        async def go() -> None:
            reports = await asyncio.gather(*(stream_call(url, c, pace=self.pace)
                                             for c in self.calls))  # fmt: skip
            self.external_ids = [r.external_id for r in reports]

        def run() -> None:
            try:
                asyncio.run(go())
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.started_at = time.time()
        self._thread = threading.Thread(target=run, name="ivr-sim", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float = 120.0) -> list[str]:
        assert self._thread is not None
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("the simulated calls did not finish streaming")
        if self.error is not None:
            raise self.error
        return self.external_ids


def call(name: str) -> RenderedCall:
    return render(load_script(CALLS_DIR / name))


def login(page: Any, base: str, username: str, *, next_path: str = "") -> None:
    """Sign in through the login page (which sets the cw_token cookie)."""
    page.goto(f"{base}/login" + (f"?next={next_path}" if next_path else ""))
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/(board|replay).*"))


def iter_lines(card: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for party, p in card["parties"].items():
        for line in p["lines"]:
            yield party, line
