"""Login throttling: who may try a password now, and how many hashes run at once.

`LoginThrottle` (sans-I/O): after `max_failures` wrong passwords for one username from one
client address within `window_s`, further attempts from there are refused for `lockout_s`,
even with the right password. Keyed by (username, address), so a guesser elsewhere cannot
lock a user out of their own desk. An address that fails `max_address_failures` times within
the window, whatever the usernames (password spraying), is refused as a whole for `lockout_s`.
Bounded to `max_keys` entries of each kind (oldest dropped).

`HashGate`: password hashing (scrypt, 16 MiB and ~50 ms each) runs at most `limit` at a time
in worker threads; at most `max_waiting` more wait, and beyond that a login is answered 503 at
once - so a login flood costs bounded memory and never stalls the event loop.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass
class _Entry:
    failures: list[datetime] = field(default_factory=list)
    locked_until: datetime | None = None


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        lockout_s: float,
        max_address_failures: int = 20,
        max_keys: int = 10_000,
    ) -> None:
        self._max = max_failures
        self._max_address = max_address_failures
        self._window = timedelta(seconds=window_s)
        self._lockout = timedelta(seconds=lockout_s)
        self._max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._addresses: OrderedDict[str, _Entry] = OrderedDict()

    def retry_after_s(self, username: str, address: str, now: datetime) -> int:
        """Seconds until this (username, address) may try again; 0 = may try now."""
        return max(
            _wait(self._entries.get((username, address)), now),
            _wait(self._addresses.get(address), now),
        )

    def failed(self, username: str, address: str, now: datetime) -> None:
        self._count(self._entries, (username, address), self._max, now)
        self._count(self._addresses, address, self._max_address, now)

    def _count(self, table: OrderedDict[Any, _Entry], key: Any, limit: int, now: datetime) -> None:
        entry = table.pop(key, None) or _Entry()
        entry.failures = [t for t in entry.failures if now - t < self._window] + [now]
        if len(entry.failures) >= limit:
            entry.locked_until = now + self._lockout
            entry.failures = []
        table[key] = entry
        while len(table) > self._max_keys:
            table.popitem(last=False)

    def succeeded(self, username: str, address: str) -> None:
        self._entries.pop((username, address), None)


def _wait(entry: _Entry | None, now: datetime) -> int:
    if entry is None or entry.locked_until is None or entry.locked_until <= now:
        return 0
    return max(1, int((entry.locked_until - now).total_seconds() + 0.999))


class HashBusy(Exception):
    """Too many logins are already waiting for a password check."""


class HashGate:
    def __init__(self, *, limit: int, max_waiting: int) -> None:
        self._sem = asyncio.Semaphore(limit)
        self._max_waiting = max_waiting
        self._waiting = 0
        self.peak = 0  # most hashes running at once (for tests and metrics)
        self._running = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._sem.locked() and self._waiting >= self._max_waiting:
            raise HashBusy
        self._waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        self.peak = max(self.peak, self._running)
        try:
            yield
        finally:
            self._running -= 1
            self._sem.release()
