"""Serving the API in-process: uvicorn on the callwatch event loop, started and stopped by
`Callwatch` next to the gateway.

We bind the listening socket ourselves: a port in use then fails `start()` with a clear
error (uvicorn would `sys.exit` inside its task), and port 0 tells us the port it got.
uvicorn's own signal handling is switched off: SIGINT/SIGTERM belong to `callwatch serve`,
which stops the whole application in order.

The API shares the process (and its file descriptors) with the gateway, so slow or idle clients
must not hold connections: a request's headers must arrive within `header_timeout_s` of the
connection (or of the previous response), an idle keep-alive connection is closed after
`keepalive_timeout_s`, and connections beyond `max_connections` are closed on accept. uvicorn
has no header timeout of its own (a byte every few seconds kept a half-sent request open for
ever), hence `_GuardedH11`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("callwatch.api")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return


class _GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (set per server by
    `_guarded`)."""

    header_timeout_s = 10.0
    max_connections = 256

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("api connection refused: %d open (limit)", self.max_connections)
            transport.abort()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.conn.their_state is not h11.IDLE:
            self._deadline.cancel()  # the request's headers are in
            self._deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.abort()


def _guarded(header_timeout_s: float, max_connections: int) -> type[_GuardedH11]:
    return type(
        "GuardedH11",
        (_GuardedH11,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )


class ApiServer:
    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        header_timeout_s: float = 10.0,
        keepalive_timeout_s: float = 5.0,
        max_connections: int = 256,
        trusted_proxies: tuple[str, ...] = (),
        ws_ping: tuple[float, float] = (20.0, 20.0),
        ws_compress: bool = False,
    ) -> None:
        self._proxies = trusted_proxies
        self._ws_compress = ws_compress
        self._ws_ping = ws_ping  # (interval, timeout): a board socket that stops answering
        self._app = app
        self._host = host
        self._port = port
        self._limits = (header_timeout_s, keepalive_timeout_s, max_connections)
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
        header_timeout_s, keepalive_timeout_s, max_connections = self._limits
        config = uvicorn.Config(
            self._app,
            http=_guarded(header_timeout_s, max_connections),
            log_config=None,  # keep callwatch's logging setup
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            timeout_keep_alive=max(1, round(keepalive_timeout_s)),
            ws_ping_interval=self._ws_ping[0],
            ws_ping_timeout=self._ws_ping[1],
            ws_per_message_deflate=self._ws_compress,
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default (a local client could
            # then claim any address and dodge the login throttle): only configured proxies.
            proxy_headers=bool(self._proxies),
            forwarded_allow_ips=list(self._proxies) or None,
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
        # The board's live feed (monitor.board) runs on this loop: stop it with the server
        # rather than leave its tasks to be destroyed pending when the loop ends.
        hub = getattr(self._app.state, "board_hub", None)
        if hub is not None:
            await hub.close()
