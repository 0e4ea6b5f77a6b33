"""The board's asyncio shell: one bus subscription feeding one `BoardState`, fanned out to
every connected browser.

`BoardHub.start()` subscribes to the event bus, seeds the state from the database through a
`BoardReader` (calls already active, today's KPIs, unresolved alerts), then folds bus events
in as they come and broadcasts `state.flush()` every `tick_s`. Each browser has its own
bounded queue: a browser that falls `max_backlog` messages behind is not slowed down to, nor
does it slow anyone; its queue is cleared and it gets a fresh snapshot (resync). When the bus
itself dropped events for us (we fell behind), the state is re-seeded from the database and
everyone resyncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

from monitor.board.source import BoardReader
from monitor.board.state import BoardState
from monitor.events import CallEvent

if TYPE_CHECKING:
    from monitor.runtime.bus import EventBus, Subscription

log = logging.getLogger("callwatch.board")

Message = dict[str, Any]


class Client:
    """One browser's outgoing queue of JSON texts (encoded once for every browser). `None`
    in the queue means: send a fresh snapshot."""

    def __init__(self, max_backlog: int) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._max = max_backlog
        self.resyncs = 0

    def offer(self, msgs: list[str]) -> None:
        if self.queue.qsize() + len(msgs) > self._max:
            self.resync()
            return
        for m in msgs:
            self.queue.put_nowait(m)

    def resync(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.resyncs += 1
        self.queue.put_nowait(None)


class BoardHub:
    def __init__(
        self,
        bus: EventBus | None,
        reader: BoardReader,
        *,
        interval_s: float = 0.3,
        tick_s: float = 0.1,
        max_backlog: int = 2000,
        lines_per_party: int = 3,
        bus_maxsize: int = 10_000,
    ) -> None:
        self._bus = bus
        self._reader = reader
        self._interval_s = interval_s
        self._tick_s = tick_s
        self._max_backlog = max_backlog
        self._lines = lines_per_party
        self._bus_maxsize = bus_maxsize
        self.state = BoardState(interval_s=interval_s, lines_per_party=lines_per_party)
        self.clients: set[Client] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._started: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def ensure_started(self) -> None:
        """Start on first use (the app has no startup hook of ours); later callers wait."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self._start()
                self._started.set_result(None)
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started = None
                raise
        else:
            await asyncio.shield(self._started)

    async def _start(self) -> None:
        sub = self._bus.subscribe(maxsize=self._bus_maxsize) if self._bus is not None else None
        await self._reseed()
        if sub is not None:
            self._tasks.append(asyncio.create_task(self._consume(sub), name="board-consume"))
        self._tasks.append(asyncio.create_task(self._broadcast(), name="board-broadcast"))
        log.info("board feed started")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # ------------------------------------------------------------------ clients
    def join(self) -> Client:
        client = Client(self._max_backlog)
        self.clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    # ------------------------------------------------------------------ loops
    async def _consume(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        dropped = 0  # a fresh subscription: every drop counts
        try:
            async for event in sub:
                if sub.dropped != dropped:  # we fell behind the bus: start over from the DB
                    dropped = sub.dropped
                    log.warning(
                        "board fell behind the event bus; resynchronising",
                        extra={"dropped": dropped},
                    )
                    await self._reseed()
                    for client in self.clients:
                        client.resync()
                    continue
                try:
                    self.state.apply(event, loop.time())
                except Exception:  # one odd event must not stop the board
                    log.exception("board could not apply %s", type(event).__name__)
        finally:
            sub.close()

    async def _broadcast(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick_s)
            msgs = self.state.flush(loop.time())
            if msgs and self.clients:
                texts = [json.dumps(m) for m in msgs]
                for client in self.clients:
                    client.offer(texts)

    async def _reseed(self) -> None:
        """Rebuild the state from the database: active calls with their last lines, today's
        finished calls for the KPIs, unresolved alerts."""
        state = BoardState(interval_s=self._interval_s, lines_per_party=self._lines)
        now = asyncio.get_running_loop().time()
        events, alerts = await asyncio.to_thread(self._seed_events)
        for event in events:
            state.apply(event, now)
        for alert in alerts:
            state.put_alert(alert, announce=False)
        state.seed_today(**await asyncio.to_thread(self._today))
        state.seq = self.state.seq
        self.state = state

    def _seed_events(self) -> tuple[list[CallEvent], list[dict[str, Any]]]:
        return self._reader.active_call_events(self._lines), self._reader.open_alerts()

    def _today(self) -> dict[str, Any]:
        # Totalled in SQL over all of today's (UTC) calls, however many: a seed, the live
        # feed adds on.
        start = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)
        return dataclasses.asdict(self._reader.day_totals(start))
