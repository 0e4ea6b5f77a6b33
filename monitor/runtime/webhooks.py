"""Webhook delivery from the persisted outbox: signed JSON POSTs with retries and backoff.

Alert rows and their `webhook_outbox` rows are committed in one transaction (storage.alerts),
so delivery only has to drain the outbox: every due `pending` row is POSTed to its target;
a 2xx marks it `delivered`; anything else (refused, timeout, 5xx, 4xx) schedules the next
attempt after an exponential backoff with jitter (`backoff_initial_s`, doubling, capped at
`backoff_max_s`, +/- `jitter`), until the row is older than `give_up_after_s`, when it is
marked `failed` (logged). State lives in the database, so a restart resumes where it left.

Delivery is at least once: a receiver whose 2xx response is lost gets the same delivery again.
Each delivery carries a stable id (`X-Callwatch-Delivery`, also `delivery_id` in the body) for
receivers to drop repeats.

Signature (documented in docs/api.md): header
    X-Callwatch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
Receivers recompute the HMAC over the timestamp, a dot and the raw request body, compare in
constant time, and reject timestamps more than 5 minutes from their clock (replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from config.settings import WebhookSettings, WebhookTarget
from monitor.runtime.logs import fields
from storage.models import OutboxInfo
from storage.repository import Repository

log = logging.getLogger("callwatch.webhooks")

SIGNATURE_HEADER = "X-Callwatch-Signature"
DELIVERY_HEADER = "X-Callwatch-Delivery"
EVENT_HEADER = "X-Callwatch-Event"
#: Receivers should refuse signatures older (or newer) than this.
SIGNATURE_TOLERANCE_S = 300
#: With nothing due, the outbox is still looked at this often (rows written by another path).
IDLE_POLL_S = 5.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, now: float, tolerance_s: float = SIGNATURE_TOLERANCE_S
) -> bool:
    """What a receiver does: parse the header, check the timestamp window and the HMAC."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def backoff_s(attempts: int, settings: WebhookSettings, rng: random.Random) -> float:
    """Wait before attempt `attempts + 1` (after `attempts` failures, >= 1)."""
    base = min(settings.backoff_initial_s * 2 ** max(attempts - 1, 0), settings.backoff_max_s)
    return float(max(0.0, base * (1 + rng.uniform(-settings.jitter, settings.jitter))))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookDeliverer:
    def __init__(
        self,
        repo: Repository,
        settings: WebhookSettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._repo = repo
        self._settings = settings
        self._targets: dict[str, WebhookTarget] = {t.name: t for t in settings.targets}
        self._clock = clock
        self._rng = rng or random.Random()
        self._client = httpx.AsyncClient(timeout=settings.timeout_s, transport=transport)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0
        self.attempts = 0

    def notify(self) -> None:
        """New outbox rows were committed: look now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhooks")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def run_once(self) -> int:
        """Attempt every delivery due now; returns how many were attempted."""
        # Claimed, not just read: every node runs this task on the shared outbox.
        lease_s = self._settings.timeout_s * 3 + 30
        due = await asyncio.to_thread(self._repo.claim_outbox, self._clock(), 500, lease_s)
        gate = asyncio.Semaphore(self._settings.concurrency)

        async def one(row: OutboxInfo) -> None:
            async with gate:
                await self._deliver(row)

        await asyncio.gather(*(one(row) for row in due))
        return len(due)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
                nxt = await asyncio.to_thread(self._repo.next_outbox_attempt)
            except Exception as exc:  # database away: try again later
                log.warning("webhook outbox unavailable: %s", exc)
                nxt = None
            wait = IDLE_POLL_S
            if nxt is not None:
                wait = min(wait, max((nxt - self._clock()).total_seconds(), 0.0))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def body(self, row: OutboxInfo) -> bytes:
        doc = {
            "delivery_id": str(row.id),
            "event": row.event,
            "created_at": row.created_at.isoformat(),
            "alert": row.payload.get("alert", {}),
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    async def _deliver(self, row: OutboxInfo) -> None:
        now = self._clock()
        target = self._targets.get(row.target)
        if target is None:
            await self._record(row, "failed", now, None, "target not configured any more")
            self.failed += 1
            return
        body = self.body(row)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "callwatch-webhooks/1",
            SIGNATURE_HEADER: sign(target.secret, int(now.timestamp()), body),
            DELIVERY_HEADER: str(row.id),
            EVENT_HEADER: row.event,
        }
        self.attempts += 1
        error: str | None
        try:
            response = await self._client.post(target.url, content=body, headers=headers)
            error = None if response.is_success else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if error is None:
            await self._record(row, "delivered", now, None, None)
            self.delivered += 1
            return
        age = (now - row.created_at).total_seconds()
        if age >= self._settings.give_up_after_s:
            await self._record(row, "failed", now, None, error)
            self.failed += 1
            log.error(
                "webhook delivery given up: %s",
                error,
                extra=fields(target=row.target, delivery=row.id, attempts=row.attempts + 1),
            )
            return
        wait = backoff_s(row.attempts + 1, self._settings, self._rng)
        await self._record(row, "pending", now, now + timedelta(seconds=wait), error)
        if row.attempts == 0:
            log.warning(
                "webhook delivery failed, will retry: %s",
                error,
                extra=fields(target=row.target, delivery=row.id),
            )

    async def _record(
        self, row: OutboxInfo, status: str, at: datetime, nxt: datetime | None, err: str | None
    ) -> None:
        await asyncio.to_thread(
            self._repo.record_outbox_attempt,
            row.id,
            status=status,
            at=at,
            next_attempt_at=nxt,
            error=err,
        )
