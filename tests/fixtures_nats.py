"""NATS fixtures for the scale-out tests (a pytest plugin registered in tests/conftest.py).

* `nats_server` - the shared test server that scripts/test starts (scripts/nats-test-server),
  named by `CALLWATCH_TEST_NATS_URL` (`nats://user:password@127.0.0.1:port`): a `NatsEndpoint`
  with the URL and the credentials apart. Without that variable the test is skipped locally
  and fails under `CI=true`, so CI can never pass by silently not testing the bus.
* `private_nats` - a nats-server of the test's own (JetStream, authenticated, loopback, store
  under `tmp_path`) that the test may stop, kill and start again on the same port: for
  restart tests, which must not disturb the shared server.

Test modules read only fixtures; the environment is read here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

NATS_URL_ENV = "CALLWATCH_TEST_NATS_URL"


@dataclass(frozen=True)
class NatsEndpoint:
    """Where a test NATS server listens and how to log in to it."""

    url: str  # nats://127.0.0.1:PORT, without credentials
    user: str
    password: str

    def settings(self, **bus: object) -> dict[str, object]:
        """The `[bus]` settings section for this server (extra keys override)."""
        out: dict[str, object] = {
            "url": self.url,
            "credentials": {"user": self.user, "password": self.password},
        }
        out.update(bus)
        return out


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def nats_server() -> NatsEndpoint:
    """The shared NATS test server (JetStream on, user/password auth)."""
    raw = os.environ.get(NATS_URL_ENV)
    if not raw:
        _missing(
            f"{NATS_URL_ENV} is not set: scale-out tests need a NATS server. scripts/test starts "
            f"one; by hand: export {NATS_URL_ENV}=$(scripts/nats-test-server start)"
        )
    assert raw is not None
    parts = urlsplit(raw)
    return NatsEndpoint(
        url=f"nats://{parts.hostname}:{parts.port}",
        user=parts.username or "",
        password=parts.password or "",
    )


def nats_binary() -> str:
    found = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None
    )
    if found is None:
        _missing(
            "nats-server is not installed: scripts/test installs it (apt-get install nats-server)"
        )
    assert found is not None
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateNats:
    """One nats-server process of a test's own; `stop()` / `kill()` / `start()` keep the port,
    the password and the JetStream store, as a restarted production server would."""

    def __init__(self, binary: str, base: Path) -> None:
        self._binary = binary
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.endpoint = NatsEndpoint(
            f"nats://127.0.0.1:{self.port}", "callwatch-test", secrets.token_hex(16)
        )
        self.log = base / "server.log"
        self._conf = base / "nats.conf"
        self._conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\nmax_payload: 2MB\n'
            f'jetstream {{ store_dir: "{base / "js"}", max_memory_store: 64MB, '
            "max_file_store: 256MB }\n"
            f'authorization {{ users = [ {{ user: "{self.endpoint.user}", '
            f'password: "{self.endpoint.password}" }} ] }}\n',
            encoding="utf-8",
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._proc is None or self._proc.poll() is not None, "already running"
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, "-c", str(self._conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self._proc.poll() is not None:
                    tail = self.log.read_text()[-2000:]
                    raise RuntimeError(f"nats-server exited: {tail}") from None
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on {self.port}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    """A started nats-server of this test's own, stopped afterwards."""
    server = PrivateNats(nats_binary(), tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()
