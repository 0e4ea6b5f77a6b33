"""Every test session is RELIABILITY.md P8's run: the whole suite logs at DEBUG, and its logs
are scanned when it ends (a pytest plugin registered in tests/conftest.py).

* Servers and workers the tests start as processes (`callwatch serve` through
  `tests.fixtures_server.make_server` or `ivr_sim.harness.server_env`, `callwatch asr-worker`
  and the scripted workers through `tests.scale_support.Proc`) inherit
  `CALLWATCH_LOG_LEVEL=DEBUG` from this process's environment (set here, before any test).
  Their logs are files under the session's base temporary directory (`server.log` beside
  each server's data) or, for `Proc`, a copy of their output in `<basetemp>/logs/`
  (`session_log_path`).
* In-process code (the runtime rig, the in-process server, the API apps, the CLI called as a
  function) logs at DEBUG through callwatch's own formatter (`monitor.runtime.logs`, which
  scrubs every line, as `callwatch serve` writes it) into `<basetemp>/logs/inprocess.log`;
  the root logger is set back to DEBUG with that handler before each test, since a test may
  call `configure_logging` itself.
* When the session finishes, every `*.log` under the base temporary directory is scanned by
  `tests.log_scan.LogScanner` (tokens and the suite's passwords, `?token=` values, card
  numbers, audio payloads, fixture transcript text). Any hit fails the run, naming the file
  and line with the finding masked. NATS's own logs (a directory with `nats.conf`) are not
  callwatch's and are left out. Under pytest-xdist (`scripts/test` runs its workers) each
  worker logs under its own `<basetemp>/popen-gwN`, and the controller scans them all once
  every worker has finished (a worker's own exit status would not fail the run).

`tests/test_log_hygiene.py::test_the_session_scan_fails_a_run_whose_logs_leak` proves the
scan: a session whose test writes a card number and a token into a server log fails.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from pathlib import Path

import pytest

from monitor.runtime.logs import formatter, quiet_libraries
from tests.log_scan import Hit, LogScanner

_state: dict[str, Path] = {}
_handler: logging.Handler | None = None
_counter = itertools.count()


def session_log_path(stem: str) -> Path:
    """A new file for a child process's output, collected and scanned with the session's."""
    base = _state.get("logs") or Path(tempfile.mkdtemp(prefix="callwatch-logs-"))
    return base / f"{stem}-{os.getpid()}-{next(_counter)}.log"


def pytest_configure(config: pytest.Config) -> None:
    # Before any test starts a process: every child inherits it (an explicit setting wins).
    os.environ.setdefault("CALLWATCH_LOG_LEVEL", "DEBUG")


def pytest_sessionstart(session: pytest.Session) -> None:
    global _handler
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    base = Path(factory.getbasetemp())
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _state.update(base=base, logs=logs)
    _handler = logging.FileHandler(logs / "inprocess.log", encoding="utf-8", delay=True)
    _handler.setLevel(logging.DEBUG)
    _handler.setFormatter(formatter("text"))
    _attach()


def _attach() -> None:
    if _handler is None:
        return
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG)
    quiet_libraries()  # as `callwatch serve` does at every level


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _attach()


def scan_session_logs(base: Path, scanner: LogScanner | None = None) -> list[Hit]:
    """Every finding in the `*.log` files under `base` (NATS's own left out)."""
    scanner = scanner or LogScanner.for_suite()
    hits: list[Hit] = []
    for path in sorted(base.rglob("*.log")):
        if path.is_file() and not (path.parent / "nats.conf").exists():
            hits.extend(scanner.scan_file(path))
    return hits


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    base = _state.get("base")
    if base is None:
        return
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler.close()
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller scans
        return
    hits = scan_session_logs(base)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        n = sum(1 for _ in base.rglob("*.log"))
        if hits:
            reporter.write_sep("=", "P8 log hygiene: what must never be logged was", red=True)
            for hit in hits[:50]:
                reporter.write_line(str(hit))
            if len(hits) > 50:
                reporter.write_line(f"... and {len(hits) - 50} more")
        else:
            reporter.write_line(f"P8 log hygiene: {n} logs scanned at DEBUG, nothing found")
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
