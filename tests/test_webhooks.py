"""Webhook delivery against a real local HTTP receiver on a clock the test owns: the receiver
is down (connection refused, then HTTP 503) for the first 30 s; every alert still arrives
exactly once with a valid signature, after exponential backoff, across a deliverer restart.
Also: signatures refuse tampering and replays, deliveries give up after their age."""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from config.settings import WebhookSettings, WebhookTarget
from monitor.runtime.webhooks import SIGNATURE_HEADER, WebhookDeliverer, backoff_s, sign, verify
from storage.records import AlertRaised
from storage.repository import Repository
from tests.test_storage_repository import opened

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SECRET = "s3cret-for-tests-0123456789"


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1:port; answers 503 until the clock reaches `healthy_at`."""

    port: int
    clock: Clock
    healthy_at: datetime
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    bad_signatures: int = 0
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                now = receiver.clock.now.timestamp()
                if not verify(SECRET, self.headers[SIGNATURE_HEADER], body, now):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif receiver.clock.now < receiver.healthy_at:
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    receiver.accepted.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    clock = Clock()
    r = Receiver(free_port(), clock, healthy_at=T0 + timedelta(seconds=30))
    yield r
    r.stop()


def settings(url: str, **kw: Any) -> WebhookSettings:
    target = WebhookTarget(name="ops", url=url, secret=SECRET)
    values: dict[str, Any] = {"backoff_initial_s": 1.0, "backoff_max_s": 60.0, "jitter": 0.2}
    return WebhookSettings(targets=(target,), **values | kw)


def alert(alert_id: int, at: datetime) -> AlertRaised:
    return AlertRaised(
        alert_id, "c1", f"rule{alert_id}", "dead_air", "warning", at, 0, 1000,
        f"alert {alert_id}", evidence={"n": alert_id}, webhooks=("ops",),
    )  # fmt: skip


async def drain_outbox(repo: Repository, deliverer: WebhookDeliverer, clock: Clock,
                       receiver: Receiver, until: datetime) -> None:  # fmt: skip
    """Deliver what is due, jump the clock to the next due attempt, repeat; the receiver
    starts listening (refused before) at 15 s of the test clock."""
    while clock.now < until:
        if receiver.server is None and clock.now >= T0 + timedelta(seconds=15):
            receiver.start()
        await deliverer.run_once()
        nxt = repo.next_outbox_attempt()
        if nxt is None:
            return
        clock.now = max(nxt, clock.now)


async def test_receiver_down_for_30_s_gets_every_alert_once(
    repo: Repository, receiver: Receiver
) -> None:
    clock = receiver.clock
    repo.apply([opened("c1")])
    cfg = settings(f"http://127.0.0.1:{receiver.port}/hook")
    # Three alerts at once, two more while the receiver is still down.
    repo.apply([alert(i, T0) for i in (1, 2, 3)])
    first = WebhookDeliverer(repo, cfg, clock=clock, rng=random.Random(1))
    try:
        await drain_outbox(repo, first, clock, receiver, until=T0 + timedelta(seconds=10))
        repo.apply([alert(4, clock.now), alert(5, clock.now)])
        await drain_outbox(repo, first, clock, receiver, until=T0 + timedelta(seconds=20))
    finally:
        await first.close()
    assert first.delivered == 0 and first.attempts >= 8
    # A restart: a new deliverer continues from the persisted outbox.
    second = WebhookDeliverer(repo, cfg, clock=clock, rng=random.Random(2))
    try:
        await drain_outbox(repo, second, clock, receiver, until=T0 + timedelta(minutes=10))
    finally:
        await second.close()
    assert receiver.refused > 0  # it did answer 503 between 15 s and 30 s
    assert receiver.bad_signatures == 0
    ids = sorted(doc["alert"]["id"] for doc in receiver.accepted)
    assert ids == [1, 2, 3, 4, 5]  # every alert, once
    assert {doc["event"] for doc in receiver.accepted} == {"alert.raised"}
    assert receiver.accepted[0]["alert"]["evidence"]["n"] in ids
    rows = repo.list_outbox()
    assert {r.status for r in rows} == {"delivered"}
    assert all(r.delivered_at is not None and r.delivered_at >= T0 + timedelta(seconds=30)
               for r in rows)  # fmt: skip
    assert max(r.attempts for r in rows) >= 5  # retried with backoff, not given up
    # Delivered within one backoff step of the receiver coming back, not much later.
    assert max(r.delivered_at for r in rows if r.delivered_at) <= T0 + timedelta(seconds=30 + 40)


async def test_gives_up_after_the_configured_age(repo: Repository) -> None:
    clock = Clock()
    repo.apply([opened("c1"), alert(1, T0)])
    cfg = settings(f"http://127.0.0.1:{free_port()}/never", give_up_after_s=60)
    deliverer = WebhookDeliverer(repo, cfg, clock=clock, rng=random.Random(3))
    try:
        for _ in range(50):
            await deliverer.run_once()
            nxt = repo.next_outbox_attempt()
            if nxt is None:
                break
            clock.now = nxt
    finally:
        await deliverer.close()
    [row] = repo.list_outbox()
    assert row.status == "failed" and row.delivered_at is None
    assert "Connect" in (row.last_error or "")
    assert clock.now >= T0 + timedelta(seconds=60)


def test_backoff_doubles_with_bounded_jitter_and_a_cap() -> None:
    cfg = WebhookSettings(backoff_initial_s=1, backoff_max_s=30, jitter=0.2)
    rng = random.Random(0)
    for attempts, base in ((1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)):
        for _ in range(20):
            assert base * 0.8 <= backoff_s(attempts, cfg, rng) <= base * 1.2


def test_signature_refuses_tampering_replay_and_garbage() -> None:
    body = b'{"event":"alert.raised"}'
    now = 1_800_000_000
    header = sign(SECRET, now, body)
    assert header.startswith(f"t={now},v1=")
    assert verify(SECRET, header, body, now + 10)
    assert not verify(SECRET, header, body + b" ", now)  # body changed
    assert not verify("another-secret-0123456789", header, body, now)
    assert not verify(SECRET, header, body, now + 301)  # replayed later
    assert not verify(SECRET, "v1=abc", body, now)
    assert not verify(SECRET, "", body, now)
