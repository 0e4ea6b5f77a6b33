"""The websocket gateway switches stream into: one connection = one call, any protocol.

Routing by URL path on one port: `/audiofork` (and `/`, for existing deployments) = FreeSWITCH
`mod_audio_fork` / `mod_audio_stream` / jambonz `listen`; `/twilio` = Twilio Media Streams;
`/audiohook` = Genesys AudioHook. Asterisk AudioSocket is raw TCP on its own port
(`monitor.runtime.audiosocket_server`). Each protocol's sans-I/O codec (`monitor.wire.*`) turns
messages into the same call events, applied by a `CallFeed`; this module is the thin shell:
handshake (admission, per-protocol authentication before any audio, subprotocol echo, no
permessage-deflate, TLS when configured), one generic receive loop, and exactly one place where
a call ends (`_serve_call`'s `finally`). A failure of one call never reaches another. Calls
are built by the `CallFactory` and found in the `CallRegistry` (both shared with the
AudioSocket server, the alerts and the API).

Close codes (RFC 6455): 1003 unsupported audio, 1007 malformed message, 1008 protocol order or
policy (audio too fast), 1009 message too big, 1001 going away / idle or stalled peer, 1011
a peer that stopped answering pings (dead or half-open: keepalive, or the stall probe).
Handshake: 401 authentication failed, 404 unknown path, 503 too many calls (Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from config.settings import GatewaySettings, Settings, is_loopback
from monitor.errors import ProtocolError
from monitor.qa import ScriptBook
from monitor.runtime.asr_service import AsrService
from monitor.runtime.call import SHUTDOWN_ASR_WAIT_S, LiveCall
from monitor.runtime.call_factory import CallFactory
from monitor.runtime.dnsmos_service import DnsmosService
from monitor.runtime.feed import CallFeed
from monitor.runtime.latency import LatencyHistogram
from monitor.runtime.logs import fields
from monitor.runtime.peer_watch import PeerQuiet, closed_reason, receive
from monitor.runtime.registry import CallRegistry
from monitor.runtime.resume import ResumableCalls, Resumption
from monitor.runtime.storage_sink import StorageWriter
from monitor.wire import auth
from monitor.wire.audiofork import AudioForkDecoder
from monitor.wire.audiohook import AudioHookDecoder
from monitor.wire.events import CallEvent, CallStarted
from monitor.wire.twilio import TwilioDecoder

log = logging.getLogger("callwatch.gateway")
ROUTES = {
    "/": "audiofork",
    "/audiofork": "audiofork",
    "/twilio": "twilio",
    "/audiohook": "audiohook",
}
AUTH_FAILURE_DELAY_S = 0.5  # AudioHook reference: failures answered no sooner (timing probes)
Decoder = AudioForkDecoder | TwilioDecoder | AudioHookDecoder


def route(path: str) -> str | None:
    base = path.split("?", 1)[0].rstrip("/") or "/"
    return ROUTES.get(base)


def new_decoder(protocol: str, cfg: GatewaySettings | None = None, path: str = "") -> Decoder:
    if protocol == "twilio":
        return TwilioDecoder()
    if protocol == "audiohook":
        return AudioHookDecoder()
    cfg = cfg or GatewaySettings()
    return AudioForkDecoder(
        default_sample_rate=cfg.default_sample_rate,
        default_channels=cfg.default_channels,
        query=path.partition("?")[2],  # per-path format: /audiofork?rate=16000&channels=1
    )


class Gateway:
    def __init__(
        self,
        settings: Settings,
        storage: StorageWriter,
        asr: AsrService,
        *,
        scripts: ScriptBook | None = None,
        dnsmos: DnsmosService | None = None,
        registry: CallRegistry | None = None,
        factory: CallFactory | None = None,
    ) -> None:
        self._settings = settings
        self._cfg = settings.gateway
        self._auth = settings.switch_auth
        self._server: Server | None = None
        self._connections = 0
        self.stopping = False
        #: The live calls of both transports (this one and the AudioSocket server's).
        self.calls = registry if registry is not None else CallRegistry()
        #: Builds and registers each call (shared with the AudioSocket server).
        self.factory = factory or CallFactory(
            settings, storage=storage, asr=asr, registry=self.calls, scripts=scripts, dnsmos=dnsmos
        )
        self.extra_calls = 0  # calls held by the AudioSocket server (admission limit)
        self.overloaded = False  # set by monitor.runtime.load.LoadMonitor
        self._nonces = auth.NonceCache()  # AudioHook signatures accepted (no replays)
        #: Calls whose connection dropped, kept `resume_grace_s` for the switch to come back.
        self.resumable = ResumableCalls(settings.gateway.resume_grace_s, self._end_parked)
        #: Ingest latency of every audio message of every call (both transports), for
        #: /api/health; each call's own is stored with its media counts.
        self.ingest = LatencyHistogram()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("gateway not started")
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "wss" if self._cfg.tls_cert_file else "ws"
        return f"{scheme}://{self._cfg.host}:{self.port}"

    @property
    def call_limit(self) -> int:
        """`gateway.max_calls`, or the declared `load.capacity_calls` when lower."""
        declared = self._settings.load.capacity_calls
        return min(self._cfg.max_calls, declared) if declared else self._cfg.max_calls

    def at_capacity(self) -> bool:
        if self.overloaded and self._settings.load.refuse_when_overloaded:
            return True
        # A call kept for its switch to reconnect holds its recording and state: it counts.
        held = self._connections + self.extra_calls + len(self.resumable)
        return held >= self.call_limit

    async def start(self) -> None:
        ctx = None
        if self._cfg.tls_cert_file and self._cfg.tls_key_file:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self._cfg.tls_cert_file, self._cfg.tls_key_file)
        self._server = await serve(
            self._handle,
            self._cfg.host,
            self._cfg.port,
            ssl=ctx,
            max_size=self._cfg.max_message_bytes,
            compression=None,  # no permessage-deflate: audio does not compress, it costs CPU
            subprotocols=[Subprotocol(p) for p in self._cfg.subprotocols],
            select_subprotocol=self._select_subprotocol,
            process_request=self._admit,
            # A dead or half-open peer (TCP up, nothing read) leaves a ping unanswered: 1011.
            # Pongs queue behind unread audio on a busy server, hence the generous timeout.
            ping_interval=self._cfg.ping_interval_s,
            ping_timeout=self._cfg.ping_timeout_s,
            close_timeout=self._cfg.close_timeout_s,
        )
        required = self._settings.switch_auth_required
        public = self._auth.allow_unauthenticated and not is_loopback(self._cfg.host)
        for protocol, configured in self._auth_configured().items():
            if not configured:
                # Open to anyone beyond this machine: as loud as the log gets.
                level = logging.CRITICAL if public else logging.WARNING
                level = logging.ERROR if required else level
                what = "refuses every connection" if required else "is unauthenticated"
                log.log(level, "%s %s: set its credentials under [switch_auth]", protocol, what)
        log.info("gateway listening on %s", self.url)

    def _auth_configured(self) -> dict[str, bool]:
        a = self._auth
        return {
            "audiofork": bool(a.audiofork_tokens or a.audiofork_basic),
            "twilio": a.twilio_auth_token is not None,
            "audiohook": bool(a.audiohook_api_keys),
        }

    async def stop(self) -> None:
        """Stop accepting; open calls are closed with 1001 and finalised as interrupted;
        ended calls get their verdict with what ASR delivers within `SHUTDOWN_ASR_WAIT_S`."""
        self.stopping = True
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        await self.resumable.close()  # no switch comes back to a stopping server
        await self.settle(SHUTDOWN_ASR_WAIT_S)

    def release(self, call: LiveCall) -> None:
        """The switch hung up on `call`: see `CallRegistry.release`."""
        self.calls.release(call)

    async def settle(self, wait_s: float) -> None:
        """Make the verdict of every ended call, waiting at most `wait_s` for transcripts."""
        pending = [c.completion for c in self.calls.values() if c.completion is not None]
        for call in self.calls.values():
            if call.completion is not None:
                call.hurry(wait_s)
        await asyncio.gather(*pending, return_exceptions=True)

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # Echo what the switch offers: ours first, else its own name (a deployment may set
        # MOD_AUDIO_FORK_SUBPROTOCOL_NAME to anything), else none.
        for name in offered:
            if name in self._cfg.subprotocols:
                return name
        return offered[0] if offered else None

    async def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        peer = _peer(connection)
        if self.stopping:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        protocol = route(request.path)
        if protocol is None:
            return connection.respond(
                HTTPStatus.NOT_FOUND, "unknown path: use /audiofork, /twilio or /audiohook\n"
            )
        if self.at_capacity():
            shed = self.overloaded and self._settings.load.refuse_when_overloaded
            why = "overloaded" if shed else f"limit {self.call_limit}"
            log.warning(
                "call refused: too many concurrent calls",
                extra=fields(limit=self.call_limit, overloaded=self.overloaded, peer=peer,
                             protocol=protocol),
            )  # fmt: skip
            resp = connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, f"too many concurrent calls ({why}); retry later\n"
            )
            resp.headers = Headers(resp.headers)
            resp.headers["Retry-After"] = "5"
            return resp
        problem = self._authenticate(protocol, request)
        if problem is not None:
            # The reason names what failed, never the secret or what the peer sent as one.
            log.warning(
                "switch authentication failed: %s",
                problem,
                extra=fields(peer=peer, protocol=protocol, path=request.path.split("?")[0]),
            )
            if protocol == "audiohook":
                await asyncio.sleep(AUTH_FAILURE_DELAY_S)
            return connection.respond(HTTPStatus.UNAUTHORIZED, f"{problem}\n")
        return None

    def _authenticate(self, protocol: str, request: Request) -> str | None:
        a, h = self._auth, request.headers
        if not self._auth_configured()[protocol]:
            return (
                f"no {protocol} credentials configured"
                if self._settings.switch_auth_required
                else None
            )
        if protocol == "audiofork":
            return auth.check_authorization(
                h.get("Authorization"),
                tokens=[t.get_secret_value() for t in a.audiofork_tokens],
                basic=[b.get_secret_value() for b in a.audiofork_basic],
            )
        if protocol == "twilio":
            assert a.twilio_auth_token is not None
            base = a.twilio_public_url.rstrip("/") or f"wss://{h.get('Host', '')}"
            return auth.check_twilio(
                h.get("X-Twilio-Signature"),
                auth_token=a.twilio_auth_token.get_secret_value(),
                url=base + request.path,
            )
        return auth.check_audiohook(
            {k: v for k, v in h.raw_items()},
            target=request.path,
            authority=h.get("Host", ""),
            keys={k: v.get_secret_value() for k, v in a.audiohook_api_keys.items()},
            now=int(time.time()),
            nonces=self._nonces,
        )

    async def _handle(self, ws: ServerConnection) -> None:
        self._connections += 1
        try:
            await self._serve_call(ws, route(ws.request.path if ws.request else "/") or "")
        finally:
            self._connections -= 1

    def new_call(self, started: CallStarted, protocol: str, peer: str) -> LiveCall:
        return self.factory.new_call(started, protocol, peer)

    async def _serve_call(self, ws: ServerConnection, protocol: str) -> None:
        peer = _peer(ws)
        decoder = new_decoder(protocol, self._cfg, ws.request.path if ws.request else "")
        feed = CallFeed(
            self._cfg,
            lambda started: self.new_call(started, protocol, peer),
            protocol=protocol,
            now=time.monotonic(),
            shared=self.ingest,
        )
        status, reason, detail = "interrupted", "transport", None
        resumption: Resumption | None = None
        dropped = False  # the connection went without a close frame: it may come back
        try:
            while feed.stopped is None:
                try:
                    message = await receive(ws, feed, self._cfg)
                except PeerQuiet as quiet:
                    reason, detail = quiet.reason, quiet.detail
                    if feed.call is not None:
                        await feed.call.trace("stall", reason=reason, detail=detail,
                                              code=quiet.code)  # fmt: skip
                    log.warning("call %s: %s", reason, detail, extra=fields(peer=peer))
                    await ws.close(quiet.code, quiet.close_reason)
                    break
                now = time.monotonic()
                for event in _decode(decoder, message):
                    if isinstance(event, CallStarted) and not feed.started:
                        resumed = await self.resumable.take(protocol, event, decoder, now)
                        if resumed is not None:  # the switch reconnected: the call goes on
                            feed, resumption = resumed.feed, resumed
                            continue
                    if resumption is not None:
                        event = await resumption.place(event, now)
                    for reply in await feed.handle(event, now):
                        await ws.send(reply.text if reply.text is not None else reply.data or b"")
            if feed.stopped is not None:  # the switch said the call is over
                reason, detail = feed.stopped.reason, feed.stopped.detail
                status = "interrupted" if reason in ("error", "switch_error") else "completed"
                await ws.close(1000, "call ended")
        except ProtocolError as exc:
            reason, detail = "protocol_error", exc.reason
            log.warning(
                "protocol error: %s",
                exc.reason,
                extra=fields(peer=peer, protocol=protocol, code=exc.close_code,
                             call_id=feed.call.call_id if feed.call else None),
            )  # fmt: skip
            if feed.call is not None:
                await feed.call.trace("protocol_error", code=exc.close_code, reason=exc.reason)
            if isinstance(decoder, AudioHookDecoder) and decoder.opened:
                # AudioHook clients expect the server's `disconnect` before the socket closes.
                with contextlib.suppress(ConnectionClosed):
                    reply = decoder.disconnect("error", exc.reason)
                    await ws.send(reply.text or "")
            await ws.close(exc.close_code, exc.reason)
        except ConnectionClosedOK:
            if self.stopping:
                reason = "shutdown"
            else:
                status, reason = "completed", "normal"
        except ConnectionClosed as exc:
            reason, detail = closed_reason(exc)
            dropped = reason == "transport"
            if exc.sent is not None and exc.sent.code == 1011 and feed.call is not None:
                # The keepalive found the peer dead: on the timeline like the stall probe.
                await feed.call.trace("stall", reason=reason, detail=detail, code=1011)
            log.warning(
                "connection lost: %s",
                detail,
                extra=fields(peer=peer, call_id=feed.call.call_id if feed.call else None),
            )
        finally:
            if isinstance(decoder, TwilioDecoder):
                feed.extra_counts["sequence_gaps"] = decoder.sequence_gaps
            # A dropped connection may come back (gateway.resume_grace_s): kept, not ended.
            kept = dropped and not self.stopping
            if not (kept and await self.resumable.park(feed, decoder, protocol, detail)):
                await self._end(feed, status, reason, detail)

    async def _end(self, feed: CallFeed, status: str, reason: str, detail: str | None) -> None:
        """Finalise the call of `feed` (the one place a websocket call ends)."""
        wait = SHUTDOWN_ASR_WAIT_S if self.stopping else self._settings.asr.final_wait_s
        try:
            # Shielded: a cancelled handler (server shutdown) must still close the record.
            await asyncio.shield(
                feed.finish(status=status, reason=reason, detail=detail, asr_wait_s=wait)
            )
        finally:  # the registry entry goes whatever happened while finalising
            if feed.call is not None:
                self.release(feed.call)

    async def _end_parked(self, feed: CallFeed, detail: str | None) -> None:
        """Nobody reconnected within `resume_grace_s`: the call ends as the drop left it."""
        await self._end(feed, "interrupted", "transport", detail)


def _decode(decoder: Decoder, message: str | bytes) -> list[CallEvent]:
    if isinstance(message, str):
        return decoder.receive_text(message)
    return decoder.receive_bytes(message)


def _peer(ws: Any) -> str:
    addr = ws.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else "unknown"
