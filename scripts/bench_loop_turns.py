"""Loop-turn benchmark (RELIABILITY.md L1): how much of one event-loop turn the calls' audio
analysis takes when calls started together, with their analysis batches in phase (as before
the stagger) and at random phases (as `CallFactory` gives them now).

    .venv/bin/python scripts/bench_loop_turns.py              # 10 calls, 18 s
    .venv/bin/python scripts/bench_loop_turns.py --calls 30

Each turn feeds every call's sans-I/O core (segmenters, quality trackers, conversation) its
next 20 ms message, as the gateway does when the calls' messages arrive together, and takes
the thread's CPU time for the turn: a turn's CPU is how long the loop is held, so its p99 and
max are what the event-loop lag probe sees. DNSMOS off, as in the L1 test. Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import load_settings  # noqa: E402
from ivr_sim import RenderedCall  # noqa: E402
from ivr_sim.stream import call_metadata  # noqa: E402
from monitor.core.analysis import CallAnalyzer  # noqa: E402
from monitor.core.call_core import CallCore  # noqa: E402
from monitor.core.metadata import parse_metadata  # noqa: E402
from tests.load_support import fleet  # noqa: E402


def turns(calls: list[RenderedCall], phases: list[float], seconds: float) -> np.ndarray:
    s = load_settings(env={"CALLWATCH_QUALITY__DNSMOS__ENABLED": "false"})
    cores, pcms = [], []
    for call, phase in zip(calls, phases, strict=True):
        meta = parse_metadata(json.dumps(call_metadata(call, {"callid": "x"})))
        analyzer = CallAnalyzer(meta, s.quality, s.grading, None, None, batch_phase=phase)
        cores.append(CallCore(meta, s.vad, analyzer))
        pcms.append((call.pcm(), call.sample_rate // 50 * 4))
    out = []
    for k in range(int(seconds * 50)):
        t = time.thread_time()
        for core, (pcm, step) in zip(cores, pcms, strict=True):
            core.feed(pcm[k * step : (k + 1) * step])
        out.append(1000 * (time.thread_time() - t))
    return np.array(out[50:])  # the first second: first-use costs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=18.0)
    args = ap.parse_args()
    calls = fleet(args.calls, args.seconds + 1)
    rng = random.Random(1)
    for label in ("in phase", "staggered", "in phase", "staggered"):
        phases = [0.0 if label == "in phase" else rng.random() for _ in calls]
        a = turns(calls, phases, args.seconds)
        p50, p99 = np.percentile(a, 50), np.percentile(a, 99)
        print(f"{args.calls} calls, batches {label:9s}: CPU per 20 ms turn mean {a.mean():.2f} "
              f"p50 {p50:.2f} p99 {p99:.2f} max {a.max():.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
