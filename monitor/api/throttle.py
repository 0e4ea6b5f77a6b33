"""Login throttling (sans-I/O): after `max_failures` wrong passwords for one username from one
client address within `window_s`, further attempts from there are refused for `lockout_s`,
even with the right password. Keyed by (username, address), so a guesser elsewhere cannot
lock a user out of their own desk; bounded to `max_keys` entries (oldest dropped).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class _Entry:
    failures: list[datetime] = field(default_factory=list)
    locked_until: datetime | None = None


class LoginThrottle:
    def __init__(
        self, *, max_failures: int, window_s: float, lockout_s: float, max_keys: int = 10_000
    ) -> None:
        self._max = max_failures
        self._window = timedelta(seconds=window_s)
        self._lockout = timedelta(seconds=lockout_s)
        self._max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def retry_after_s(self, username: str, address: str, now: datetime) -> int:
        """Seconds until this (username, address) may try again; 0 = may try now."""
        entry = self._entries.get((username, address))
        if entry is None or entry.locked_until is None or entry.locked_until <= now:
            return 0
        return max(1, int((entry.locked_until - now).total_seconds() + 0.999))

    def failed(self, username: str, address: str, now: datetime) -> None:
        key = (username, address)
        entry = self._entries.pop(key, None) or _Entry()
        entry.failures = [t for t in entry.failures if now - t < self._window] + [now]
        if len(entry.failures) >= self._max:
            entry.locked_until = now + self._lockout
            entry.failures = []
        self._entries[key] = entry
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    def succeeded(self, username: str, address: str) -> None:
        self._entries.pop((username, address), None)
