"""A real `callwatch serve` process for end-to-end tests (pytest plugin).

Built on `ivr_sim.harness.ServerProcess`, adding database reads for the assertions. The joined
bundled model is cached in <repo>/.cache/models across runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ivr_sim.harness import MODEL_CACHE, REPO_ROOT, ServerProcess, server_env
from storage.repository import CallDetail, Repository

__all__ = ["MODEL_CACHE", "REPO_ROOT", "LiveServer", "ServerProcess", "make_server"]


@dataclass
class LiveServer(ServerProcess):
    _repo: Repository | None = field(default=None, repr=False)

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = Repository.from_url(f"sqlite:///{self.db_path}")
        return self._repo

    def kill9(self) -> None:
        super().kill9()
        self._close_repo()

    def stop(self) -> int:
        code = super().stop()
        self._close_repo()
        return code

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
            if (
                call is not None
                and call.status != "active"
                and any(t.kind == "finalised" for t in call.trace)
            ):
                return call
            time.sleep(0.2)
        raise TimeoutError(f"call {external_id} not finalised: {call}\n{self.log()[-3000:]}")


#: `callwatch serve` without the speech model: utterances are answered at once by the scripted
#: transcriber (asr/scripted.py). For tests of the process (transport, limits, logs, crash
#: and restart, files) that need "some transcript", not recognised words. Like the in-process
#: seam (tests/inprocess_support.py), it leaves out what such tests do not look at and what
#: costs most CPU besides the model: DNSMOS (~2 s to load, ~0.5 s of CPU per second of audio
#: streamed faster than real time) and the sentence encoder (~2 s to load). A test that needs
#: them passes `CALLWATCH_QUALITY__DNSMOS__ENABLED="true"` / `CALLWATCH_COMPLIANCE__SEMANTIC=
#: "true"`; the real-model servers keep both (the end-to-end proofs).
SCRIPTED = {
    "CALLWATCH_ASR__ENGINE": "scripted",
    "CALLWATCH_QUALITY__DNSMOS__ENABLED": "false",
    "CALLWATCH_COMPLIANCE__SEMANTIC": "false",
}


def make_server(tmp: Path, *, scripted: bool = False, **env: str) -> LiveServer:
    """A `callwatch serve` (not started) with its data under `tmp`: two Whisper workers, or
    with `scripted` the scripted transcriber and no model."""
    tmp.mkdir(parents=True, exist_ok=True)
    base = {"CALLWATCH_ASR__WORKERS": "2", "CALLWATCH_API__PORT": "0"}
    return LiveServer(
        data_dir=tmp / "data",
        # API on a free port: parallel servers (and other work on the machine) never collide.
        env=server_env(**{**base, **(SCRIPTED if scripted else {}), **env}),
        log_path=tmp / "server.log",
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A served callwatch with the real Whisper model, one per test module."""
    srv = make_server(tmp_path_factory.mktemp("server"), CALLWATCH_GATEWAY__METADATA_TIMEOUT_S="2")
    srv.start()
    yield srv
    srv.stop()
