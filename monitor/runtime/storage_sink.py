"""The storage writer: the only path from the live side to the database.

Records are queued (bounded) and written by one task with group commit: each transaction
takes everything waiting (up to `batch_size`) and runs in a worker thread, so the event loop
never waits on SQL and an idle system adds no batching delay. Policy when the queue is full:
the producer waits (backpressure on that call only). A batch that fails because the database
is unavailable is retried with backoff until it lands (logged once per outage); a batch the
database rejects for good (`BatchRejected`: a malformed record) is split and written record by
record, so only the bad record is dropped, with an error log, and never stalls the other calls'
writes.

An outage is visible (issue 17 item 11, RELIABILITY.md S1): `health()` says "degraded" while
a write has waited longer than `degraded_after_s` (a lock held elsewhere makes SQLite wait out
its busy timeout before any error surfaces, so waiting counts, not only failures) or the last
attempt failed; /api/health and the board show it (`monitor.runtime.load`). Audio keeps landing
on disk meanwhile (the recorder does not go through here) and the queued records are written,
in order and idempotently, once the database answers.

The writer is also the tap of the event bus (`monitor.runtime.bus`): every record it accepts
is published, in acceptance order (the order the database will see), right after it enters the
queue; so listeners (alerts, the live board) see each call's records without LiveCall or the
gateway knowing about the bus. A record is published before it is committed: listeners that
need the row itself read it after `drain()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.runtime.bus import EventBus
from storage.errors import BatchRejected
from storage.records import Record
from storage.repository import Repository

log = logging.getLogger("callwatch.storage")


class StorageWriter:
    def __init__(
        self,
        repo: Repository,
        *,
        batch_size: int,
        group_commit_s: float,
        queue_size: int,
        bus: EventBus | None = None,
        degraded_after_s: float = 2.0,
    ) -> None:
        self._repo = repo
        self._degraded_after_s = degraded_after_s
        self._writing_since: float | None = None  # monotonic start of the write in progress
        self._failing = False  # the write in progress has failed at least once
        self._bus = bus
        self._batch_size = batch_size
        self._pause = group_commit_s
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.batches_written = 0
        self.records_written = 0
        self.records_rejected = 0

    async def put(self, record: Record) -> None:
        await self._queue.put(record)
        if self._bus is not None:
            self._bus.publish(record)

    async def put_many(self, records: Sequence[Record]) -> None:
        for record in records:
            await self.put(record)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="storage-writer")

    async def drain(self) -> None:
        """Wait until everything queued so far is committed."""
        await self._queue.join()

    async def close(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        # Group commit: write whatever is waiting as soon as the previous transaction is done.
        # An idle system commits each record at once (no added latency); under load records
        # pile up during a commit and the next transaction takes them all, up to batch_size.
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            await self._write(batch)
            for _ in batch:
                self._queue.task_done()
            if self._pause and self._queue.qsize() < self._batch_size:
                # A short pause lets a burst (a call's open, a finished batch) share a commit.
                await asyncio.sleep(self._pause)

    async def _write(self, batch: list[Record]) -> None:
        try:
            await self._write_until_stored(batch)
        except BatchRejected:
            for record in batch:
                try:
                    await self._write_until_stored([record])
                except BatchRejected as exc:
                    self.records_rejected += 1
                    log.error(
                        "storage rejected a record, dropped: %s: %s",
                        type(record).__name__,
                        str(exc).splitlines()[0][:200],
                    )

    def health(self, now: float | None = None) -> dict[str, Any]:
        """`status` "ok" | "degraded" (a write waiting over `degraded_after_s`, or failing),
        `since` (UTC, when the write now waiting began), `waiting_s`, `failing`, `queued`
        (records not written yet). Counters only: no error text, no data."""
        now = time.monotonic() if now is None else now
        started = self._writing_since
        waiting = 0.0 if started is None else max(0.0, now - started)
        degraded = started is not None and (self._failing or waiting >= self._degraded_after_s)
        since = datetime.now(UTC) - timedelta(seconds=waiting) if degraded else None
        return {
            "status": "degraded" if degraded else "ok",
            "since": since.isoformat() if since else None,
            "waiting_s": round(waiting, 1) if degraded else 0.0,
            "failing": self._failing,
            "queued": self._queue.qsize(),
        }

    async def _write_until_stored(self, batch: list[Record]) -> None:
        self._writing_since, self._failing = time.monotonic(), False
        try:
            await self._write_with_retries(batch)
        finally:
            self._writing_since, self._failing = None, False

    async def _write_with_retries(self, batch: list[Record]) -> None:
        delay, failing = 0.2, False
        while True:
            try:
                await asyncio.to_thread(self._repo.apply, batch)
            except BatchRejected:
                raise
            except Exception as exc:  # database unavailable, locked, restarting: retry
                if not failing:
                    log.error(
                        "storage write failed, retrying until it succeeds: %s: %s",
                        type(exc).__name__,
                        str(exc).splitlines()[0][:200],
                    )
                    failing = self._failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if failing:
                log.warning("storage write recovered")
            self.batches_written += 1
            self.records_written += len(batch)
            return
