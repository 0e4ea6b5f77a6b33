"""A commit the repository acknowledged survives `kill -9` (RELIABILITY.md §10 C5).

A child process writes calls through the real `Repository` (SQLite, WAL, the configured
`synchronous`) one batch at a time and prints each call id once `apply` has returned; the
test kills it with SIGKILL while it is still writing, then opens the database again: every
call the child acknowledged is there, whole, and the database passes its integrity check.
(The pragmas themselves: tests/test_storage_schema.py.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.fixtures_server import REPO_ROOT

CHILD = """
import sys
from datetime import UTC, datetime
from storage.records import CallOpened, TraceAdded
from storage.repository import Repository

repo = Repository.from_url(sys.argv[1], sqlite_synchronous=sys.argv[2])
repo.upgrade()
print("ready", flush=True)
for i in range(100_000):
    at = datetime.now(UTC)
    repo.apply([
        CallOpened(call_id=f"c{i}", external_id=f"sw-{i}", started_at=at,
                   protocol="audiofork", sample_rate=8000, channels=2,
                   recording_path=f"c{i}.wav", parties=(("customer", 0), ("agent", 1))),
        TraceAdded(call_id=f"c{i}", seq=0, kind="connected", at=at, media_ms=0, party=None,
                   data={"n": i}),
    ])
    print(f"c{i}", flush=True)
"""


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_a_committed_row_survives_kill9(tmp_path: Path, synchronous: str) -> None:
    db = tmp_path / "cw.db"
    url = f"sqlite:///{db}"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # Through the repository's own engine and pragmas, at each `synchronous` level offered.
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, url, synchronous], stdout=subprocess.PIPE, text=True,
        env=env, cwd=REPO_ROOT,
    ) as child:  # fmt: skip
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        acknowledged = [child.stdout.readline().strip() for _ in range(50)]
        os.kill(child.pid, signal.SIGKILL)  # mid-stream: the child is writing the next batches
        child.wait(10)
        acknowledged += [line.strip() for line in child.stdout if line.strip()]
    assert child.returncode == -signal.SIGKILL
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        calls = {row[0] for row in conn.execute("SELECT id FROM calls")}
        traced = {row[0] for row in conn.execute("SELECT call_id FROM trace_events")}
    assert set(acknowledged) <= calls and set(acknowledged) <= traced
    # Each batch is all or nothing: no call without its trace entry.
    assert calls == traced
