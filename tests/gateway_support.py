"""An in-process gateway for tests that must see inside the server's event loop (its lag, its
registry of live calls): the real `Gateway`, `StorageWriter` and SQLite repository on port 0,
with ASR answered by `SilentTranscriber` (no speech model: these tests are about transport and
call lifecycle, and a Whisper worker would only add minutes of CPU).

`served_api` serves the real API app with uvicorn on the test's loop. `LoopLag` measures
the event loop's lag the way RELIABILITY.md §8 suggests: a 10 ms ticker's overshoot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asr.types import AsrRequest, AsrResult
from config.settings import Settings, load_settings
from monitor.runtime.asr_service import AsrService
from monitor.runtime.gateway import Gateway
from monitor.runtime.storage_sink import StorageWriter
from storage.repository import Repository


class SilentTranscriber:
    """Answers every utterance with no text at once (the ASR seam, not under test here)."""

    worker_count = 1

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        return [AsrResult("", "en", 0.0, len(r.audio) / 16000, 0.0) for r in requests]


@dataclass
class InProcessGateway:
    gateway: Gateway
    repo: Repository
    settings: Settings

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway.port}"


@asynccontextmanager
async def in_process_gateway(
    tmp: Path, *, switch_auth: dict[str, Any] | None = None, **gateway: Any
) -> AsyncIterator[InProcessGateway]:
    settings = load_settings(
        env={},
        data_dir=str(tmp / "data"),
        gateway={"port": 0, "audiosocket_port": -1, **gateway},
        switch_auth=switch_auth or {},
    )
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    repo = Repository.from_url(settings.database_url)
    repo.upgrade()
    storage = StorageWriter(repo, batch_size=200, group_commit_s=0.02, queue_size=10_000)
    storage.start()
    asr = AsrService(SilentTranscriber(), queue_size=64, batch_size=1)
    asr.start()
    gw = Gateway(settings, storage, asr)
    await gw.start()
    try:
        yield InProcessGateway(gw, repo, settings)
    finally:
        await gw.stop()
        await asr.close()
        await storage.close()
        repo.close()


class LoopLag:
    """A 10 ms ticker; `worst_s` is the largest overshoot seen while it ran."""

    def __init__(self, tick_s: float = 0.01) -> None:
        self.tick_s = tick_s
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            self.worst_s = max(self.worst_s, time.perf_counter() - t0 - self.tick_s)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class ServedApi:
    url: str
    ctx: Any  # monitor.web.api.context.ApiContext
    app: Any  # the FastAPI app


@asynccontextmanager
async def served_api(
    tmp: Path, users: dict[str, tuple[str, str]], **api: Any
) -> AsyncIterator[ServedApi]:
    """The real API app served by uvicorn (`ApiServer`) on this loop, on a SQLite file in
    `tmp`, with `users` {name: (password, role)} created; `api` overrides `[api]` settings."""
    from monitor.web.api.app import create_app
    from monitor.web.api.context import ApiContext
    from monitor.web.api.server import ApiServer

    repo = Repository.from_url(f"sqlite:///{tmp / 'cw.db'}")
    repo.upgrade()
    settings = load_settings(env={}, data_dir=tmp, api={"scrypt_n": 2**14, **api})
    ctx = ApiContext.for_repo(settings, repo)
    for name, (password, role) in users.items():
        ctx.access.create_user(name, password, role, at=datetime.now(UTC))
    app = create_app(ctx)
    s = settings.api
    server = ApiServer(
        app,
        "127.0.0.1",
        0,
        trusted_proxies=s.trusted_proxies,
        max_connections=s.max_connections,
        ws_compress=s.ws_compress,
    )
    await server.start()
    try:
        yield ServedApi(server.url, ctx, app)
    finally:
        await server.stop()
        repo.close()
