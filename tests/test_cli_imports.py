"""What every ASR worker process pays for `monitor.cli` being the program's `__main__`.

Worker processes started by forkserver or spawn (`asr.pool`) run the parent's `__main__`
module again, as `__mp_main__`, before their target (`multiprocessing.spawn.prepare`). For
`callwatch serve` and `callwatch asr-worker` that module is `monitor.cli`, so whatever it
imports at module level sits in each worker's memory next to the model. A top-level
`from monitor.events import ...` (monitor.qa: pypinyin's phrase tables, cn2an) cost each
worker about 100 MB (docs/benchmarks.md). These tests do what a worker does, in a fresh
interpreter: import what the worker needs for itself, then run `monitor.cli` as the worker
would, and look at what that added.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Packages no worker needs; each is heavy or pulls heavy ones in (monitor.qa: pypinyin,
#: cn2an, rapidfuzz; the runtime and the web: sqlalchemy, websockets, onnxruntime).
HEAVY = (
    "monitor.qa",
    "monitor.events",
    "monitor.app",
    "monitor.runtime",
    "monitor.web",
    "monitor.alerts",
    "monitor.board",
    "monitor.scale",
    "pypinyin",
    "cn2an",
    "rapidfuzz",
    "sqlalchemy",
    "onnxruntime",
    "websockets",
)
#: Resident anonymous memory `monitor.cli` may add to a worker (about 2 MB today; the
#: top-level monitor.events import added 62 MB in this same measurement).
ADDED_ANON_LIMIT_KB = 16_000

_AS_A_WORKER = """
import json, runpy, sys

def anon_kb():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("RssAnon:"))

import asr.engine, asr.pool  # the worker's own needs: its target and the pickled config
before, anon = set(sys.modules), anon_kb()
# What multiprocessing.spawn._fixup_main_from_name does with the parent's __main__.
runpy.run_module("monitor.cli", run_name="__mp_main__", alter_sys=True)
print(json.dumps({"added": sorted(set(sys.modules) - before), "anon_kb": anon_kb() - anon}))
"""


def _run_as_worker() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _AS_A_WORKER],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_an_asr_worker_running_the_cli_as_main_imports_nothing_heavy() -> None:
    result = _run_as_worker()
    added = result["added"]
    assert isinstance(added, list)
    heavy = [m for m in added if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]
    assert heavy == [], f"monitor.cli's top-level imports load {heavy[:10]} in every ASR worker"
    # Something light of ours was run (the test sees the worker's view, not an empty one).
    assert "monitor.cli_show" in added
    anon_kb = result["anon_kb"]
    assert isinstance(anon_kb, int)
    assert anon_kb < ADDED_ANON_LIMIT_KB, (
        f"monitor.cli adds {anon_kb} kB to every ASR worker (limit {ADDED_ANON_LIMIT_KB})"
    )
