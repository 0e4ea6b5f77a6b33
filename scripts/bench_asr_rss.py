"""Memory of the ASR worker processes, quickly: a real server, a fixed load, /proc per process.

`scripts/bench.py` reports the workers' peak RSS ("RSS MB wrk": the largest sum, over its
samples, of VmRSS of every process in the server's session but the server itself, i.e. the
two ASR workers plus multiprocessing's forkserver and resource tracker) only after minutes of
real-time calls. This script measures the same thing in about a minute, deterministically
enough to compare commits:

1. start one real `callwatch serve` (`python -m monitor.cli serve`, as the bench and an
   operator start it: the ASR pool with the default settings, 2 workers, the bundled `base`
   model) and print each session process's memory once the workers have loaded the model;
2. stream the four built-in calls (English and Mandarin, 8 and 16 kHz, 24-36 s each, made
   from the clips in tests/data) at once, at `--pace` times real time, so the service batches
   utterances across calls as it does live; sample every process's VmRSS every 0.2 s until
   every call is finalised;
3. print, per process: VmRSS after loading, the peak VmRSS sampled under load, VmHWM (the
   kernel's own peak) and RssAnon at the end; then the bench's figure, the peak of the summed
   VmRSS of the non-server processes.

Why a real server and not an `AsrPool` started here: worker processes (forkserver or spawn)
run the parent's `__main__` module again before their target, so what they hold depends on
which program started them. Started from this script they would import this script, not
`monitor.cli`. To measure an older commit, run it with that checkout first on the path:

    PYTHONPATH=/path/to/checkout .venv/bin/python scripts/bench_asr_rss.py
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ivr_sim.harness import MODEL_CACHE, ServerProcess, server_env, session_cpu_s
from ivr_sim.script import builtin_scripts, load_script, render
from ivr_sim.stream import call_metadata, stream_call

SAMPLE_S = 0.2
FINALISE_LIMIT_S = 120.0
FINALISE_POLL_S = 0.5


def _mb(kib: int) -> float:
    """/proc's kB (KiB) as MB of 10^6 bytes, the unit of scripts/bench.py's RSS columns."""
    return kib * 1024 / 1e6


def _status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status ({} when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            out[key] = int(value.split()[0])
    return out


def _role(pid: int, server_pid: int) -> str:
    if pid == server_pid:
        return "server"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    if "resource_tracker" in cmd:
        return "resource tracker"
    threads = _status_line(pid, "Threads")
    # The forkserver is single-threaded; a worker runs CTranslate2's threads as well.
    return "forkserver" if "forkserver" in cmd and threads == "1" else "asr worker"


def _status_line(pid: int, key: str) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@dataclass
class Sampler:
    """Peak VmRSS per process, and the peak of the summed VmRSS of all but the server."""

    server_pid: int
    loaded: dict[int, dict[str, int]] = field(default_factory=dict)
    peak: dict[int, int] = field(default_factory=dict)
    peak_others_kb: int = 0

    def sample(self) -> None:
        others = 0
        for pid in sorted(session_cpu_s(self.server_pid)):
            rss = _status(pid).get("VmRSS", 0)
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
            if pid != self.server_pid:
                others += rss
        self.peak_others_kb = max(self.peak_others_kb, others)


def _finalised(db: Path, ids: list[str]) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"SELECT status FROM calls WHERE external_id IN ({marks})", ids
            ).fetchall()
    except sqlite3.Error:
        return False
    return len(rows) == len(ids) and all(r[0] != "active" for r in rows)


async def _load(server: ServerProcess, sampler: Sampler, pace: float) -> float:
    calls = [render(load_script(p)) for p in builtin_scripts()]
    ids = [f"rss-{i}-{c.script.name}" for i, c in enumerate(calls)]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            sampler.sample()
            await asyncio.sleep(SAMPLE_S)

    sampling = asyncio.create_task(sample())
    started = time.monotonic()
    await asyncio.gather(
        *(
            stream_call(server.url, c, pace=pace, metadata=call_metadata(c, {"callid": i}))
            for c, i in zip(calls, ids, strict=True)
        )
    )
    for _ in range(int(FINALISE_LIMIT_S / FINALISE_POLL_S)):  # the calls' last batches
        if _finalised(server.db_path, ids):
            break
        await asyncio.sleep(FINALISE_POLL_S)
    stop.set()
    await sampling
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pace", type=float, default=2.0, help="x real time (default 2)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-asr-rss-"))
    env = server_env(CALLWATCH_ASR__CACHE_DIR=str(MODEL_CACHE))
    server = ServerProcess(data_dir=work / "data", env=env, log_path=work / "server.log")
    server.start()
    if server.proc is None:
        raise RuntimeError("the server did not start")
    sampler = Sampler(server.proc.pid)
    try:
        pids = sorted(session_cpu_s(sampler.server_pid))
        sampler.loaded = {pid: _status(pid) for pid in pids}
        roles = {pid: _role(pid, sampler.server_pid) for pid in pids}
        wall = asyncio.run(_load(server, sampler, args.pace))
        end = {pid: _status(pid) for pid in pids}
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"code: {Path(sys.modules['ivr_sim'].__file__ or '').parents[1]}   load: {wall:.0f} s")
    print(f"{'pid':>7} {'process':17} {'loaded':>7} {'peak':>7} {'VmHWM':>7} {'anon':>7}  (MB)")
    for pid in pids:
        print(
            f"{pid:7} {roles[pid]:17} {_mb(sampler.loaded[pid].get('VmRSS', 0)):7.0f} "
            f"{_mb(sampler.peak.get(pid, 0)):7.0f} {_mb(end[pid].get('VmHWM', 0)):7.0f} "
            f"{_mb(end[pid].get('RssAnon', 0)):7.0f}"
        )
    print(f"bench 'RSS MB wrk' (peak of the non-server processes' sum): "
          f"{_mb(sampler.peak_others_kb):.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
