"""Shared pytest wiring: fixtures live in plugin modules owned by their package's tests."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures_logs",  # first: every session logs at DEBUG and is scanned (P8)
    "tests.fixtures_db",
    "tests.fixtures_asr",
    "tests.fixtures_server",
    "tests.inprocess_support",
    "tests.fixtures_api",
    "tests.fixtures_browser",
    "tests.fixtures_nats",
]

#: Test files that keep one worker busy for 45 s or more (measured in a fresh-clone run,
#: docs/development.md). pytest-xdist hands out files in collection order, so these go first:
#: the parallel pass then ends on short files instead of waiting for one long one.
LONGEST_FILES = (
    "test_crash_random.py",  # C2: 20 kill -9 runs, 16 min, with --long (per commit: 5 kills)
    "test_e2e_call.py",
    "test_compliance_asr_errors.py",
    "test_quality_snr.py",
    "test_crash_recovery.py",
    "test_scale_proof.py",
    "test_quality_protocols.py",
    "test_storage_never_returns.py",
    "test_audio_redaction_e2e.py",
    "test_api_fuzz.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps the rest


def pytest_deselected(items: list[pytest.Item]) -> None:
    """`scripts/test` runs the `serial` tests in a second pass: the files that hold them, as
    this pass's own marker selection found them, go to `CW_SERIAL_LIST`, so that pass
    collects those files only (a full collection costs ~13 s of the serial pass)."""
    target = os.environ.get("CW_SERIAL_LIST")
    serial = [item for item in items if item.get_closest_marker("serial") is not None]
    if not target or not serial:
        return
    root = serial[0].config.rootpath
    files = sorted({str(item.path.relative_to(root)) for item in serial})
    tmp = Path(f"{target}.{os.getpid()}")
    tmp.write_text("".join(f"{f}\n" for f in files))
    tmp.replace(target)  # every worker writes the same list; the last one stands


@pytest.fixture(autouse=True)
def _frozen_heap_for_timed_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """The `serial` tests bound event-loop lag and wall-clock gaps of a server that often runs
    inside this process (the in-process seam). `callwatch serve` freezes its start-up heap out
    of the garbage collector (monitor.app); here the heap is pytest's, hundreds of MB after the
    long load tests, and a full collection of it stalled the loop 115 ms: not the server's
    cost. Frozen for the test, as serve does, and given back after."""
    if request.node.get_closest_marker("serial") is None:
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
