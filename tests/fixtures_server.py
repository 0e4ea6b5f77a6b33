"""A real `callwatch serve` process for end-to-end tests (pytest plugin).

The server runs as a subprocess on port 0 with its own data directory, exactly as an operator
runs it, so tests exercise the real gateway, worker processes, SQLite file and recordings.
The joined bundled model is cached in <repo>/.cache/models across runs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storage.repository import CallDetail, Repository

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_CACHE = REPO_ROOT / ".cache" / "models"
LISTEN_RE = re.compile(r"listening on (ws://\S+)")


@dataclass
class ServerProcess:
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    _repo: Repository | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 180.0) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            offset = self.log_path.stat().st_size
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor.cli", "serve", "--data-dir", str(self.data_dir),
                 "--port", "0"],
                cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            if m := LISTEN_RE.search(text):
                self.url = m.group(1)
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"server did not start in {timeout_s} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL the server process only, as a crash would (its workers are orphaned)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_repo()

    def stop(self) -> int:
        """SIGTERM, wait, and clean up whatever is left of the process group."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._close_repo()
        return self.proc.returncode

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = Repository.from_url(f"sqlite:///{self.data_dir / 'callwatch.db'}")
        return self._repo

    def _close_repo(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def wait_call(self, external_id: str, timeout_s: float = 180.0) -> CallDetail:
        """Poll until the call with this switch id is finalised (not 'active')."""
        deadline = time.monotonic() + timeout_s
        call = None
        while time.monotonic() < deadline:
            call = self.repo.get_call(external_id)
            if call is not None and call.status != "active" and any(
                t.kind == "finalised" for t in call.trace
            ):
                return call
            time.sleep(0.2)
        raise TimeoutError(f"call {external_id} not finalised: {call}\n{self.log()[-3000:]}")


def make_server(tmp: Path, **env: str) -> ServerProcess:
    full = dict(os.environ)
    full.update({
        "CALLWATCH_ASR__CACHE_DIR": str(MODEL_CACHE),
        "CALLWATCH_ASR__WORKERS": "2",
        "CALLWATCH_LOG_FORMAT": "text",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    full.update(env)
    tmp.mkdir(parents=True, exist_ok=True)
    return ServerProcess(data_dir=tmp / "data", env=full, log_path=tmp / "server.log")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = make_server(tmp_path_factory.mktemp("server"), CALLWATCH_GATEWAY__METADATA_TIMEOUT_S="2")
    srv.start()
    yield srv
    srv.stop()
