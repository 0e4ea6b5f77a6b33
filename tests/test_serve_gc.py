"""`callwatch serve` freezes what start-up built out of the garbage collector (RELIABILITY.md
L1, L3): the models, compliance scripts, SQLAlchemy and the web app live as long as the
process, and a full collection that walked them all stalled the event loop, and every call's
audio, for up to 390 ms (measured in the L3 load test; 25 ms once frozen).

The real application, started by `run_forever` as `callwatch serve` starts it (scripted ASR).
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

from config.settings import load_settings
from monitor.app import Callwatch


async def test_run_forever_freezes_the_start_up_heap(tmp_path: Path) -> None:
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "data"), asr={"engine": "scripted"},
        gateway={"port": 0, "audiosocket_port": 0}, api={"port": 0},
        quality={"dnsmos": {"enabled": False}}, compliance={"semantic": False},
    )  # fmt: skip
    frozen_before = gc.get_freeze_count()
    stop = asyncio.Event()
    app = Callwatch(settings)
    serving = asyncio.create_task(app.run_forever(stop, freeze_heap=True))
    try:
        deadline = time.monotonic() + 60
        while gc.get_freeze_count() == frozen_before:
            assert not serving.done(), serving.exception()
            assert time.monotonic() < deadline, "the heap was not frozen after start"
            await asyncio.sleep(0.05)
        # Everything start-up built, not a handful of objects.
        assert gc.get_freeze_count() - frozen_before > 50_000
        assert app.gateway is not None and app.gateway.url  # frozen once serving
    finally:
        stop.set()
        await serving
        gc.unfreeze()  # this test process goes on to other tests
