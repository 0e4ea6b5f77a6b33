"""Retention and erasure wired to the settings: the privacy store, one retention pass, and
the server's daily retention task.

The storage modules (storage/privacy.py, storage/retention.py) know nothing of the settings;
this module turns `[retention]` into their arguments, for the server, the CLI
(`callwatch erase`, `callwatch retention run`) and the admin API alike. The task runs a pass
at start and then every `retention.interval_s` in a worker thread (deleting files and rows
is blocking work), so the event loop that carries live audio never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from config.settings import Settings
from storage.nodes import only_one_node
from storage.privacy import PrivacyStore, load_pseudonym_key
from storage.retention import RetentionReport, Rule, run_retention

log = logging.getLogger("callwatch.retention")


def privacy_store(settings: Settings, engine: Engine) -> PrivacyStore:
    key_file = settings.retention.pseudonym_key_file or settings.data_dir / "pseudonym.key"
    return PrivacyStore(engine, settings.recordings_dir, load_pseudonym_key(key_file))


def scheduled_pass(
    settings: Settings, engine: Engine, now: datetime
) -> tuple[RetentionReport, bool]:
    """The task's pass, and whether this node held the retention lock. Several nodes on one
    PostgreSQL (scale-out): every node deletes its own expired recordings (they are on its
    disk), and the node holding the lock also the expired rows (storage.retention)."""
    with only_one_node(engine, "retention") as mine:
        return retention_pass(settings, engine, now, rows=mine), mine


def retention_pass(
    settings: Settings, engine: Engine, now: datetime, *, rows: bool = True
) -> RetentionReport:
    """One pass (the CLI's and the admin API's too). In NATS mode the node's own recordings,
    and the rows with `rows`; on a single box everything."""
    r = settings.retention
    return run_retention(
        engine,
        settings.recordings_dir,
        default=Rule(r.days, r.recording_days),
        queues={q: Rule(v.days, v.recording_days) for q, v in r.queues.items()},
        now=now,
        node=settings.node.resolved_name if settings.bus.enabled else None,
        rows=rows,
    )


class RetentionTask:
    """Runs `retention_pass` now and then every `interval_s` until stopped."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.last: RetentionReport | None = None

    def start(self) -> None:
        r = self._settings.retention
        if r.interval_s <= 0 or not _any_rule(self._settings):
            return  # nothing to expire, or cron runs `callwatch retention run`
        self._task = asyncio.create_task(self._loop(r.interval_s), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self, interval_s: float) -> None:
        while True:
            try:
                report, mine = await asyncio.to_thread(
                    scheduled_pass, self._settings, self._engine, self._clock()
                )
                if not mine:  # another node is deleting rows now; this one, its own files
                    log.info("retention: %d own recordings deleted; rows left to the node "
                             "holding the retention lock", report.recordings_deleted)  # fmt: skip
                    await asyncio.sleep(interval_s)
                    continue
                self.last = report
                log.info(
                    "retention pass: %d calls and %d recordings deleted, %d kept on legal hold",
                    self.last.calls_deleted, self.last.recordings_deleted, self.last.held_skipped,
                )  # fmt: skip
            except Exception:  # a failed pass is retried at the next interval, not fatal
                log.exception("retention pass failed; retrying in %.0f s", interval_s)
            await asyncio.sleep(interval_s)


def _any_rule(settings: Settings) -> bool:
    r = settings.retention
    rules = [r, *r.queues.values()]
    return any(x.days > 0 or x.recording_days > 0 for x in rules)
