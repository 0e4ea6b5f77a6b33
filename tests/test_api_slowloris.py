"""The API drops slow and surplus connections (issue 17 item 12).

200 half-sent requests were held for over 85 s and a socket sending a byte every 10 s stayed
open; the API shares its process and file descriptors with the gateway. Against the API served
by uvicorn in this process: half-sent requests trickling a byte at a time are closed once
`header_timeout_s` has passed, an idle keep-alive connection after `keepalive_timeout_s`,
connections beyond `max_connections` at once - and a normal request still gets its answer.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from config.settings import load_settings
from monitor.web.api.app import create_app
from monitor.web.api.context import ApiContext
from monitor.web.api.server import ApiServer
from storage.repository import Repository


async def trickle(port: int, stop_after_s: float) -> float | None:
    """Send a request line and headers one byte every 0.2 s; how long until the server
    closed the connection (None: still open after `stop_after_s`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    request = b"GET /api/me HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 1000
    try:
        for byte in request:
            if time.monotonic() - t0 > stop_after_s:
                return None
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                    return time.monotonic() - t0
            except TimeoutError:
                pass
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    finally:
        writer.close()
    return None


async def test_slow_idle_and_surplus_connections_are_closed(tmp_path: Path) -> None:
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'cw.db'}")
    repo.upgrade()
    settings = load_settings(env={}, data_dir=tmp_path)
    server = ApiServer(
        create_app(ApiContext.for_repo(settings, repo)),
        "127.0.0.1",
        0,
        header_timeout_s=1.0,
        keepalive_timeout_s=1.0,
        max_connections=30,
    )
    await server.start()
    try:
        closed_after = await asyncio.gather(*(trickle(server.port, 6.0) for _ in range(20)))
        assert all(t is not None and t < 3.0 for t in closed_after), closed_after

        # Surplus: 30 idle sockets fill the cap; the 31st to 40th are closed on accept.
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(30)]
        await asyncio.sleep(0.2)
        extra = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(10)]
        for reader, _ in extra:
            assert await asyncio.wait_for(reader.read(1), 2) == b""
        for reader, _ in held:  # ... and the held ones go at the header deadline
            assert await asyncio.wait_for(reader.read(1), 3) == b""
        for _, writer in held + extra:
            writer.close()

        # A keep-alive connection that answered once is closed when idle.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /api/me HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"401" in await asyncio.wait_for(reader.readuntil(b"\r\n"), 2)
        t0 = time.monotonic()
        while await asyncio.wait_for(reader.read(4096), 4):
            pass
        assert time.monotonic() - t0 < 3.0
        writer.close()

        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/api/me")).status_code == 401  # still serving
    finally:
        await server.stop()
        repo.close()
