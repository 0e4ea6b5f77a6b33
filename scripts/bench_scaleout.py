"""The pipeline benchmark through NATS (scale-out): `scripts/bench --nodes 2 --asr-workers N`.

    CALLWATCH_TEST_NATS_URL=$(scripts/nats-test-server start) \
    CALLWATCH_TEST_PG_URL=$(scripts/pg-test-server start) \
    scripts/bench --nodes 2 --asr-workers 2 --levels 2,4

Starts N `callwatch asr-worker` processes (the bundled Whisper model, CPU; `--scripted` uses
the scripted test worker instead: transport and storage only) and `--nodes` `callwatch serve`
gateway nodes in NATS mode (`asr.remote`, one fresh PostgreSQL database, events through the
JetStream stream and the shared durable storage consumer). Each level streams N calls at real
time, spread round-robin over the nodes, and prints the single-node table's columns: calls
completed, utterances, transcript latency p50/p95/max (end of speech -> segment visible in
PostgreSQL), the node's ASR part (queue -> result, which now includes the NATS round trip),
the drain time. Then the bus overhead per utterance (`scripts/bench_bus.py`: wall time of a
remote request minus the worker's compute, with a zero-cost worker), p50/p95.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_bus  # noqa: E402
from bench import CallTrack, Server, _stream, percentile, progress  # noqa: E402

from ivr_sim.harness import MODEL_CACHE, REPO_ROOT  # noqa: E402
from ivr_sim.script import builtin_scripts, load_script, render  # noqa: E402
from tests.scale_support import Proc  # noqa: E402

PAD_MS = 300  # [vad] pad_ms default: speech ended this long before a segment's end


def _bus_env(nats_url: str, prefix: str) -> dict[str, str]:
    raw = urlsplit(nats_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
        CALLWATCH_LOG_FORMAT="text", CALLWATCH_ASR__CACHE_DIR=str(MODEL_CACHE),
        CALLWATCH_BUS__URL=f"nats://{raw.hostname}:{raw.port}",
        CALLWATCH_BUS__CREDENTIALS__USER=raw.username or "",
        CALLWATCH_BUS__CREDENTIALS__PASSWORD=raw.password or "",
        CALLWATCH_BUS__PREFIX=prefix,
    )  # fmt: skip
    return env


def _fresh_database(pg_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return str(sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False))


class PgWatch:
    """Segments as they become visible in PostgreSQL, with the time first seen."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.seen: dict[tuple[str, str, int, int], tuple[float, int | None]] = {}

    def poll(self) -> None:
        now = time.monotonic()
        with self.engine.connect() as conn:
            for row in conn.execute(sa.text(
                "SELECT c.external_id, s.party, s.start_ms, s.end_ms, s.latency_ms "
                "FROM segments s JOIN calls c ON c.id = s.call_id"
            )):  # fmt: skip
                self.seen.setdefault((row[0], row[1], row[2], row[3]), (now, row[4]))

    def finished(self, ids: list[str]) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM calls WHERE external_id = ANY(:e) AND status = 'completed'"
            ), {"e": ids}).scalar_one())  # fmt: skip


async def run_level(urls: list[str], watch: PgWatch, n: int, stagger_s: float) -> dict[str, float]:
    calls = [render(load_script(p)) for p in builtin_scripts()]
    tag = uuid.uuid4().hex[:6]
    tracks = [CallTrack(f"so-{tag}-{i}", "", calls[i % len(calls)]) for i in range(n)]
    stop = asyncio.Event()

    async def poller() -> None:
        while not stop.is_set():
            await asyncio.to_thread(watch.poll)
            await asyncio.sleep(0.1)

    polling = asyncio.create_task(poller())
    await asyncio.gather(*(_stream(urls[i % len(urls)], t, i * stagger_s)
                           for i, t in enumerate(tracks)))  # fmt: skip
    ended = time.monotonic()
    ids = [t.external_id for t in tracks]
    while watch.finished(ids) < len(ids) and time.monotonic() - ended < 120:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    drain = time.monotonic() - ended
    await asyncio.sleep(1.0)
    stop.set()
    await polling
    by_id = {t.external_id: t for t in tracks}
    total, asr = [], []
    for (ext, _party, start, end), (seen, asr_ms) in watch.seen.items():
        if ext in by_id:
            total.append(seen - by_id[ext].sent_at(max(start, end - PAD_MS)))
            if asr_ms is not None:
                asr.append(asr_ms / 1000)
    return {
        "n": n, "ok": watch.finished(ids), "segments": len(total),
        "p50": percentile(total, 50), "p95": percentile(total, 95), "max": max(total, default=0),
        "asr_p50": percentile(asr, 50), "asr_p95": percentile(asr, 95), "drain": drain,
        "errors": sum(t.error is not None for t in tracks),
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--asr-workers", type=int, default=2)
    ap.add_argument("--levels", default="2,4")
    ap.add_argument("--stagger", type=float, default=0.5)
    ap.add_argument("--scripted", action="store_true", help="scripted ASR workers (no model)")
    ap.add_argument("--bus-n", type=int, default=300, help="utterances for the bus overhead")
    args = ap.parse_args()
    nats_url, pg_url = os.environ["CALLWATCH_TEST_NATS_URL"], os.environ["CALLWATCH_TEST_PG_URL"]
    prefix = f"bench{time.monotonic_ns()}"
    env = _bus_env(nats_url, prefix)
    db = _fresh_database(pg_url)
    workdir = Path(tempfile.mkdtemp(prefix="callwatch-bench-scaleout-"))
    workers: list[Proc] = []
    nodes: list[Server] = []
    rows = []
    try:
        for i in range(args.asr_workers):
            cmd = ([sys.executable, "-m", "tests.scripted_asr_worker", f"W{i}", "0.05"]
                   if args.scripted else
                   [sys.executable, "-m", "monitor.cli", "asr-worker"])  # fmt: skip
            wenv = {**env, "CALLWATCH_ASR__WORKERS": "1"}
            workers.append(Proc(cmd, wenv))
            workers[-1].wait_for("asr-worker ready", timeout_s=300)
            progress(f"[scale-out] asr worker {i + 1}/{args.asr_workers} ready")
        node_env = {**env, "CALLWATCH_STORAGE__URL": db, "CALLWATCH_ASR__REMOTE": "true",
                    "CALLWATCH_API__ENABLED": "false",
                    "CALLWATCH_GATEWAY__AUDIOSOCKET_PORT": "-1"}  # fmt: skip
        for i in range(args.nodes):
            node = Server(workdir / f"node{i}", {**node_env, "CALLWATCH_NODE__NAME": f"gw-{i}"})
            node.start()
            nodes.append(node)
            progress(f"[scale-out] node gw-{i} listening on {node.url}")
        watch = PgWatch(db)
        for n in (int(x) for x in args.levels.split(",")):
            progress(
                f"[scale-out] N={n}: streaming {n} call(s) at real time over {args.nodes} nodes"
            )
            row = asyncio.run(run_level([nd.url for nd in nodes], watch, n, args.stagger))
            progress(f"[scale-out] N={n}: p50 {row['p50']:.2f} s p95 {row['p95']:.2f} s")
            rows.append(row)
        watch.engine.dispose()
    finally:
        for node in nodes:
            node.stop()
        for w in workers:
            w.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    kind = "scripted" if args.scripted else "Whisper (bundled model, CPU, 1 thread each)"
    print(f"== scale-out pipeline: {args.nodes} gateway nodes, {args.asr_workers} ASR workers "
          f"({kind}), NATS + PostgreSQL, {os.cpu_count()} cores ==")  # fmt: skip
    print("     N calls segs |  p50   p95   max | asr p50  p95 | drain s | errors")
    for r in rows:
        print(f"  {r['n']:4d} {r['ok']:2d}/{r['n']:<2d} {r['segments']:4d} | "
              f"{r['p50']:4.2f} {r['p95']:5.2f} {r['max']:5.2f} | "
              f"{r['asr_p50']:7.2f} {r['asr_p95']:4.2f} | {r['drain']:7.1f} | "
              f"{r['errors']}")  # fmt: skip
    print("== bus overhead per utterance (remote ASR round trip minus worker compute) ==")
    asyncio.run(bench_bus.main(args.bus_n, 3.0, 8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
