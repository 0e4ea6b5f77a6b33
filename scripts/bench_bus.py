"""Bus overhead of remote ASR: wall time per utterance minus the worker's compute time.

    CALLWATCH_TEST_NATS_URL=$(scripts/nats-test-server start) .venv/bin/python scripts/bench_bus.py

A worker with a zero-cost transcriber (no model: only the transport is measured) serves on the
given NATS; `RemoteTranscriber` sends N utterances of S seconds of PCM16 each, one at a time
and then C at once, and prints the overhead p50 / p95 / max in milliseconds: encode, NATS
request/reply round trip through the queue group, decode, on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asr.types import AsrRequest, AsrResult  # noqa: E402
from config.settings import BusSettings  # noqa: E402
from monitor.scale.asr_remote import RemoteTranscriber, asr_subject  # noqa: E402
from monitor.scale.asr_worker import AsrWorkerServer  # noqa: E402
from monitor.scale.connect import connect_bus  # noqa: E402


class Instant:
    worker_count = 8

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        return [AsrResult("ok", "en", 1.0, len(r.audio) / 16000, 0.0, tag=r.tag) for r in requests]


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


async def main(n: int, seconds: float, concurrency: int) -> None:
    raw = urlsplit(os.environ["CALLWATCH_TEST_NATS_URL"])
    bus = BusSettings(
        url=f"nats://{raw.hostname}:{raw.port}",
        credentials={"user": raw.username, "password": raw.password},
        prefix=f"bench{time.monotonic_ns()}",
    )
    w, c = await connect_bus(bus, "bench-worker"), await connect_bus(bus, "bench-node")
    server = AsrWorkerServer(w, Instant(), subject=asr_subject(bus.prefix),
                             max_bytes=bus.max_message_bytes, capacity=64)  # fmt: skip
    await server.start()
    remote = RemoteTranscriber(
        c, subject=asr_subject(bus.prefix), timeout_s=5, attempts=1,
        max_bytes=bus.max_message_bytes, concurrency=concurrency,
    )  # fmt: skip
    audio = (0.1 * np.sin(np.arange(int(seconds * 16000)) / 10)).astype(np.float32)
    for i in range(20):  # warm-up
        await remote.transcribe_batch([AsrRequest(audio, tag=("w", "agent", i))])
    remote.overhead_ms.clear()
    for i in range(n):
        await remote.transcribe_batch([AsrRequest(audio, tag=("s", "agent", i))])
    seq = list(remote.overhead_ms)
    remote.overhead_ms.clear()
    for i in range(0, n, concurrency):
        await remote.transcribe_batch(
            [AsrRequest(audio, tag=("p", "agent", i + j)) for j in range(concurrency)]
        )
    par = list(remote.overhead_ms)
    kb = len(audio) * 2 / 1024
    for name, v in (("one at a time", seq), (f"{concurrency} at once", par)):
        print(
            f"{name:>14}: {len(v)} utterances of {seconds:.1f} s ({kb:.0f} KiB PCM16): overhead "
            f"p50 {pct(v, 50):.2f} ms, p95 {pct(v, 95):.2f} ms, max {max(v):.2f} ms"
        )
    await server.close()
    await w.close()
    await c.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=16)
    a = ap.parse_args()
    asyncio.run(main(a.n, a.seconds, a.concurrency))
