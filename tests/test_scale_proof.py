"""The scale-out proofs with real processes (issue 16, "what it must do" 2, 4 and 5), per commit.

One floor of processes is shared by the module's first two proofs (`floor`): three
`callwatch serve` nodes in NATS mode on one PostgreSQL and the shared NATS (`solo`, `gw-a`,
`gw-b`) and two `callwatch asr-worker` processes with the bundled Whisper model, all started
at once.

* Six calls over `gw-a` and `gw-b` and two protocols are stored exactly as the same six calls
  on `solo` alone, streamed at the same time (calls, parties, transcripts from the real model,
  trace, findings, results, score), every event through the NATS stream and the shared durable
  storage consumer; a board websocket on `gw-a` shows `gw-b`'s call live. (DNSMOS is off on
  this floor: a per-call model local to the node, the heaviest after ASR.)
* kill -9 of `gw-a` mid-call (after the proof, on the same floor): `gw-b`'s call goes on and
  completes; `gw-a`'s call is closed `interrupted` / `node_lost` after the heartbeat expired,
  and leaves `gw-b`'s board with that reason.

NATS restarted mid-call needs a NATS of its own (`private_nats`) and a floor of its own (two
nodes, two scripted workers: the words do not matter there); its records equal a no-fault run.

Timing-independent settings for the comparison (both runs alike): no language lock (each
utterance detected on its own audio, whatever order answers arrive in) and a live-lane budget
no wait can reach (no utterance is flagged late because the box was busy)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect

from ivr_sim import builtin_scripts, load_script, render
from ivr_sim.harness import ServerProcess, server_env
from ivr_sim.script import RenderedCall
from ivr_sim.stream import call_metadata, stream_call
from monitor.board.hub import frame_messages
from monitor.web.api.auth import COOKIE
from storage.access import AccessStore
from storage.repository import Repository
from tests.fixtures_nats import NatsEndpoint, PrivateNats
from tests.scale_support import asr_workers, bus_env

pytestmark = [pytest.mark.scaleout]

PASSWORD = "scale-proof-password-1"
#: (script, protocol) of the six calls; gw-a takes the even ones, gw-b the odd ones.
CALLS = (
    ("en_billing_8k.toml", "twilio"),
    ("en_support_16k.toml", "audiofork"),
    ("zh_cards_8k.toml", "twilio"),
    ("zh_service_16k.toml", "audiofork"),
    ("en_billing_8k.toml", "audiofork"),
    ("zh_cards_8k.toml", "audiofork"),
)
#: Turns of each script kept: the first agent and customer turns, 10-13 s of call (24 real
#: decodes in all on 2 shared cores: about 40 s at a load average of 12).
TURNS = 2
#: Heartbeat and TTL of the shared floor: a killed node is lost within seconds, while a node
#: busy on 2 shared cores (a loop stall of a second or two) is never taken for dead.
HEARTBEAT_S, NODE_TTL_S = 0.5, 5.0


def _calls() -> dict[str, RenderedCall]:
    by_name = {p.name: p for p in builtin_scripts()}
    out = {}
    for name, _ in CALLS:
        script = load_script(by_name[name])
        out[name] = render(dataclasses.replace(script, turns=script.turns[:TURNS]))
    return out


def _env(endpoint: NatsEndpoint, repo: Repository, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in bus_env(endpoint).items() if k.startswith("CALLWATCH_")}
    env.update(
        CALLWATCH_STORAGE__URL=repo.engine.url.render_as_string(hide_password=False),
        CALLWATCH_ASR__REMOTE="true",
        CALLWATCH_ASR__REMOTE_TIMEOUT_S="30",  # a real decode on a loaded box: never re-sent
        CALLWATCH_ASR__LANGUAGE_LOCK_AFTER="0",
        CALLWATCH_ASR__LIVE_BUDGET_S="600",
        CALLWATCH_BUS__PREFIX=prefix,
        CALLWATCH_GATEWAY__AUDIOSOCKET_PORT="-1",
        CALLWATCH_GATEWAY__MAX_AUDIO_RATE="0",  # calls are streamed faster than real time
    )
    env.update(extra)
    return env


@contextmanager
def _nodes(tmp: Path, env: dict[str, str], names: list[str]) -> Iterator[list[ServerProcess]]:
    """The nodes, started at the same time (each start waits on its own process)."""
    nodes = []
    for name in names:
        d = tmp / name
        d.mkdir(parents=True, exist_ok=True)
        nodes.append(ServerProcess(data_dir=d / "data", log_path=d / "server.log",
                                   env=server_env(**env, CALLWATCH_NODE__NAME=name)))  # fmt: skip
    try:
        with ThreadPoolExecutor(len(nodes)) as pool:
            for started in [pool.submit(n.start, 180) for n in nodes]:
                started.result()
        yield nodes
    finally:
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(ServerProcess.stop, nodes))


@dataclasses.dataclass
class Floor:
    repo: Repository
    nodes: dict[str, ServerProcess]
    calls: dict[str, RenderedCall]


@pytest.fixture(scope="module")
def floor(
    nats_server: NatsEndpoint, pg_module_repo: Repository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Floor]:
    """solo, gw-a and gw-b with two real-model ASR workers, started in parallel."""
    repo = pg_module_repo
    AccessStore(repo.engine).create_user("sup", PASSWORD, "supervisor", at=datetime.now(UTC))
    prefix = f"proof{time.monotonic_ns()}"
    # DNSMOS off on every node (the heaviest per-call model after ASR, local to the node and
    # not on the bus's path); everything else each node stores is compared.
    env = _env(nats_server, repo, prefix, CALLWATCH_BUS__HEARTBEAT_S=str(HEARTBEAT_S),
               CALLWATCH_BUS__NODE_TTL_S=str(NODE_TTL_S),
               CALLWATCH_QUALITY__DNSMOS__ENABLED="false")  # fmt: skip
    tmp = tmp_path_factory.mktemp("floor")
    # The models load while the nodes start.
    with asr_workers(nats_server, prefix, 2, real=True) as ready, \
            _nodes(tmp, env, ["solo", "gw-a", "gw-b"]) as nodes:  # fmt: skip
        ready()
        yield Floor(repo, {n.env["CALLWATCH_NODE__NAME"]: n for n in nodes}, _calls())


async def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


def _finalised(repo: Repository, external_ids: list[str]) -> bool:
    with repo.engine.connect() as conn:
        n = conn.execute(
            text(
                "SELECT count(*) FROM calls c WHERE c.external_id = ANY(:e) AND EXISTS "
                "(SELECT 1 FROM trace_events t WHERE t.call_id = c.id AND t.kind = 'finalised')"
            ),
            {"e": external_ids},
        ).scalar_one()
    return int(n) == len(external_ids)


def _record(repo: Repository, external_id: str) -> dict[str, Any]:
    """What a call is, stored: everything that does not depend on the wall clock."""
    call = repo.get_call(external_id)
    assert call is not None, external_id
    analysis = repo.get_analysis(call.call_id)
    return {
        "call": (
            call.protocol,
            call.status,
            call.end_reason,
            call.duration_ms,
            call.recording_frames,
            call.score,
            call.grade,
        ),  # fmt: skip
        "parties": sorted((p.party, p.channel, p.samples) for p in call.parties),
        "segments": [(s.party, s.start_ms, s.end_ms, s.text) for s in call.segments],
        "trace": sorted((t.kind, t.party, t.media_ms) for t in call.trace if t.kind != "alert"),
        "findings": sorted(
            (f.source, f.kind, f.party, f.start_ms, f.end_ms) for f in analysis.findings
        ),
        "results": _stable(analysis.results),
    }


def _stable(doc: Any) -> Any:
    """Result documents without what measures the run rather than the call (latencies, how
    late the server took each audio message)."""
    if isinstance(doc, dict):
        return {k: _stable(v) for k, v in doc.items() if "latency" not in k and k != "ingest"}
    if isinstance(doc, list):
        return [_stable(v) for v in doc]
    return doc


def _differences(want: dict[str, Any], got: dict[str, Any]) -> str:
    lines = []
    for key in want:
        if want[key] != got[key]:
            if isinstance(want[key], list):
                a, b = set(map(repr, want[key])), set(map(repr, got[key]))
                lines.append(f"{key}: only single-node {sorted(a - b)}, only two-node "
                             f"{sorted(b - a)}")  # fmt: skip
            else:
                lines.append(f"{key}: single-node {want[key]!r} != two-node {got[key]!r}")
    return "\n".join(lines)


def _assert_no_duplicates(repo: Repository) -> None:
    with repo.engine.connect() as conn:
        dup = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT call_id, party, text, count(*) FROM segments "
                "GROUP BY call_id, party, start_ms, text HAVING count(*) > 1) d"
            )
        ).scalar_one()
    assert dup == 0


async def test_two_nodes_two_workers_six_calls_as_on_one_node_and_one_board(
    floor: Floor,
) -> None:
    solo, a, b = (floor.nodes[n] for n in ("solo", "gw-a", "gw-b"))
    metas = {side: [call_metadata(floor.calls[name]) for name, _ in CALLS]
             for side in ("single", "pair")}  # fmt: skip
    async with _board(_api_url(a)) as board:

        async def run(nodes: list[ServerProcess], side: str) -> list[str]:
            return [r.external_id for r in await asyncio.gather(*(
                stream_call(nodes[i % len(nodes)].url, floor.calls[name], pace=4.0,
                            protocol=protocol, metadata=metas[side][i])
                for i, (name, protocol) in enumerate(CALLS)
            ))]  # fmt: skip

        # The same six calls at the same time: on solo alone, and spread over gw-a and gw-b.
        single_run = asyncio.create_task(run([solo], "single"))
        pair_run = asyncio.create_task(run([a, b], "pair"))
        # gw-b's call (the second), live on gw-a's board while gw-b is still streaming it.
        seen = await board.live_card(metas["pair"][1]["callid"], lambda: not pair_run.done(), 30)
        single, pair = await single_run, await pair_run
    assert seen, "gw-b's call was not shown live on gw-a's board"
    both = single + pair
    await _wait(lambda: _finalised(floor.repo, both), 180, "calls not stored")
    with floor.repo.engine.connect() as conn:
        nodes: dict[str, str] = dict(conn.execute(
            text("SELECT external_id, node FROM calls WHERE external_id = ANY(:e)"), {"e": both}
        ).all())  # fmt: skip
    assert [nodes[e] for e in single] == ["solo"] * 6
    assert [nodes[e] for e in pair] == ["gw-a", "gw-b"] * 3
    for i, (one, two) in enumerate(zip(single, pair, strict=True)):
        want, got = _record(floor.repo, one), _record(floor.repo, two)
        assert want["segments"], CALLS[i]  # transcribed, by the real model in the workers
        assert got == want, f"{CALLS[i]}:\n{_differences(want, got)}"
    # Exactly once: no segment twice however often an event was redelivered.
    _assert_no_duplicates(floor.repo)


async def test_a_killed_node_is_lost_its_calls_leave_the_board_the_others_go_on(
    floor: Floor,
) -> None:
    a, b = floor.nodes["gw-a"], floor.nodes["gw-b"]
    call = floor.calls["en_support_16k.toml"]  # 11 s at real time
    meta_a, meta_b = call_metadata(call), call_metadata(call)
    async with _board(_api_url(b)) as board:
        on_a = asyncio.create_task(stream_call(a.url, call, pace=1.0, metadata=meta_a))
        on_b = asyncio.create_task(stream_call(b.url, call, pace=1.0, metadata=meta_b))
        assert await board.live_card(meta_a["callid"], lambda: not on_a.done(), 20)
        a.kill9()
        killed = time.monotonic()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(on_a, 10)
        removed = await board.removal(meta_a["callid"], timeout_s=NODE_TTL_S + 10)
        assert removed is not None, "gw-a's call did not leave gw-b's board"
        assert removed["reason"] == "node_lost"
        # After the heartbeat expired (the TTL counts from the last beat), not before.
        assert time.monotonic() - killed >= NODE_TTL_S - HEARTBEAT_S - 1.0
        await on_b  # gw-b's own call went on to its end, untouched
    assert any("node gw-a lost" in n.log() for n in (b, floor.nodes["solo"]))
    row = _row(floor.repo, meta_a["callid"])
    assert row == ("interrupted", "node_lost", "gw-a")
    await _wait(lambda: _finalised(floor.repo, [meta_b["callid"]]), 60, "gw-b's call not stored")
    assert _row(floor.repo, meta_b["callid"]) == ("completed", "normal", "gw-b")
    detail = floor.repo.get_call(meta_b["callid"])
    assert detail is not None and detail.segments


def _row(repo: Repository, external_id: str) -> tuple[str, str | None, str | None] | None:
    with repo.engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, end_reason, node FROM calls WHERE external_id = :e"),
            {"e": external_id},
        ).first()
    return None if row is None else (row[0], row[1], row[2])


async def test_nats_restarted_mid_call_records_equal_a_no_fault_run(
    private_nats: PrivateNats, pg_repo: Repository, tmp_path: Path
) -> None:
    call = render(load_script({p.name: p for p in builtin_scripts()}["en_billing_8k.toml"]))
    ep = private_nats.endpoint
    prefix = f"restart{time.monotonic_ns()}"
    # The words do not matter here (scripted workers): no DNSMOS and no sentence model to load.
    env = _env(ep, pg_repo, prefix, CALLWATCH_BUS__HEARTBEAT_S="1",
               CALLWATCH_BUS__NODE_TTL_S="20",  # longer than the outage
               CALLWATCH_QUALITY__DNSMOS__ENABLED="false",
               CALLWATCH_COMPLIANCE__SEMANTIC="false")  # fmt: skip
    with asr_workers(ep, prefix, 2, real=False) as ready:
        with _nodes(tmp_path, env, ["gw-a", "gw-b"]) as (a, b):
            ready()
            clean = [r.external_id for r in await asyncio.gather(
                *(stream_call(n.url, call, pace=0) for n in (a, b))
            )]  # fmt: skip
            await _wait(lambda: _finalised(pg_repo, clean), 60, "no-fault calls not stored")
            # The same calls at 3x real time (8 s); NATS goes away for 3 s in the middle.
            faulted = [asyncio.create_task(stream_call(n.url, call, pace=3.0)) for n in (a, b)]
            await asyncio.sleep(2)
            assert not any(t.done() for t in faulted)
            private_nats.stop()
            await asyncio.sleep(3)
            assert not any(t.done() for t in faulted), "the outage was not mid-call"
            private_nats.start()
            reports = await asyncio.gather(*faulted)
            await _wait(lambda: all("bus reconnected" in n.log() for n in (a, b)), 20,
                        "a node did not reconnect")  # fmt: skip
            for n in (a, b):  # the outage did happen under the calls
                assert "bus disconnected" in n.log(), n.log()[-2000:]
            after = [r.external_id for r in reports]
            await _wait(lambda: _finalised(pg_repo, after), 60, "calls across the restart lost")
    for want_id, got_id in zip(clean, after, strict=True):
        want, got = _record(pg_repo, want_id), _record(pg_repo, got_id)
        assert got == want, _differences(want, got)
    _assert_no_duplicates(pg_repo)


def _api_url(node: ServerProcess) -> str:
    """The node's HTTP API (it starts just after the gateway the harness waited for)."""
    deadline = time.monotonic() + 30
    while not (m := re.search(r"api listening on (http://\S+)", node.log())):
        assert time.monotonic() < deadline, node.log()[-2000:]
        time.sleep(0.1)
    return m.group(1)


class _Board:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._unread: list[dict[str, Any]] = []  # the rest of the last frame

    async def _next(self, deadline: float) -> dict[str, Any] | None:
        while not self._unread:
            try:
                raw = await asyncio.wait_for(self.ws.recv(),
                                             max(0.05, deadline - time.monotonic()))  # fmt: skip
            except TimeoutError:
                return None
            self._unread = frame_messages(raw)
        msg = self._unread.pop(0)
        self.messages.append(msg)
        return msg

    async def live_card(
        self, external_id: str, still: Callable[[], bool], timeout_s: float
    ) -> bool:
        """Whether a card of call `external_id` with media arrives while `still()` holds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (msg := await self._next(deadline)) is not None:
            card = msg.get("call") if msg.get("type") == "call" else None
            if card and card["external_id"] == external_id and card["media_ms"] > 0:
                return still()
        return False

    async def removal(self, external_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The `remove` message of call `external_id` (it leaves the board), or None."""
        ids = {m["call"]["call_id"] for m in self.messages
               if m.get("type") == "call" and m["call"]["external_id"] == external_id}  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (msg := await self._next(deadline)) is not None:
            if msg.get("type") == "call" and msg["call"]["external_id"] == external_id:
                ids.add(msg["call"]["call_id"])
            if msg.get("type") == "remove" and msg.get("call_id") in ids:
                return msg
        return None


@contextlib.asynccontextmanager
async def _board(base: str) -> Any:
    async with httpx.AsyncClient(base_url=base) as c:
        r = await c.post("/api/login", json={"username": "sup", "password": PASSWORD})
        r.raise_for_status()
        tok = str(r.json()["token"])
    async with connect(
        base.replace("http", "ws", 1) + "/board/ws",
        additional_headers={"Cookie": f"{COOKIE}={tok}"},
        origin=base,  # type: ignore[arg-type]
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        yield _Board(ws)
