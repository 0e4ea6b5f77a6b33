"""The API served in-process by uvicorn on the running event loop (as `Callwatch` does):
a real socket, a real HTTP client, a clear error for a port in use, and a clean stop."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from config.settings import load_settings
from monitor.web.api.app import create_app
from monitor.web.api.context import ApiContext
from monitor.web.api.server import ApiServer
from storage.repository import Repository


async def test_serves_on_a_free_port_and_stops(tmp_path: Path) -> None:
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'cw.db'}")
    repo.upgrade()
    settings = load_settings(env={}, data_dir=tmp_path)
    server = ApiServer(create_app(ApiContext.for_repo(settings, repo)), "127.0.0.1", 0)
    await server.start()
    try:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.get("/api/me")
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            r = await client.get("/api/openapi.json")
            assert r.json()["info"]["title"] == "callwatch API"
        with pytest.raises(OSError, match="API cannot listen"):
            await ApiServer(create_app(ApiContext.for_repo(settings, repo)), "127.0.0.1",
                            server.port).start()  # fmt: skip
    finally:
        await server.stop()
        repo.close()
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", server.port))
