"""Connecting to NATS with the configured credentials, and saying clearly why it failed.

This module owns turning `BusSettings` into a connected `nats` client. The bus is always
authenticated (user + password, an nkey seed, or a `.creds` file). Failures become
`BusError`s whose message names the server and what to fix, never the secret: wrong
credentials are `BusAuthError` (fatal, no retry loop), an unreachable server
`BusUnavailableError`. Once connected the client reconnects on its own, forever; what is
published meanwhile is the publisher's to buffer (monitor.scale.transport).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client

from config.settings import BusSettings

log = logging.getLogger("callwatch.bus")


class BusError(Exception):
    """The bus could not be used; the message says what to do."""


class BusAuthError(BusError):
    """NATS refused this process's credentials."""


class BusUnavailableError(BusError):
    """No NATS server answered."""


def _safe_url(url: str) -> str:
    """The server list without any user:password@ part (for messages and logs)."""
    return ",".join(u.split("@", 1)[-1] for u in url.split(","))


def connect_options(bus: BusSettings) -> dict[str, Any]:
    """Keyword arguments for `nats.connect`: servers and credentials."""
    if bus.url is None:
        raise BusError("bus.url is not set: there is no bus to connect to (embedded mode)")
    c = bus.credentials
    opts: dict[str, Any] = {"servers": [u.strip() for u in bus.url.split(",") if u.strip()]}
    if c.user is not None and c.password is not None:
        opts["user"] = c.user
        opts["password"] = c.password.get_secret_value()
    elif c.nkey_seed_file is not None:
        opts["nkeys_seed"] = str(c.nkey_seed_file)
    elif c.creds_file is not None:
        opts["user_credentials"] = str(c.creds_file)
    else:
        raise BusError("bus.credentials is empty: the bus is always authenticated")
    return opts


async def connect_bus(
    bus: BusSettings,
    name: str,
    *,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    connect_timeout_s: float = 5.0,
) -> Client:
    """Connect as `name` (shown by the server's monitoring); raise `BusAuthError` or
    `BusUnavailableError` when the first connection fails."""
    opts = connect_options(bus)
    where = _safe_url(bus.url or "")
    errors: list[Exception] = []
    connected = False

    async def error_cb(exc: Exception) -> None:
        if not connected:
            errors.append(exc)
            return
        log.warning("bus error: %s: %s", type(exc).__name__, exc)

    async def disconnected_cb() -> None:
        if connected and not nc.is_closed:
            log.warning("bus disconnected from %s; reconnecting", where)
            if on_disconnect is not None:
                await on_disconnect()

    async def reconnected_cb() -> None:
        log.info("bus reconnected to %s", where)
        if on_reconnect is not None:
            await on_reconnect()

    # Typed `int` by nats-py, used as seconds (floats work): passed untyped.
    opts["connect_timeout"] = connect_timeout_s
    opts["reconnect_time_wait"] = 0.2
    nc = Client()
    try:
        await nc.connect(
            **opts,
            name=name,
            # The first connection either works or fails now, with a reason; after it the
            # client keeps reconnecting (2 s apart) for as long as the process runs.
            allow_reconnect=False,
            # nats-py tries each server in a loop of its own: 0 would mean forever.
            max_reconnect_attempts=1,
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
        )
    except Exception as exc:
        # nats-py leaves the socket of a refused login open: close it, not the GC.
        with contextlib.suppress(Exception):
            await nc.close()
        text = " ".join(str(e) for e in [*errors, exc]).lower()
        if "authorization" in text or "authentication" in text or "permissions" in text:
            raise BusAuthError(
                f"NATS at {where} refused the credentials of {name!r} (Authorization "
                "Violation): check [bus.credentials] (user/password, nkey_seed_file or "
                "creds_file) against the server's authorization block"
            ) from None
        raise BusUnavailableError(
            f"cannot reach NATS at {where}: {type(exc).__name__}: {exc or 'no server answered'}"
            "; is nats-server running there, and is bus.url right?"
        ) from None
    connected = True
    # Reconnect from now on: the option is read on each disconnection.
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = 0.5
    return nc
