"""Scale-out settings: embedded by default, NATS mode refused on SQLite, the bus always
authenticated, a node name and a per-node recording path."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from config.settings import ConfigError, Settings, load_settings
from monitor.cli import main

BUS = {"url": "nats://127.0.0.1:4222", "credentials": {"user": "cw", "password": "s3cret"}}


def test_default_is_embedded() -> None:
    s = Settings()
    assert not s.bus.enabled and not s.asr.remote
    s.check_bus_mode()  # nothing to refuse
    assert s.node.resolved_name == socket.gethostname().split(".")[0]
    assert s.recordings_dir == Path("data") / "recordings"


def test_nats_mode_on_sqlite_is_a_clear_error() -> None:
    s = load_settings(env={}, bus=BUS)
    with pytest.raises(ConfigError, match="NATS mode needs one PostgreSQL") as info:
        s.check_bus_mode()
    assert "storage.url" in str(info.value) and "CALLWATCH_STORAGE__URL" in str(info.value)
    load_settings(env={}, bus=BUS, storage={"url": "postgresql+psycopg://u@h/cw"}).check_bus_mode()


def test_serve_refuses_nats_mode_on_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"CALLWATCH_BUS__URL": BUS["url"], "CALLWATCH_BUS__CREDENTIALS__USER": "cw",
           "CALLWATCH_BUS__CREDENTIALS__PASSWORD": "s3cret"}  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        rc = main(["serve", "--data-dir", str(tmp_path), "--port", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "NATS mode needs one PostgreSQL" in err
    assert "s3cret" not in err
    assert not (tmp_path / "callwatch.db").exists()  # refused before anything was created


def test_the_bus_is_always_authenticated() -> None:
    with pytest.raises(ConfigError, match="always authenticated"):
        load_settings(env={}, bus={"url": "nats://127.0.0.1:4222"})
    with pytest.raises(ConfigError, match="user and password go together"):
        load_settings(env={}, bus={"url": "nats://x", "credentials": {"user": "cw"}})
    with pytest.raises(ConfigError, match="one of"):
        load_settings(env={}, bus={"url": "nats://x", "credentials": {
            "user": "cw", "password": "p", "creds_file": "/x.creds"}})  # fmt: skip


def test_remote_asr_needs_the_bus() -> None:
    with pytest.raises(ConfigError, match="asr.remote = true needs bus.url"):
        load_settings(env={}, asr={"remote": True})
    assert load_settings(env={}, asr={"remote": True}, bus=BUS).asr.remote


def test_node_name_and_recordings_dir_per_node(tmp_path: Path) -> None:
    s = load_settings(env={"CALLWATCH_NODE__NAME": "gw-2",
                           "CALLWATCH_NODE__RECORDINGS_DIR": str(tmp_path / "rec")})  # fmt: skip
    assert s.node.resolved_name == "gw-2"
    assert s.recordings_dir == tmp_path / "rec"
    with pytest.raises(ConfigError, match="node.name"):
        load_settings(env={}, node={"name": "gw 2; rm"})
