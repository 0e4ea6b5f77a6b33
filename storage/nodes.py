"""Calls of a lost gateway node (scale-out): which nodes own active calls, and closing a lost
node's calls as interrupted / `node_lost` exactly once.

With several nodes on one PostgreSQL, a node whose heartbeat expired cannot close its own
calls; a survivor does (monitor.scale.heartbeat). Several survivors may sweep at once: the
close is a guarded UPDATE (`status = 'active'`), so only one of them wins each call, and only
the winner writes the call's `finalised` trace row (in the same transaction). And ids that
several nodes hand out in memory (alert ids) come from blocks reserved here (`reserve_ids`).

Trace numbers written by a node that does not own the call (a survivor closing a lost node's
call, an alert acknowledged on another node) come from `FOREIGN_SEQ_BASE` up, one reserved id
each (`foreign_seq`): the owner numbers its events 0, 1, 2 … in memory and some of them may
still be on their way through the event stream, so "one past the highest stored" could name
an event the owner already sent, and one of the two would be dropped as a duplicate.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage import db
from storage.models import AlertRow, Call, IdBlock, TraceEvent

LOST_REASON = "node_lost"
#: Trace numbers from here up are handed out by `foreign_seq`, never by a call's owner (a call
#: of 10^9 events would last years); `trace_events.seq` is a 32-bit integer.
FOREIGN_SEQ_BASE = 1_000_000_000


@contextmanager
def only_one_node(engine: Engine, job: str) -> Iterator[bool]:
    """`with only_one_node(engine, "retention") as mine:` - True in at most one process at a
    time on a PostgreSQL database (a session advisory lock, tried, never waited for, released
    at the end or when the connection dies with its node); always True on SQLite (one
    process per database there)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = zlib.crc32(f"callwatch:{job}".encode())
    with engine.connect() as conn:
        mine = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        conn.commit()
        try:
            yield mine
        finally:
            if mine:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


def reserve_ids(engine: Engine, name: str, count: int) -> int:
    """Reserve `count` ids of sequence `name` ("alerts") for this process alone; the first.
    One write transaction: the row is locked (PostgreSQL `FOR UPDATE`; SQLite's write lock
    is taken at BEGIN), so concurrent reservations get disjoint blocks. An "alerts" block
    also starts past every stored alert (rows written by an older version)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    with db.write_transaction(engine) as conn:
        return _reserve(conn, name, count)


def _reserve(conn: Connection, name: str, count: int) -> int:
    """`reserve_ids` inside the caller's write transaction."""
    # The row is created once (a race of two first reservations: one insert is a no-op),
    # then locked, so every reservation after it waits its turn.
    insert_new = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert_new(IdBlock).values(name=name, next_id=1).on_conflict_do_nothing())
    current = conn.execute(
        select(IdBlock.next_id).where(IdBlock.name == name).with_for_update()
    ).scalar_one()
    floor = 1
    if name == "alerts":
        floor = int(conn.execute(select(func.coalesce(func.max(AlertRow.id), 0))).scalar_one()) + 1
    start = max(int(current), floor)
    conn.execute(update(IdBlock).where(IdBlock.name == name).values(next_id=start + count))
    return start


def foreign_seq(engine: Engine) -> int:
    """A trace number for an event of a call this process does not own (see the module
    docstring): unique in the database, above every number an owner gives."""
    return FOREIGN_SEQ_BASE + reserve_ids(engine, "foreign_seq", 1)


def recent_lost_calls(engine: Engine, since: datetime, limit: int = 1000) -> list[tuple[str, str]]:
    """(call id, node) of the calls closed as node_lost since `since`, newest first: what
    every node's board must drop, whoever closed them (`NodeHeartbeat.reconcile`)."""
    stmt = (
        select(Call.id, Call.node)
        .where(Call.end_reason == LOST_REASON, Call.ended_at >= since)
        .order_by(Call.ended_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(row[0], row[1] or "") for row in conn.execute(stmt)]


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
            seq = FOREIGN_SEQ_BASE + _reserve(conn, "foreign_seq", 1)
            conn.execute(
                insert(TraceEvent).values(
                    call_id=call_id, seq=seq, kind="finalised", at=now, media_ms=duration_ms,
                    party=None, data={"status": "interrupted", "reason": LOST_REASON,
                                      "node": node},
                )
            )  # fmt: skip
        closed.append(call_id)
    return closed
