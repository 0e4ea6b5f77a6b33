"""Run a real `callwatch serve` as a child process: for tests, benchmarks and load runs.

The server starts on port 0 with its own data directory, exactly as an operator runs it; its
URL is read from its log line `gateway listening on ws://…`. It runs in its own session, so
`stop` can also reap ASR workers a crash left behind. Also the benchmarks' shared plumbing:
`/proc` CPU readings and stamped progress lines.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_CACHE = REPO_ROOT / ".cache" / "models"
LISTEN_RE = re.compile(r"gateway listening on (wss?://\S+)")
AUDIOSOCKET_RE = re.compile(r"audiosocket listening on tcp://(\S+):(\d+)")
#: When this process imported the harness: progress lines count seconds from it.
_STARTED = time.monotonic()


def elapsed_s() -> float:
    """Seconds since the benchmark (this process) started."""
    return time.monotonic() - _STARTED


def progress(msg: str) -> None:
    """A progress line on stderr, stamped with the seconds since the benchmark started."""
    print(f"[{elapsed_s():6.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclass
class ServerProcess:
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    audiosocket: tuple[str, int] | None = None  # (host, port) when the AudioSocket port is on

    @property
    def db_path(self) -> Path:
        return self.data_dir / "callwatch.db"

    def start(self, timeout_s: float = 180.0) -> None:
        """Start and wait for the gateway to listen; raise with the log tail if it fails."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        offset = self.log_path.stat().st_size
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "monitor.cli",
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    "0",
                ],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            if m := LISTEN_RE.search(text):
                self.url = m.group(1)
                if a := AUDIOSOCKET_RE.search(text):
                    self.audiosocket = (a.group(1), int(a.group(2)))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"server did not start in {timeout_s:.0f} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL the server process only, as a crash would."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM, wait, then reap whatever is left of the process group."""
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
        return self.proc.returncode


def server_env(**overrides: str) -> dict[str, str]:
    """The environment for a local server: shared model cache, offline, 2 ASR workers."""
    env = dict(os.environ)
    env.update(
        {
            "CALLWATCH_ASR__CACHE_DIR": str(MODEL_CACHE),
            "CALLWATCH_LOG_FORMAT": "text",
            # The HTTP API on a free port, so harness servers never collide on [api] port 8080.
            "CALLWATCH_API__PORT": "0",
            "CALLWATCH_GATEWAY__AUDIOSOCKET_PORT": "0",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(session id, CPU seconds used so far, all threads) of a process (Linux /proc); None
    when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    cols = text[text.rindex(")") + 2 :].split()
    return int(cols[3]), (int(cols[11]) + int(cols[12])) / os.sysconf("SC_CLK_TCK")


def session_cpu_s(sid: int) -> dict[int, float]:
    """CPU seconds used so far by each live process of session `sid`, by pid: a server
    started by `ServerProcess` runs in its own session, with its ASR workers."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) and stat[0] == sid:
            out[int(entry.name)] = stat[1]
    return out
