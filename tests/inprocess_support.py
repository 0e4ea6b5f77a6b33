"""An in-process callwatch for tests: the real composition root (`Callwatch`: gateway,
AudioSocket server, storage writer, bus, alert service, DNSMOS, HTTP API and board) on the
test's own event loop, every port 0, a real SQLite file, real websockets; only the speech
model is replaced, at the ASR seam, by `asr.scripted.ScriptedTranscriber` (`[asr] engine =
"scripted"`). It starts in about a second, so a test streams `ivr_sim` calls into the whole
server without spawning `callwatch serve` and its Whisper workers.

Tests that assert recognised words keep the real model (tests/fixtures_server.py): these are
for everything that needs "some transcript" (lifecycle, storage, alerts, API, transport).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from monitor.app import Callwatch
from monitor.runtime.logs import _TextFormatter
from storage.repository import CallDetail, Repository


@dataclass
class InProcessServer:
    app: Callwatch

    @property
    def url(self) -> str:
        """The gateway's websocket URL (ws://127.0.0.1:PORT)."""
        assert self.app.gateway is not None
        return self.app.gateway.url

    @property
    def api_url(self) -> str:
        return self.app.api_url

    @property
    def audiosocket(self) -> tuple[str, int] | None:
        server = self.app.audiosocket
        return None if server is None else ("127.0.0.1", server.port)

    @property
    def repo(self) -> Repository:
        assert self.app.repo is not None
        return self.app.repo

    @property
    def data_dir(self) -> Path:
        return self.app.settings.data_dir

    async def wait_call(self, external_id: str, timeout_s: float = 30.0) -> CallDetail:
        """Until the call with this switch id is finalised (its verdict stored)."""
        deadline = time.monotonic() + timeout_s
        call = None
        while time.monotonic() < deadline:
            if self.app.storage is not None:
                await self.app.storage.drain()
            call = await asyncio.to_thread(self.repo.get_call, external_id)
            if (
                call is not None
                and call.status != "active"
                and any(t.kind == "finalised" for t in call.trace)
            ):
                return call
            await asyncio.sleep(0.05)
        raise TimeoutError(f"call {external_id} not finalised: {call}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) else value
    return out


@asynccontextmanager
async def in_process_server(
    tmp: Path, *, lines: Sequence[str] = (), config: Path | None = None, **sections: Any
) -> AsyncIterator[InProcessServer]:
    """`Callwatch` on port 0 answering utterances with `lines` (see asr/scripted.py);
    `config`: a TOML file read first, as `serve --config` would; `sections` override settings
    sections (e.g. `alerts={"dead_air_s": 2.5}`). DNSMOS and
    the sentence-level compliance intents are off unless a section turns them on."""
    asr = {"engine": "scripted", "scripted_lines": list(lines), **sections.pop("asr", {})}
    gateway = {"port": 0, "audiosocket_port": 0, "metadata_timeout_s": 2,
               **sections.pop("gateway", {})}  # fmt: skip
    api = {"port": 0, **sections.pop("api", {})}
    # Off unless a test asks: loading the sentence model (~2 s) and DNSMOS (~2 s, and ~0.5 s of
    # CPU per second of audio streamed faster than real time) is what a fast seam leaves out;
    # the phrase-level checker and every other measure still run.
    quality = _merge({"dnsmos": {"enabled": False}}, sections.pop("quality", {}))
    compliance = {"semantic": False, **sections.pop("compliance", {})}
    settings = load_settings(
        config,
        env={}, data_dir=str(tmp / "data"), asr=asr, gateway=gateway, api=api,
        quality=quality, compliance=compliance, **sections,
    )  # fmt: skip
    app = Callwatch(settings)
    await app.start()
    try:
        yield InProcessServer(app)
    finally:
        await app.stop()


class _Lines(logging.Handler):
    """Keeps every formatted record, as `callwatch serve` would print it (tracebacks too)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(_TextFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class ThreadedServer:
    """The in-process server on a thread of its own with its own event loop, for synchronous
    tests written against a spawned server (`tests.fixtures_server.LiveServer`): the same
    `url`, `audiosocket`, `data_dir`, `repo`, `wait_call` and `log()`. Its log is what the
    root logger receives at DEBUG while it runs (websockets at WARNING, as `serve` sets it),
    like every server of a test session (RELIABILITY.md P8, tests/fixtures_logs.py)."""

    def __init__(
        self, tmp: Path, *, lines: Sequence[str] = (), config: Path | None = None, **sections: Any
    ) -> None:
        self._tmp, self._lines, self._config, self._sections = tmp, lines, config, sections
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._log = _Lines()
        self._levels: dict[str, int] = {}
        self.server: InProcessServer | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        for name, level in (("", logging.DEBUG), ("websockets", logging.WARNING)):
            self._levels[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(level)
        logging.getLogger().addHandler(self._log)
        self._thread = threading.Thread(target=self._run, name="in-process-callwatch")
        self._thread.start()
        if not self._ready.wait(timeout_s) or self.server is None:
            self.stop()
            raise RuntimeError(f"in-process server did not start: {self._error!r}")

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            async with in_process_server(
                self._tmp, lines=self._lines, config=self._config, **self._sections
            ) as srv:
                self.server = srv
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start() / stop(), in the test's thread
            self._error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(60)
        logging.getLogger().removeHandler(self._log)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        if self._error is not None:
            raise self._error

    def _srv(self) -> InProcessServer:
        if self.server is None:
            raise RuntimeError("the in-process server is not running")
        return self.server

    @property
    def url(self) -> str:
        return self._srv().url

    @property
    def api_url(self) -> str:
        return self._srv().api_url

    @property
    def audiosocket(self) -> tuple[str, int] | None:
        return self._srv().audiosocket

    @property
    def data_dir(self) -> Path:
        return self._srv().data_dir

    @property
    def repo(self) -> Repository:
        return self._srv().repo

    def log(self) -> str:
        return "\n".join(list(self._log.lines))

    def wait_call(self, external_id: str, timeout_s: float = 60.0) -> CallDetail:
        """Poll until the call with this switch id is finalised (its verdict stored)."""
        deadline = time.monotonic() + timeout_s
        call = None
        while time.monotonic() < deadline:
            call = self.repo.get_call(external_id)
            if (
                call is not None
                and call.status != "active"
                and any(t.kind == "finalised" for t in call.trace)
            ):
                return call
            time.sleep(0.05)
        raise TimeoutError(f"call {external_id} not finalised: {call}\n{self.log()[-3000:]}")


@contextmanager
def threaded_server(tmp: Path, **kw: Any) -> Iterator[ThreadedServer]:
    srv = ThreadedServer(tmp, **kw)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def inprocess_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """One in-process server per test module (this module is a pytest plugin: conftest.py)."""
    with threaded_server(tmp_path_factory.mktemp("inprocess")) as srv:
        yield srv
