"""The websocket gateway switches stream into: one connection = one call.

A thin asyncio shell over the sans-I/O wire codec (`monitor.wire.audiofork`) and call core.
Everything that can go wrong with a connection ends in exactly one place, `_serve_call`'s
`finally`, which finalises the call with its status and reason; a failure of one call never
reaches another (each connection is its own task, and nothing is shared but the queues).

Close codes (RFC 6455): 1003 unsupported audio layout, 1007 malformed metadata, 1008 protocol
order (audio before metadata, no metadata in time), 1009 message too big (websockets enforces
`max_message_bytes`), 1001 server going away or idle peer. Too many calls: HTTP 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from config.settings import Settings
from monitor.core.analysis import CallAnalyzer
from monitor.core.metadata import CallMetadata
from monitor.errors import ProtocolError
from monitor.qa import ScriptBook
from monitor.runtime.asr_service import AsrService
from monitor.runtime.call import FINAL_ASR_WAIT_S, SHUTDOWN_ASR_WAIT_S, LiveCall
from monitor.runtime.dnsmos_service import DnsmosService
from monitor.runtime.logs import fields
from monitor.runtime.storage_sink import StorageWriter
from monitor.wire.audiofork import (
    PROTOCOL_NAME,
    AudioForkDecoder,
    AudioReceived,
    FlushRequested,
    MetadataReceived,
    TextReceived,
    WireEvent,
)

log = logging.getLogger("callwatch.gateway")


class Gateway:
    def __init__(
        self,
        settings: Settings,
        storage: StorageWriter,
        asr: AsrService,
        *,
        scripts: ScriptBook | None = None,
        dnsmos: DnsmosService | None = None,
    ) -> None:
        self._settings = settings
        self._scripts = scripts
        self._dnsmos = dnsmos
        self._cfg = settings.gateway
        self._storage = storage
        self._asr = asr
        self._server: Server | None = None
        self._connections = 0
        self._stopping = False
        self.calls: dict[str, LiveCall] = {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("gateway not started")
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self._cfg.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self._cfg.host,
            self._cfg.port,
            max_size=self._cfg.max_message_bytes,
            compression=None,  # audio does not compress; deflate only costs CPU
            subprotocols=[Subprotocol(p) for p in self._cfg.subprotocols],
            select_subprotocol=self._select_subprotocol,
            process_request=self._admit,
            ping_interval=10,
            ping_timeout=self._cfg.idle_timeout_s,
            close_timeout=5,
        )
        log.info("gateway listening on %s", self.url)

    async def stop(self) -> None:
        """Stop accepting; open calls are closed with 1001 and finalised as interrupted."""
        self._stopping = True
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # Echo what the switch offers: ours first, else its own name (a deployment may set
        # MOD_AUDIO_FORK_SUBPROTOCOL_NAME to anything), else none.
        for name in offered:
            if name in self._cfg.subprotocols:
                return name
        return offered[0] if offered else None

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._stopping:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if self._connections >= self._cfg.max_calls:
            log.warning(
                "call refused: too many concurrent calls",
                extra=fields(limit=self._cfg.max_calls, peer=_peer(connection)),
            )
            resp = connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"too many concurrent calls (limit {self._cfg.max_calls}); retry later\n",
            )
            resp.headers = Headers(resp.headers)
            resp.headers["Retry-After"] = "5"
            return resp
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self._connections += 1
        try:
            await self._serve_call(ws)
        finally:
            self._connections -= 1

    async def _serve_call(self, ws: ServerConnection) -> None:
        peer = _peer(ws)
        connected_at = datetime.now(UTC)
        decoder = AudioForkDecoder(default_sample_rate=8000, default_channels=2)
        call: LiveCall | None = None
        status, reason, detail = "interrupted", "transport", None
        try:
            try:
                async with asyncio.timeout(self._cfg.metadata_timeout_s):
                    first = await ws.recv()
            except TimeoutError:
                raise ProtocolError(
                    ProtocolError.POLICY_VIOLATION,
                    f"no metadata within {self._cfg.metadata_timeout_s:g} s",
                ) from None
            events = _decode(decoder, first)
            meta_event = events[0]
            if not isinstance(meta_event, MetadataReceived):  # the decoder's contract
                raise ProtocolError(ProtocolError.POLICY_VIOLATION, "expected metadata first")
            call = LiveCall(
                settings=self._settings,
                analyzer=self._analyzer(meta_event.metadata),
                dnsmos=self._dnsmos,
                metadata=meta_event.metadata,
                raw_metadata=meta_event.raw,
                protocol=PROTOCOL_NAME,
                peer=peer,
                connected_at=connected_at,
                storage=self._storage,
                asr=self._asr,
            )
            self.calls[call.call_id] = call
            await call.open()
            while True:
                try:
                    async with asyncio.timeout(self._cfg.idle_timeout_s):
                        message = await ws.recv()
                except TimeoutError:
                    reason, detail = "idle_timeout", f"no data for {self._cfg.idle_timeout_s:g} s"
                    await ws.close(1001, "idle timeout")
                    break
                for event in _decode(decoder, message):
                    await self._dispatch(call, event)
        except ProtocolError as exc:
            reason, detail = "protocol_error", exc.reason
            log.warning(
                "protocol error: %s",
                exc.reason,
                extra=fields(
                    peer=peer, call_id=call.call_id if call else None, code=exc.close_code
                ),
            )
            if call is not None:
                await call.trace("protocol_error", code=exc.close_code, reason=exc.reason)
            await ws.close(exc.close_code, exc.reason)
        except ConnectionClosedOK:
            if self._stopping:
                reason = "shutdown"
            else:
                status, reason = "completed", "normal"
        except ConnectionClosed as exc:
            reason, detail = _closed_reason(exc)
            log.warning(
                "connection lost: %s",
                detail,
                extra=fields(peer=peer, call_id=call.call_id if call else None),
            )
        finally:
            if call is not None:
                # Shielded: a cancelled handler (server shutdown) must still close the record.
                wait = SHUTDOWN_ASR_WAIT_S if self._stopping else FINAL_ASR_WAIT_S
                await asyncio.shield(
                    call.finish(status=status, reason=reason, detail=detail, asr_wait_s=wait)
                )
                self.calls.pop(call.call_id, None)

    def _analyzer(self, meta: CallMetadata) -> CallAnalyzer:
        s = self._settings
        language = None if s.asr.language == "auto" else s.asr.language
        return CallAnalyzer(meta, s.quality, s.grading, self._scripts, language)

    async def _dispatch(self, call: LiveCall, event: WireEvent) -> None:
        if isinstance(event, AudioReceived):
            await call.on_audio(event.pcm)
        elif isinstance(event, TextReceived):
            await call.on_app_message(event.payload)
        elif isinstance(event, FlushRequested):
            await call.trace("graceful_shutdown")
        elif isinstance(event, MetadataReceived):  # pragma: no cover - decoder never repeats
            raise ProtocolError(ProtocolError.POLICY_VIOLATION, "metadata sent twice")


def _decode(decoder: AudioForkDecoder, message: str | bytes) -> list[WireEvent]:
    if isinstance(message, str):
        return decoder.receive_text(message)
    return decoder.receive_bytes(message)


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else "unknown"


def _closed_reason(exc: ConnectionClosed) -> tuple[str, str]:
    if exc.sent is not None and exc.sent.code == 1009:
        return "message_too_big", "message larger than gateway.max_message_bytes"
    if exc.rcvd is None:
        return "transport", "connection dropped without a close frame"
    return "closed_by_switch", f"switch closed with code {exc.rcvd.code} {exc.rcvd.reason!r}"
