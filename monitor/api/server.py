"""Serving the API in-process: uvicorn on the callwatch event loop, started and stopped by
`Callwatch` next to the gateway.

We bind the listening socket ourselves: a port in use then fails `start()` with a clear
error (uvicorn would `sys.exit` inside its task), and port 0 tells us the port it got.
uvicorn's own signal handling is switched off: SIGINT/SIGTERM belong to `callwatch serve`,
which stops the whole application in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

log = logging.getLogger("callwatch.api")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return


class ApiServer:
    def __init__(self, app: Any, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._bound = 0

    @property
    def port(self) -> int:
        if not self._bound:
            raise RuntimeError("API server not started")
        return self._bound

    @property
    def url(self) -> str:
        host = self._host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"API cannot listen on {self._host}:{self._port}: {exc.strerror}; set "
                "[api] port (or CALLWATCH_API__PORT) to a free port, 0 for any",
            ) from exc
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self._bound = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            log_config=None,  # keep callwatch's logging setup
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="api-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise why it could not start
                raise RuntimeError("API server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("api listening on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, 10)
            except TimeoutError:
                self._task.cancel()
        if self._sock is not None:
            self._sock.close()
        self._server = self._task = None
