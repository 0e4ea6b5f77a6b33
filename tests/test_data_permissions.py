"""Data is private to the service user (issue 17 item 10).

`callwatch.db`, its `-wal`/`-shm` and the data directories were 0644/0755. A real
`callwatch serve` (with a data directory an older version left world-readable) streams a call;
every directory under the data directory is then 0700 and every file 0600, while it runs (the
WAL files exist then) and after it stops.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from ivr_sim import builtin_scripts, load_script, render, stream_call
from tests.fixtures_server import make_server


def modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return out


def test_files_0600_and_directories_0700(tmp_path: Path) -> None:
    data = tmp_path / "srv" / "data"
    data.mkdir(parents=True, mode=0o755)
    os.chmod(data, 0o755)  # as an older version (and the default umask) left it
    srv = make_server(tmp_path / "srv", scripted=True)
    srv.start()
    try:
        call = render(load_script(next(p for p in builtin_scripts() if "en_billing_8k" in p.name)))
        call = call.__class__(call.script, call.audio[: 2 * call.sample_rate], call.turns)
        report = asyncio.run(stream_call(srv.url, call, pace=0))
        srv.wait_call(report.external_id, timeout_s=120)
        running = modes(data)
    finally:
        srv.stop()
    stopped = modes(data)
    assert any(name.endswith("-wal") for name in running), running
    assert any(name.endswith(".wav") for name in running), running
    for snapshot in (running, stopped):
        for name, mode in snapshot.items():
            is_dir = (data / name).is_dir() if (data / name).exists() else name == "."
            want = 0o700 if is_dir else 0o600
            assert mode == want, f"{name}: {oct(mode)} (want {oct(want)})"
