"""Gateway nodes in NATS mode, end to end with real processes: two `callwatch serve` nodes on
one PostgreSQL and one NATS, transcripts from a shared (scripted) ASR worker, each call owned
by its node; and kill -9 of a node mid-call: the other node closes that call as
interrupted / node_lost once the heartbeat expires, while its own calls go on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from ivr_sim import builtin_scripts, load_script, render, stream_call
from ivr_sim.harness import ServerProcess, server_env
from storage.repository import Repository
from tests.fixtures_nats import NatsEndpoint
from tests.scale_support import bus_env, scripted_worker

# `long`: two real `callwatch serve` nodes with remote ASR and a node killed mid-call: 41 s;
# runs in `scripts/test --long` with the other whole-floor proofs (tests/test_scale_proof.py).
pytestmark = [pytest.mark.scaleout, pytest.mark.long]


def _node(tmp: Path, name: str, env: dict[str, str]) -> ServerProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    return ServerProcess(
        data_dir=tmp / "data",
        env=server_env(**env, CALLWATCH_NODE__NAME=name),
        log_path=tmp / "server.log",
    )


def _call_row(repo: Repository, external_id: str) -> tuple[str, str | None, str | None] | None:
    with repo.engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, end_reason, node FROM calls WHERE external_id = :e"),
            {"e": external_id},
        ).first()
    return None if row is None else (row[0], row[1], row[2])


async def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_two_nodes_remote_asr_and_a_node_killed_mid_call(
    nats_server: NatsEndpoint, pg_repo: Repository, tmp_path: Path
) -> None:
    env = {k: v for k, v in bus_env(nats_server).items() if k.startswith("CALLWATCH_")}
    env.update(
        CALLWATCH_STORAGE__URL=pg_repo.engine.url.render_as_string(hide_password=False),
        CALLWATCH_ASR__REMOTE="true",
        CALLWATCH_ASR__REMOTE_TIMEOUT_S="5",
        CALLWATCH_BUS__PREFIX=f"gw{time.monotonic_ns()}",
        CALLWATCH_BUS__HEARTBEAT_S="0.5",
        CALLWATCH_BUS__NODE_TTL_S="3",
        CALLWATCH_API__ENABLED="false",
        CALLWATCH_GATEWAY__AUDIOSOCKET_PORT="-1",
        CALLWATCH_GATEWAY__MAX_AUDIO_RATE="0",  # the first call is streamed flat out
    )
    with scripted_worker(nats_server, "W1", 0.05, prefix=env["CALLWATCH_BUS__PREFIX"]):
        a, b = _node(tmp_path / "a", "gw-a", env), _node(tmp_path / "b", "gw-b", env)
        a.start(timeout_s=120)
        b.start(timeout_s=120)
        try:
            script = load_script(builtin_scripts()[0])
            # A whole call on node B, flat out: recorded, transcribed remotely, stored.
            rep = await stream_call(b.url, render(script), pace=0)
            await _wait(lambda: (_call_row(pg_repo, rep.external_id) or ("active",))[0]
                        != "active", 60, "node B's call did not end")  # fmt: skip
            detail = pg_repo.get_call(rep.external_id)
            assert detail is not None and detail.segments, b.log()[-3000:]
            assert all(s.text.startswith("W1 heard") for s in detail.segments)
            row = _call_row(pg_repo, rep.external_id)
            assert row is not None and (row[0], row[2]) == ("completed", "gw-b")

            # A call on node A at real-time pace, and node A dies under it.
            long_call = render(script)
            streaming = asyncio.create_task(stream_call(a.url, long_call, pace=1.0))

            def a_active() -> bool:
                with pg_repo.engine.connect() as conn:
                    return bool(conn.execute(text(
                        "SELECT count(*) FROM calls WHERE node = 'gw-a' AND status = 'active'"
                    )).scalar())  # fmt: skip

            await _wait(a_active, 30, "node A's call never became active")
            a.kill9()
            killed = time.monotonic()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(streaming, 10)

            def a_lost() -> bool:
                with pg_repo.engine.connect() as conn:
                    return bool(conn.execute(text(
                        "SELECT count(*) FROM calls WHERE node = 'gw-a' AND status = "
                        "'interrupted' AND end_reason = 'node_lost'"
                    )).scalar())  # fmt: skip

            await _wait(a_lost, 3 + 10, "node A's call was not closed as node_lost")
            assert time.monotonic() - killed >= 2.0  # only after the heartbeat expired
            assert "node gw-a lost" in b.log()
        finally:
            for node in (a, b):
                node.stop()
