"""Settings: defaults file in sync with the schema, layering, and readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConfigError, Settings, load_settings

DEFAULTS = Path(__file__).resolve().parents[1] / "config" / "defaults.toml"


def test_shipped_defaults_file_matches_the_schema() -> None:
    assert load_settings(DEFAULTS, env={}) == Settings()


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "cw.toml"
    cfg.write_text(
        '[gateway]\nport = 9000\nhost = "0.0.0.0"\n[asr]\nmodel = "tiny.en"\n'
        '[switch_auth]\naudiofork_tokens = ["t0k"]\n'
    )
    env = {
        "CALLWATCH_GATEWAY__PORT": "9100",
        "CALLWATCH_STORAGE__URL": "sqlite:///x.db",
        "CALLWATCH_GATEWAY__SUBPROTOCOLS": "[a.b, c.d]",
        "OTHER": "ignored",
        "CALLWATCH_TEST_PG_URL": "not a setting",
    }
    s = load_settings(cfg, env=env, asr={"language": "zh"})
    assert (s.gateway.host, s.gateway.port) == ("0.0.0.0", 9100)
    assert s.gateway.subprotocols == ("a.b", "c.d")
    assert (s.asr.model, s.asr.language) == ("tiny.en", "zh")
    assert s.database_url == "sqlite:///x.db"


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'callwatch.db'}"
    assert s.model_cache_dir == tmp_path / "models"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CALLWATCH_GATEWAY__PORT": "http"}, "gateway.port"),
        ({"CALLWATCH_ASR__LANGUAGE": "fr"}, "asr.language"),
        ({"CALLWATCH_GATEWAY__PROT": "1"}, "gateway.prot"),
        ({"CALLWATCH_VAD__PAD_MS": "900"}, "vad.pad_ms"),
    ],
)
def test_invalid_settings_name_the_key(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert words in str(err.value)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, env={})


def test_webhook_targets_from_the_environment_as_json() -> None:
    """A container deployment sets its receivers without a TOML file; a bad one is named."""
    target = '{"name": "crm", "url": "https://crm.example/hook", "secret": "0123456789abcdef0123"}'
    s = load_settings(env={"CALLWATCH_WEBHOOKS__TARGETS": f"[{target}]"})
    assert [(t.name, t.url, t.min_severity) for t in s.webhooks.targets] == [
        ("crm", "https://crm.example/hook", "info")
    ]
    with pytest.raises(ConfigError, match="webhooks.targets.0.secret"):
        load_settings(env={"CALLWATCH_WEBHOOKS__TARGETS": f"[{target.replace('0123456789', '')}]"})


@pytest.mark.parametrize("host", ["0.0.0.0", "", "10.1.2.3", "::", "gw.example.com"])
def test_public_gateway_without_switch_credentials_refuses_to_start(host: str) -> None:
    """Issue 17 item 2: beyond loopback, switches must authenticate unless explicitly allowed."""
    with pytest.raises(ConfigError, match="allow_unauthenticated"):
        load_settings(env={}, gateway={"host": host})
    with pytest.raises(ConfigError, match="allow_unauthenticated"):  # require=false: same
        load_settings(
            env={},
            gateway={"host": host},
            switch_auth={"require": False, "audiofork_tokens": ["t"]},
        )
    open_ = load_settings(
        env={}, gateway={"host": host}, switch_auth={"allow_unauthenticated": True}
    )
    assert not open_.switch_auth_required
    guarded = load_settings(env={}, gateway={"host": host}, switch_auth={"audiofork_tokens": ["t"]})
    assert guarded.switch_auth_required  # twilio/audiohook, with nothing configured, refuse


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_gateway_stays_open_by_default(host: str) -> None:
    s = load_settings(env={}, gateway={"host": host})
    assert not s.switch_auth_required
    assert load_settings(
        env={}, gateway={"host": host}, switch_auth={"require": True}
    ).switch_auth_required
