"""The in-process event bus: every event of every live call (`monitor.events`: the call's own,
and the alerts raised on it), fanned out to whoever listens (the storage writer, the alert
service, the live board feed, the sealer).

`EventBus.publish` is synchronous and never blocks: it is called on the event-loop thread by
the live call (and the alert service) for each event it makes, so a slow listener must never
slow a call down. Listeners come in two kinds. An attached listener (`attach`: the storage
writer) is called in line, in publish order, and must only queue the event (it owns its
queue and its policy: see `monitor.runtime.storage_sink`). Each `Subscription` has its own
bounded buffer; when it is full the
*oldest* event is dropped and counted in `dropped` (a board that fell behind wants the newest
state, and the count tells it to resynchronise from the database). Publishing with no
subscribers costs a loop over an empty list.

Usage:

    sub = bus.subscribe(maxsize=1000)
    try:
        async for event in sub:
            ...
    finally:
        sub.close()

Not thread-safe by design: publish and iterate on the loop's thread (call
`loop.call_soon_threadsafe(bus.publish, event)` from another thread).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from monitor.events import CallEvent

__all__ = ["EventBus", "Subscription"]


class Subscription:
    """One listener's bounded queue of events; an async iterator that ends on `close()`."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self._bus = bus
        self._events: deque[CallEvent] = deque()
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self._closed = False
        #: Events dropped because this subscriber fell `maxsize` behind (oldest first).
        self.dropped = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._events)

    def _offer(self, event: CallEvent) -> None:
        if len(self._events) >= self._maxsize:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)
        self._wakeup.set()

    def get_nowait(self) -> CallEvent | None:
        """The next waiting event, or None when none is waiting."""
        return self._events.popleft() if self._events else None

    async def get(self) -> CallEvent:
        """Wait for the next event; raises `StopAsyncIteration` once closed and drained."""
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._events.popleft()

    def close(self) -> None:
        """Unsubscribe: no new events arrive; waiting ones can still be read, then iteration
        ends."""
        if not self._closed:
            self._closed = True
            self._bus._remove(self)
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[CallEvent]:
        return self

    async def __anext__(self) -> CallEvent:
        return await self.get()


class EventBus:
    """Fan-out of published events to every open subscription, in publish order."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._listeners: list[Callable[[CallEvent], None]] = []
        self.published = 0

    def attach(self, listener: Callable[[CallEvent], None]) -> None:
        """Call `listener(event)` in line for every event, before the subscriptions see it.
        It must not block or raise (it queues: the storage writer)."""
        self._listeners.append(listener)

    def publish(self, event: CallEvent) -> None:
        """Hand `event` to every subscriber now (sync, non-blocking, loop thread only)."""
        self.published += 1
        for listener in self._listeners:
            listener(event)
        for sub in self._subs:
            sub._offer(event)

    def subscribe(self, *, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subs.append(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def _remove(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            pass
