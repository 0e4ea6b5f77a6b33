"""Helpers for the scale-out tests: worker processes with their output watched line by line."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.fixtures_asr import MODEL_CACHE_DIR, REPO_ROOT
from tests.fixtures_logs import session_log_path
from tests.fixtures_nats import NatsEndpoint


def bus_env(endpoint: NatsEndpoint, *, password: str | None = None) -> dict[str, str]:
    """The environment of a callwatch process on this bus (the worktree's code first)."""
    # Only the log level crosses (DEBUG in a test session: RELIABILITY.md P8).
    keep = ("CALLWATCH_LOG_LEVEL",)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_") or k in keep}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        CALLWATCH_BUS__URL=endpoint.url,
        CALLWATCH_BUS__CREDENTIALS__USER=endpoint.user,
        CALLWATCH_BUS__CREDENTIALS__PASSWORD=endpoint.password if password is None else password,
        CALLWATCH_ASR__CACHE_DIR=str(MODEL_CACHE_DIR),
    )
    return env


class Proc:
    """A child process whose combined output is read by a thread into a queue of lines, and
    copied to a session log (`tests.fixtures_logs`: scanned for secrets when the run ends)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            args,
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.log_path = session_log_path("proc")
        self._q: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            for line in self.popen.stdout:
                log.write(line)
                self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, text: str, timeout_s: float = 60.0) -> str:
        """The first line (from now) containing `text`; AssertionError with the output if none."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; output:\n" + "\n".join(self.lines[-40:]))

    def saw(self, text: str) -> bool:
        """Whether a line with `text` has arrived by now (does not wait)."""
        self.output()
        return any(text in line for line in self.lines)

    def output(self) -> str:
        while True:
            try:
                line = self._q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(5)  # the child is gone: its output ends
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@contextmanager
def asr_workers(
    endpoint: NatsEndpoint, prefix: str, n: int, *, real: bool, ready_s: float = 180.0
) -> Iterator[Callable[[], list[Proc]]]:
    """`n` ASR worker processes started at once, stopped on exit. What it yields waits until
    all are ready on the bus (call it once other processes were started meanwhile).
    `real` = the product's `callwatch asr-worker` with the bundled Whisper model (one model
    process each), else `tests.scripted_asr_worker` (text `W heard <samples> samples`, a
    function of the audio only, whichever worker answers)."""
    env = bus_env(endpoint)
    env.update(CALLWATCH_BUS__PREFIX=prefix, CALLWATCH_ASR__WORKERS="1")
    args = (
        [sys.executable, "-m", "monitor.cli", "asr-worker"]
        if real
        else [sys.executable, "-m", "tests.scripted_asr_worker", "W", "0.02"]
    )
    procs: list[Proc] = []
    try:
        procs.extend(Proc(args, env) for _ in range(n))

        def ready() -> list[Proc]:
            for proc in procs:  # loading in parallel: the slowest decides
                proc.wait_for("asr-worker ready", timeout_s=ready_s)
            return procs

        yield ready
    finally:
        for proc in procs:
            proc.stop()


@contextmanager
def scripted_worker(
    endpoint: NatsEndpoint, name: str, delay_s: float, *, prefix: str | None = None
) -> Iterator[Proc]:
    """A started `tests.scripted_asr_worker` process (ready on the bus), stopped afterwards."""
    env = bus_env(endpoint)
    if prefix is not None:
        env["CALLWATCH_BUS__PREFIX"] = prefix
    proc = Proc([sys.executable, "-m", "tests.scripted_asr_worker", name, str(delay_s)], env)
    try:
        proc.wait_for("asr-worker ready", timeout_s=30)
        yield proc
    finally:
        proc.stop()
