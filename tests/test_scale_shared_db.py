"""Several nodes on one PostgreSQL (scale-out): the shared storage consumer applies a
redelivered event once and waits for a call stored by another node; alert ids from two
nodes never collide; a webhook delivery is claimed by one node; retention runs on one node
at a time. Real PostgreSQL; the consumer's apply is driven with the messages JetStream would
hand it (the transport itself is tested in test_scale_transport.py)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from config.settings import BusSettings
from monitor.events import CallEvent
from monitor.events.codec import to_json
from monitor.scale.node_events import EARLY_RETRIES, StorageConsumer, essential, msg_id
from monitor.scale.transport import Incoming
from storage.nodes import only_one_node
from storage.repository import Repository
from tests.call_events import (
    T0,
    alert_raised,
    dead_air,
    ended,
    finalised,
    mark,
    reading,
    scored,
    segment,
    started,
)
from tests.test_storage_alerts import raised
from tests.test_storage_repository import opened

pytestmark = pytest.mark.scaleout

TABLES = ("calls", "parties", "segments", "trace_events", "findings", "quality_readings",
          "alerts", "webhook_outbox")  # fmt: skip


def _incoming(events: list[CallEvent], deliveries: int = 1) -> list[Incoming]:
    return [
        Incoming(f"cw.events.{e.call_id}", to_json(e).encode(), msg_id(e), deliveries)
        for e in events
    ]


def _counts(repo: Repository) -> dict[str, int]:
    with repo.engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def _consumer(repo: Repository) -> StorageConsumer:
    nc: Any = None  # apply() is all this test drives; the transport is never started
    return StorageConsumer(nc, BusSettings(), repo)


def _call(call_id: str) -> list[CallEvent]:
    return [
        started(call_id),
        mark(call_id, 1, "connected"),
        reading(call_id, "agent", 0),
        segment(call_id, "agent", 0, 1500, "thank you for calling", seq=2),
        dead_air(call_id, 3, 2000, 9000),
        alert_raised(
            0,
            call_id,
            "dead_air",
            "dead_air",
            "warning",
            message="dead air",
            seq=4,
            webhooks=("ops",),
        ),  # fmt: skip
        ended(call_id, T0, seq=5),
        scored(call_id, 90.0, "good", seq=6),
        finalised(call_id, seq=7),
    ]


async def test_redelivered_events_are_stored_once(pg_repo: Repository) -> None:
    consumer = _consumer(pg_repo)
    events = _call("c1")
    # The alert id a node reserved (collision-free), as the alert service would.
    aid = pg_repo.reserve_ids("alerts", 1)
    events[5] = alert_raised(aid, "c1", "dead_air", "dead_air", "warning", message="dead air",
                             seq=4, webhooks=("ops",))  # fmt: skip
    assert await consumer.apply(_incoming(events)) == [True] * len(events)
    once = _counts(pg_repo)
    assert once["segments"] == 1 and once["alerts"] == 1 and once["webhook_outbox"] == 1
    assert once["findings"] == 1 and once["quality_readings"] == 1
    # A consumer died before its acks: the whole batch again, then single events again.
    assert await consumer.apply(_incoming(events, deliveries=2)) == [True] * len(events)
    for e in events:
        assert await consumer.apply(_incoming([e], deliveries=3)) == [True]
    assert _counts(pg_repo) == once
    detail = pg_repo.get_call("x-c1")
    assert detail is not None and detail.status == "completed"
    # Readings and trace detail may be shed by the publisher; lifecycle, segments, alerts not.
    assert not essential(events[2]) and essential(events[3]) and essential(events[5])


async def test_an_event_before_its_call_waits_for_it(pg_repo: Repository) -> None:
    """Two nodes fetch one call's events: the segment can reach the database before the
    CallStarted another node is still writing. It is nak'd (redelivered), not dropped."""
    consumer = _consumer(pg_repo)
    early = segment("c2", "agent", 0, 1000, "hello", seq=3)
    assert await consumer.apply(_incoming([early])) == [False]
    assert await consumer.apply(_incoming([started("c2")])) == [True]
    assert await consumer.apply(_incoming([early], deliveries=2)) == [True]
    assert _counts(pg_repo)["segments"] == 1
    # Never stored (its call never comes): given up after EARLY_RETRIES, counted.
    orphan = segment("nobody", "agent", 0, 1000, "x", seq=1)
    assert await consumer.apply(_incoming([orphan], deliveries=EARLY_RETRIES)) == [True]
    assert consumer.rejected == 1
    # Refused while its call is stored (an invalid grade): refused for good, dropped at once.
    assert await consumer.apply(_incoming([scored("c2", 50.0, "Z", seq=5)])) == [True]
    assert consumer.rejected == 2
    # Not JSON / not an event: acked (redelivery cannot help), counted.
    bad = Incoming("cw.events.c2", b"{not json", "c2:9", 1)
    assert await consumer.apply([bad, *_incoming([mark("c2", 4, "metadata")])]) == [True, True]
    assert consumer.undecodable == 1


def test_alert_ids_from_two_nodes_never_collide(pg_repo: Repository) -> None:
    url = pg_repo.engine.url.render_as_string(hide_password=False)
    pg_repo.apply([_opened("c3"), _stored_alert(500, "c3")])
    nodes = [Repository.from_url(url) for _ in range(2)]
    got: list[list[int]] = [[], []]

    def reserve(i: int) -> None:
        for _ in range(40):
            first = nodes[i].reserve_ids("alerts", 10)
            got[i].extend(range(first, first + 10))

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = got[0] + got[1]
    assert len(ids) == len(set(ids)) == 800
    assert min(ids) > 500  # past the alerts already stored
    for n in nodes:
        n.close()


def test_a_webhook_delivery_is_claimed_by_one_node(pg_repo: Repository) -> None:
    url = pg_repo.engine.url.render_as_string(hide_password=False)
    pg_repo.apply([_opened("c4"), _stored_alert(1, "c4", webhooks=("ops", "crm"))])
    a, b = pg_repo, Repository.from_url(url)
    now = T0 + timedelta(minutes=1)
    mine = a.claim_outbox(now, 100, lease_s=60)
    assert sorted(o.target for o in mine) == ["crm", "ops"]
    assert b.claim_outbox(now, 100, lease_s=60) == []  # node B skips what A holds
    # Node A died before recording the attempts: the lease runs out, B delivers.
    later = now + timedelta(seconds=61)
    assert sorted(o.target for o in b.claim_outbox(later, 100, lease_s=60)) == ["crm", "ops"]
    b.close()


def test_retention_runs_on_one_node_at_a_time(pg_repo: Repository) -> None:
    url = pg_repo.engine.url.render_as_string(hide_password=False)
    other = Repository.from_url(url)
    with only_one_node(pg_repo.engine, "retention") as a_runs:
        assert a_runs
        with only_one_node(other.engine, "retention") as b_runs:
            assert not b_runs
        with only_one_node(other.engine, "webhook-sweep") as b_other_job:
            assert b_other_job  # a different job is not blocked
    with only_one_node(other.engine, "retention") as b_runs:
        assert b_runs  # released with A's pass
    other.close()


def _opened(call_id: str) -> Any:
    return opened(call_id)


def _stored_alert(alert_id: int, call_id: str, **kw: Any) -> Any:
    return raised(alert_id, call_id, "dead_air", **kw)
