"""The alert service: runs the alert engine on the event bus, persists alerts through the
storage writer, traces them on their call, and acknowledges / resolves them.

(Contract B skeleton: acknowledge / resolve are final; the engine is wired in next.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from monitor.runtime.bus import EventBus
from monitor.runtime.storage_sink import StorageWriter
from storage.models import AlertInfo
from storage.records import AlertChanged
from storage.repository import Repository

log = logging.getLogger("callwatch.alerts")


class AlertService:
    def __init__(
        self,
        *,
        repo: Repository,
        storage: StorageWriter,
        bus: EventBus,
        webhooks: Sequence[str] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repo = repo
        self._storage = storage
        self._bus = bus
        self._webhooks = tuple(webhooks)
        self._clock = clock

    async def acknowledge(self, alert_id: int, user: str) -> AlertInfo:
        """open -> acknowledged. Raises `storage.errors.AlertNotFound` or
        `InvalidAlertTransition`; acknowledging twice is a no-op."""
        return await self._change(alert_id, "acknowledged", user)

    async def resolve(self, alert_id: int, user: str) -> AlertInfo:
        """open or acknowledged -> resolved (same errors as `acknowledge`)."""
        return await self._change(alert_id, "resolved", user)

    async def _change(self, alert_id: int, state: str, user: str) -> AlertInfo:
        # An alert raised a moment ago may still wait in the writer's queue: write it first.
        await self._storage.drain()
        at = self._clock()
        before = await asyncio.to_thread(self._repo.get_alert, alert_id)
        alert = await asyncio.to_thread(
            self._repo.set_alert_state,
            alert_id,
            state,
            by=user,
            at=at,
            call_id=before.call_id if before else "",
            webhooks=self._webhooks,
        )
        if before is None or before.state != alert.state:
            self._bus.publish(AlertChanged(alert_id, alert.call_id, state, user, at))
        return alert
