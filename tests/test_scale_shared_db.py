"""Several nodes on one PostgreSQL (scale-out): the shared storage consumer applies a
redelivered event once and waits for a call stored by another node; alert ids from two
nodes never collide; a webhook delivery is claimed by one node; retention runs on one node
at a time. Real PostgreSQL; the consumer's apply is driven with the messages JetStream would
hand it (the transport itself is tested in test_scale_transport.py)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from config.settings import BusSettings, load_settings
from monitor.events import AlertChanged, CallEvent
from monitor.events.codec import to_json
from monitor.runtime.alert_service import AlertService
from monitor.runtime.bus import EventBus
from monitor.runtime.retention import scheduled_pass
from monitor.runtime.storage_rows import rows_for
from monitor.runtime.storage_sink import StorageWriter
from monitor.scale.node_events import EARLY_RETRIES, StorageConsumer, essential, msg_id
from monitor.scale.transport import Incoming
from storage.nodes import FOREIGN_SEQ_BASE, only_one_node
from storage.records import CallEnded
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


async def test_an_event_whose_call_is_stored_meanwhile_is_stored_not_dropped(
    pg_repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node A's consumer is refused an event of a call whose CallStarted node B is
    committing, and B's commit lands between A's refusal and A's look at the call: the
    event is applied again at once, not refused for good (the NATS-restart proof lost a
    `connected` mark this way)."""
    consumer = _consumer(pg_repo)
    looked = consumer._call_stored

    def committed_meanwhile(call_id: str) -> bool:
        pg_repo.apply(rows_for(started(call_id)))  # node B's transaction, just now
        return looked(call_id)

    monkeypatch.setattr(consumer, "_call_stored", committed_meanwhile)
    assert await consumer.apply(_incoming([mark("c6", 1, "connected")])) == [True]
    assert consumer.rejected == 0
    detail = pg_repo.get_call("x-c6")
    assert detail is not None and [t.kind for t in detail.trace] == ["connected"]


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


async def test_an_alert_changed_off_its_node_never_takes_a_number_its_owner_gives(
    pg_repo: Repository,
) -> None:
    """Node A owns call c5 and has sent its events 0-8; the stream has stored 0-4 so far.
    Node B acknowledges, node C resolves the call's alert. "One past the highest stored"
    would be 5, the number of A's `disconnected` mark still in the stream, and one of the two
    would be dropped as a duplicate. They get numbers from the database's foreign range
    instead: every event is stored, and the owner's numbering (next_trace_seq) is unchanged."""
    consumer = _consumer(pg_repo)
    aid = pg_repo.reserve_ids("alerts", 1)
    stored: list[CallEvent] = _call("c5")[:5] + [
        alert_raised(aid, "c5", "dead_air", "dead_air", "warning", message="dead air", seq=4)
    ]
    in_stream: list[CallEvent] = [mark("c5", 5, "disconnected"), ended("c5", T0, seq=6),
                 scored("c5", 90.0, "good", seq=7), finalised("c5", seq=8)]  # fmt: skip
    assert await consumer.apply(_incoming(stored)) == [True] * len(stored)
    url = pg_repo.engine.url.render_as_string(hide_password=False)
    changes: list[CallEvent] = []
    for node, change in (("gw-b", "acknowledge"), ("gw-c", "resolve")):
        repo = Repository.from_url(url)
        bus = EventBus()
        seen = bus.subscribe()
        writer = StorageWriter(repo, batch_size=50, group_commit_s=0, queue_size=100)
        writer.start()
        service = AlertService(repo=repo, storage=writer, bus=bus, auto_tick=False,
                               foreign_numbers=True)  # fmt: skip
        try:
            await getattr(service, change)(aid, node)
            event = seen.get_nowait()
            assert isinstance(event, AlertChanged)
            changes.append(event)
        finally:
            await writer.close()
            repo.close()
    assert [c.seq >= FOREIGN_SEQ_BASE for c in changes] == [True, True]
    assert changes[0].seq != changes[1].seq
    # The stream delivers both changes and A's events in any order: all of them are stored.
    batch = [changes[1], *in_stream, changes[0]]
    assert await consumer.apply(_incoming(batch)) == [True] * len(batch)
    detail = pg_repo.get_call("x-c5")
    assert detail is not None
    assert [t.kind for t in detail.trace if t.seq >= 4] == [
        "alert", "disconnected", "alert_changed", "alert_changed"]  # fmt: skip
    assert detail.status == "completed" and detail.score == 90.0
    assert pg_repo.next_trace_seq(detail.call_id) == 6  # A's numbering, not the foreign one


def test_each_node_deletes_its_own_expired_recordings_rows_go_once_their_owner_did(
    pg_repo: Repository, tmp_path: Path
) -> None:
    """Retention with recordings on each node's own disk: gw-a holds the retention lock and
    deletes its own expired call whole (file and rows), and the single-box row of no node;
    gw-b's expired call keeps its rows until gw-b (without the lock) has deleted its file,
    then the lock holder deletes them. A call not yet expired keeps its file."""
    url = pg_repo.engine.url.render_as_string(hide_password=False)
    bus = {"url": "nats://127.0.0.1:1", "credentials": {"user": "u", "password": "p"}}
    a, b = (
        load_settings(env={}, data_dir=tmp_path / n, storage={"url": url}, bus=bus,
                      node={"name": n}, retention={"days": 30})
        for n in ("gw-a", "gw-b")
    )  # fmt: skip
    calls = {"a-old": ("gw-a", a, 0), "b-old": ("gw-b", b, 0), "b-new": ("gw-b", b, 40),
             "legacy": (None, a, 0)}  # fmt: skip
    for call_id, (node, settings, day) in calls.items():
        rec = opened(call_id, node=node, started_at=T0 + timedelta(days=day))
        pg_repo.apply([rec, CallEnded(call_id, T0 + timedelta(days=day, minutes=1), "completed",
                                      "normal", 60_000, 480_000)])  # fmt: skip
        path = settings.recordings_dir / rec.recording_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")

    def file(call_id: str) -> bool:
        _, settings, _ = calls[call_id]
        return (settings.recordings_dir / opened(call_id).recording_path).exists()

    now = T0 + timedelta(days=31)
    report, mine = scheduled_pass(a, pg_repo.engine, now)
    assert mine and report.calls_deleted == 2  # a-old, legacy
    assert pg_repo.get_call("ext-a-old") is None and not file("a-old")
    assert pg_repo.get_call("ext-legacy") is None and not file("legacy")
    # gw-b's call: its file is on gw-b's disk, which gw-a cannot reach: its rows stay.
    assert pg_repo.get_call("ext-b-old") is not None and file("b-old")
    with only_one_node(pg_repo.engine, "retention"):  # a third node holds the lock now
        report, mine = scheduled_pass(b, pg_repo.engine, now)
    assert not mine and (report.calls_deleted, report.recordings_deleted) == (0, 1)
    assert not file("b-old") and pg_repo.get_call("ext-b-old") is not None
    assert file("b-new")  # not expired
    report, mine = scheduled_pass(a, pg_repo.engine, now)
    assert mine and report.calls_deleted == 1 and pg_repo.get_call("ext-b-old") is None
    with pg_repo.engine.connect() as conn:
        scopes = sorted(conn.execute(text(
            "SELECT scope FROM tombstones WHERE call_ref = 'b-old'")).scalars())  # fmt: skip
    assert scopes == ["call", "recording"]
    assert pg_repo.get_call("ext-b-new") is not None and file("b-new")
