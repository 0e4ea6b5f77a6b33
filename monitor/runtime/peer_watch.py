"""How a switch's websocket goes quiet or away: the gateway's receive with the stall probe,
and what a lost connection is recorded as.

A switch streams continuously, so no audio for `gateway.stall_timeout_s` (not paused) means
something is wrong; which thing is told apart by a ping. A peer that answers is alive but
silent: the call ends `interrupted/stalled` with close 1001. One that does not answer within
`ping_timeout_s` is dead or half-open (TCP up, nothing read: RELIABILITY.md N2) and is closed
with 1011, as the websockets keepalive (`ping_interval_s`, `ping_timeout_s`) closes one that
stops answering while audio still flows. Messages are still received while the probe's ping
is out, so audio that resumes ends the stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from config.settings import GatewaySettings
from monitor.errors import ProtocolError
from monitor.runtime.feed import CallFeed


async def receive(ws: ServerConnection, feed: CallFeed, cfg: GatewaySettings) -> str | bytes:
    """The next message; `PeerQuiet` when the peer has gone quiet for too long.

    No audio for `stall_timeout_s` (not paused) is told apart by a ping: a peer that
    answers is alive but silent (1001, "stalled"); one that does not answer within
    `ping_timeout_s` is dead or half-open, TCP up but nothing read (1011). Messages are
    still received while the ping is out, so audio that resumes ends the stall."""
    try:
        async with asyncio.timeout(_timeout(feed, cfg)):
            return await ws.recv()
    except TimeoutError:
        if not feed.started:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION,
                f"no metadata within {cfg.metadata_timeout_s:g} s",
            ) from None
    if feed.paused:
        raise PeerQuiet("idle_timeout", f"no data for {cfg.idle_timeout_s:g} s while paused")
    receiving: asyncio.Future[str | bytes] = asyncio.ensure_future(ws.recv())
    pong: asyncio.Future[float] | None = None
    try:
        # Bounded as a whole: even the ping's write may wait on a peer that reads nothing.
        async with asyncio.timeout(cfg.ping_timeout_s):
            pong = asyncio.ensure_future(await ws.ping())  # already a future: the same one
            either: list[asyncio.Future[Any]] = [pong, receiving]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        pong = None
    finally:
        if not receiving.done():
            receiving.cancel()  # cancelling recv() loses no message
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
    if not receiving.cancelled():
        return receiving.result()  # a message, or ConnectionClosed (the keepalive's 1011)
    if pong is not None and pong.done():
        if not pong.cancelled() and pong.exception() is None:
            raise PeerQuiet("stalled", f"no audio for {cfg.stall_timeout_s:g} s")
        return await ws.recv()  # the connection went meanwhile: its ConnectionClosed
    raise PeerQuiet(
        "stalled",
        f"no audio for {cfg.stall_timeout_s:g} s and no answer to a ping within "
        f"{cfg.ping_timeout_s:g} s (dead or half-open peer)",
        code=1011,
    )


def _timeout(feed: CallFeed, cfg: GatewaySettings) -> float:
    if not feed.started:
        return cfg.metadata_timeout_s
    if feed.paused:
        # Nothing is sent while paused (FreeSWITCH pause marker, AudioHook `paused`).
        return cfg.idle_timeout_s
    left = feed.last_audio_at + cfg.stall_timeout_s - time.monotonic()
    return max(0.0, min(left, cfg.idle_timeout_s))


class PeerQuiet(Exception):
    """The peer sent nothing for too long: end the call with `code` (1001, or 1011 for a peer
    that no longer answers pings)."""

    def __init__(self, reason: str, detail: str, code: int = 1001) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.code = reason, detail, code

    @property
    def close_reason(self) -> str:
        return "keepalive ping timeout" if self.code == 1011 else self.reason.replace("_", " ")


def closed_reason(exc: ConnectionClosed) -> tuple[str, str]:
    """How a lost connection is recorded: (end reason, detail)."""
    if exc.sent is not None and exc.sent.code == 1009:
        return "message_too_big", "message larger than gateway.max_message_bytes"
    if exc.sent is not None and exc.sent.code == 1011:
        return "stalled", "the switch stopped answering websocket pings"
    if exc.rcvd is None:
        return "transport", "connection dropped without a close frame"
    return "closed_by_switch", f"switch closed with code {exc.rcvd.code} {exc.rcvd.reason!r}"
