"""Alerts and the webhook outbox (migration 0003) on SQLite and PostgreSQL: an alert and its
outbox rows land in one transaction, de-duplicated per call and rule, idempotent under retried
batches; state moves open -> acknowledged -> resolved only; filters and outbox bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.errors import AlertNotFound, BatchRejected, InvalidAlertTransition, StorageError
from storage.records import AlertChanged, AlertRaised
from storage.repository import Repository
from tests.test_storage_repository import opened

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def raised(alert_id: int, call_id: str, rule: str, **kw: Any) -> AlertRaised:
    values: dict[str, Any] = {
        "kind": rule.split(":")[0],
        "severity": "warning",
        "raised_at": T0 + timedelta(seconds=alert_id),
        "media_start_ms": 1000,
        "media_end_ms": 9000,
        "message": f"{rule} on {call_id}",
        "evidence": {"value": 9.0, "threshold": 8.0},
        "queue": "billing",
        "agent_id": "a1",
    }
    values.update(kw)
    return AlertRaised(alert_id=alert_id, call_id=call_id, rule=rule, **values)


def test_alert_and_outbox_round_trip_dedup_and_retry(repo: Repository) -> None:
    batch = [
        opened("c1"),
        raised(1, "c1", "dead_air", webhooks=("ops", "crm"), party="agent"),
        raised(2, "c1", "compliance_miss:greeting", severity="critical"),
    ]
    repo.apply(batch)
    repo.apply(batch)  # a retried batch adds nothing
    repo.apply([raised(3, "c1", "dead_air", webhooks=("ops",))])  # same call and rule: skipped
    assert repo.get_alert(3) is None
    alerts = repo.list_alerts(call_id="c1")
    assert [a.id for a in alerts] == [2, 1]  # newest first
    a1 = repo.get_alert(1)
    assert a1 is not None
    assert (a1.state, a1.kind, a1.severity, a1.party, a1.queue) == (
        "open",
        "dead_air",
        "warning",
        "agent",
        "billing",
    )
    assert a1.evidence == {"value": 9.0, "threshold": 8.0}
    assert a1.raised_at == T0 + timedelta(seconds=1)
    outbox = repo.list_outbox()
    assert [(o.alert_id, o.event, o.target, o.status) for o in outbox] == [
        (1, "alert.raised", "ops", "pending"),
        (1, "alert.raised", "crm", "pending"),
    ]
    assert outbox[0].payload["alert"]["id"] == 1
    assert outbox[0].payload["alert"]["raised_at"] == a1.raised_at.isoformat()
    assert repo.max_alert_id() == 2


def test_state_transitions(repo: Repository) -> None:
    repo.apply([opened("c1"), raised(1, "c1", "r1"), raised(2, "c1", "r2")])
    t = T0 + timedelta(minutes=5)
    acked = repo.set_alert_state(1, "acknowledged", by="sam", at=t, webhooks=("ops",))
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_at) == ("acknowledged", "sam", t)
    # Setting the same state again is a no-op, not an error.
    assert repo.set_alert_state(1, "acknowledged", by="kim", at=t).acknowledged_by == "sam"
    done = repo.set_alert_state(1, "resolved", by="kim", at=t + timedelta(seconds=1))
    assert (done.state, done.resolved_by, done.acknowledged_by) == ("resolved", "kim", "sam")
    with pytest.raises(InvalidAlertTransition):
        repo.set_alert_state(1, "acknowledged", by="sam", at=t)
    assert repo.set_alert_state(2, "resolved", by="sam", at=t).state == "resolved"  # skip ack
    with pytest.raises(AlertNotFound):
        repo.set_alert_state(99, "resolved", by="sam", at=t)
    with pytest.raises(ValueError, match="state"):
        repo.set_alert_state(1, "open", by="sam", at=t)
    assert issubclass(InvalidAlertTransition, StorageError)
    assert [(o.event, o.target) for o in repo.list_outbox(1)] == [("alert.acknowledged", "ops")]
    # The same change through a batch (the storage writer's path) is idempotent too.
    repo.apply([AlertChanged(2, "c1", "resolved", "sam", t)])
    with pytest.raises(BatchRejected):
        repo.apply([AlertChanged(2, "c1", "acknowledged", "sam", t)])


def test_list_filters(repo: Repository) -> None:
    repo.apply([opened("c1"), opened("c2"), raised(1, "c1", "dead_air"),
                raised(2, "c2", "dead_air"), raised(3, "c2", "poor_audio")])  # fmt: skip
    repo.set_alert_state(3, "acknowledged", by="sam", at=T0)
    assert [a.id for a in repo.list_alerts(kind="dead_air")] == [2, 1]
    assert [a.id for a in repo.list_alerts(state="open")] == [2, 1]
    assert [a.id for a in repo.list_alerts(since=T0 + timedelta(seconds=2))] == [3, 2]
    assert [a.id for a in repo.list_alerts(until=T0 + timedelta(seconds=2))] == [1]
    assert [a.id for a in repo.list_alerts(limit=1, offset=1)] == [2]
    with pytest.raises(ValueError, match="state"):
        repo.list_alerts(state="closed")
    with pytest.raises(ValueError, match="since"):
        repo.list_alerts(since=datetime(2026, 3, 1))


def test_outbox_due_and_attempts(repo: Repository) -> None:
    repo.apply([opened("c1"), raised(1, "c1", "r1", webhooks=("ops", "crm"))])
    now = T0 + timedelta(seconds=1)
    due = repo.due_outbox(now)
    assert len(due) == 2
    later = now + timedelta(seconds=30)
    repo.record_outbox_attempt(due[0].id, status="pending", at=now, next_attempt_at=later,
                               error="connection refused")  # fmt: skip
    repo.record_outbox_attempt(due[1].id, status="delivered", at=now)
    assert repo.due_outbox(now) == []
    assert repo.next_outbox_attempt() == later
    again = repo.due_outbox(later)
    assert [(o.id, o.attempts, o.last_error) for o in again] == [
        (due[0].id, 1, "connection refused")
    ]
    delivered = [o for o in repo.list_outbox() if o.status == "delivered"]
    assert delivered[0].delivered_at == now


def test_bad_alert_records_are_rejected(repo: Repository) -> None:
    repo.apply([opened("c1")])
    for bad in (raised(1, "c1", "r", severity="fatal"), raised(1, "nope", "r"),
                raised(1, "c1", "r", evidence={"x": object()})):  # fmt: skip
        with pytest.raises(BatchRejected):
            repo.apply([bad])
