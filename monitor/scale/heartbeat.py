"""Node heartbeats and node loss (scale-out): who is alive, and closing a dead node's calls.

Each gateway node puts its name into the JetStream key-value bucket `<prefix>-nodes` every
`bus.heartbeat_s`. The bucket's TTL is `bus.node_ttl_s`: a node that stops beating (killed,
frozen, cut off) vanishes from it that long after its last beat, with no one having to say so.

Every node also sweeps: it asks the shared database which nodes own active calls, and each of
those (other than itself) that has no entry in the bucket is lost; its active calls are
closed as interrupted / `node_lost` (storage.nodes: a guarded update, so when several
survivors sweep at once each call is closed once). `on_lost(node, call_ids)` is told, so the
board can drop those calls. A node restarting under the same name recovers its own calls at
start (monitor.runtime.recovery.recover_interrupted), not through this path.

While the bus is down nothing is swept: a node that cannot see the bucket cannot tell a dead
node from a partition, and closing live calls would be worse than closing them late.

Every node's board must drop a lost node's calls, whoever closed them and whether or not the
closer's notice on NATS arrived: each round (bus up or not) `reconcile` reads the calls closed
as node_lost lately from the database and tells `on_lost` of those it has not told yet. The
database is the record, so a notice lost on the way (or never sent: the closer died after
its commit) still reaches every board within a heartbeat period; the boards ignore a call
they do not show, so telling twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from sqlalchemy import Engine

from config.settings import BusSettings
from storage.nodes import active_call_nodes, close_lost_calls, recent_lost_calls

log = logging.getLogger("callwatch.nodes")

#: How far back `reconcile` looks for lost calls (a node starting later shows none of them).
LOST_RECALL_S = 3600.0
#: Lost calls remembered as told (oldest forgotten first).
TOLD_MAX = 50_000


def bucket_name(prefix: str) -> str:
    return f"{prefix}-nodes"


class NodeHeartbeat:
    """Create, `await start()` (first beat before returning), `await close()`."""

    def __init__(
        self,
        nc: Client,
        bus: BusSettings,
        node: str,
        engine: Engine,
        *,
        on_lost: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        self._nc = nc
        self._bus = bus
        self.node = node
        self._engine = engine
        self._on_lost = on_lost
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self.beats = 0
        self.lost_calls = 0
        #: Lost calls `on_lost` was told of (closed here, or found by `reconcile`).
        self._told: OrderedDict[str, None] = OrderedDict()

    async def start(self) -> None:
        js = self._nc.jetstream()
        name = bucket_name(self._bus.prefix)
        try:
            self._kv = await js.key_value(name)
        except BucketNotFoundError:
            # Created by the first node; same config from every node, so a race is harmless.
            self._kv = await js.create_key_value(bucket=name, ttl=self._bus.node_ttl_s, history=1)
        await self.beat()  # alive before this node takes its first call
        self._task = asyncio.create_task(self._run(), name="node-heartbeat")

    async def beat(self) -> None:
        assert self._kv is not None
        value = json.dumps({"node": self.node, "at": time.time()}).encode()
        await self._kv.put(self.node, value)
        self.beats += 1

    async def alive(self, node: str) -> bool:
        assert self._kv is not None
        try:
            entry = await self._kv.get(node)
        except KeyNotFoundError:
            return False
        return entry is not None and entry.value is not None

    async def sweep(self) -> dict[str, list[str]]:
        """Close the active calls of every node that owns some and has stopped beating."""
        owners = await asyncio.to_thread(active_call_nodes, self._engine)
        closed: dict[str, list[str]] = {}
        for node in sorted(owners - {self.node}):
            if await self.alive(node):
                continue
            ids = await asyncio.to_thread(close_lost_calls, self._engine, node, datetime.now(UTC))
            if ids:
                closed[node] = ids
                self.lost_calls += len(ids)
                log.warning(
                    "node %s lost (no heartbeat for %.0f s): %d active call(s) closed as "
                    "interrupted / node_lost",
                    node,
                    self._bus.node_ttl_s,
                    len(ids),
                )
                self._tell(node, ids)
        return closed

    async def reconcile(self) -> list[str]:
        """Tell `on_lost` of the calls closed as node_lost lately (by any node) that it was
        not told of yet; the ids told. Database only: runs with the bus down too."""
        since = datetime.now(UTC) - timedelta(seconds=LOST_RECALL_S)
        rows = await asyncio.to_thread(recent_lost_calls, self._engine, since)
        by_node: dict[str, list[str]] = {}
        for call_id, node in rows:
            if call_id not in self._told:
                by_node.setdefault(node, []).append(call_id)
        for node, ids in sorted(by_node.items()):
            self._tell(node, ids)
        return [c for ids in by_node.values() for c in ids]

    def _tell(self, node: str, ids: list[str]) -> None:
        if self._on_lost is not None:
            self._on_lost(node, ids)
        for call_id in ids:
            self._told[call_id] = None
        while len(self._told) > TOLD_MAX:
            self._told.popitem(last=False)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._bus.heartbeat_s)
            try:
                if self._nc.is_connected:  # see the module docstring: no sweeping blind
                    await self.beat()
                    await self.sweep()
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus or the database hiccuped: next round
                log.warning("heartbeat round failed: %s: %s", type(exc).__name__, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._kv is not None and self._nc.is_connected:
            # A clean stop leaves at once (its calls were finalised by the gateway's stop).
            with contextlib.suppress(Exception):
                await self._kv.delete(self.node)
