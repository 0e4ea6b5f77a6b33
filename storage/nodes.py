"""Calls of a lost gateway node (scale-out): which nodes own active calls, and closing a lost
node's calls as interrupted / `node_lost` exactly once.

With several nodes on one PostgreSQL, a node whose heartbeat expired cannot close its own
calls; a survivor does (monitor.scale.heartbeat). Several survivors may sweep at once: the
close is a guarded UPDATE (`status = 'active'`), so only one of them wins each call, and only
the winner writes the call's `finalised` trace row (in the same transaction).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, insert, select, update

from storage import db
from storage.models import Call, TraceEvent

LOST_REASON = "node_lost"


def active_call_nodes(engine: Engine) -> set[str]:
    """Nodes that own at least one active call."""
    stmt = select(Call.node).where(Call.status == "active", Call.node.is_not(None)).distinct()
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(stmt) if row[0] is not None}


def close_lost_calls(engine: Engine, node: str, now: datetime) -> list[str]:
    """Mark every active call of `node` interrupted / node_lost; the ids this call closed."""
    closed: list[str] = []
    with engine.connect() as conn:
        calls = conn.execute(
            select(Call.id, Call.started_at).where(Call.node == node, Call.status == "active")
        ).all()
    for call_id, started_at in calls:
        if started_at.tzinfo is None:  # SQLite hands back naive UTC
            started_at = started_at.replace(tzinfo=now.tzinfo)
        duration_ms = max(0, int((now - started_at).total_seconds() * 1000))
        with db.write_transaction(engine) as conn:
            won = conn.execute(
                update(Call)
                .where(Call.id == call_id, Call.status == "active")
                .values(
                    status="interrupted",
                    end_reason=LOST_REASON,
                    ended_at=now,
                    duration_ms=duration_ms,
                )  # fmt: skip
            ).rowcount
            if won != 1:
                continue  # another survivor closed it first
            seq = conn.execute(
                select(func.coalesce(func.max(TraceEvent.seq) + 1, 0)).where(
                    TraceEvent.call_id == call_id
                )
            ).scalar_one()
            conn.execute(
                insert(TraceEvent).values(
                    call_id=call_id, seq=seq, kind="finalised", at=now, media_ms=duration_ms,
                    party=None, data={"status": "interrupted", "reason": LOST_REASON,
                                      "node": node},
                )
            )  # fmt: skip
        closed.append(call_id)
    return closed
