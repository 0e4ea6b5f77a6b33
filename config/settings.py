"""The one settings object: schema, defaults, loading from TOML + environment, validation.

Settings are loaded once by the composition root (`load_settings`) and passed down as typed
slices (`settings.gateway`, `settings.asr`, ...). Nothing else reads the environment.

Sources, later ones win:
1. the defaults in this schema (mirrored, with comments, in `config/defaults.toml`);
2. a TOML file (`--config PATH` or `CALLWATCH_CONFIG`);
3. environment variables `CALLWATCH_<SECTION>__<KEY>`, e.g. `CALLWATCH_STORAGE__URL`,
   `CALLWATCH_ASR__MODEL=tiny.en`, `CALLWATCH_GATEWAY__PORT=9000`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    model_validator,
)

from asr.settings import AsrSettings, VadSettings
from audio_quality.settings import QualitySettings
from config.policy import (
    GRADES,
    AlertRuleSettings,
    AlertSettings,
    ComplianceSettings,
    GradingSettings,
    LoadSettings,
    PrivacySettings,
    RetentionRule,
    RetentionSettings,
    WebhookSettings,
    WebhookTarget,
)
from config.transport import (
    ApiSettings,
    BusCredentials,
    BusSettings,
    GatewaySettings,
    NodeSettings,
    RecordingSettings,
    SwitchAuthSettings,
)
from storage.settings import StorageSettings

#: What other modules import from here: the sections are defined in config.transport,
#: config.policy and the lower packages, and composed here.
__all__ = [
    "AlertRuleSettings",
    "AlertSettings",
    "ApiSettings",
    "AsrSettings",
    "BusCredentials",
    "BusSettings",
    "ComplianceSettings",
    "ConfigError",
    "ENV_PREFIX",
    "GRADES",
    "GatewaySettings",
    "GradingSettings",
    "LoadSettings",
    "NodeSettings",
    "PrivacySettings",
    "QualitySettings",
    "RecordingSettings",
    "RetentionRule",
    "RetentionSettings",
    "Settings",
    "StorageSettings",
    "SwitchAuthSettings",
    "VadSettings",
    "WebhookSettings",
    "WebhookTarget",
    "is_loopback",
    "load_settings",
]

ENV_PREFIX = "CALLWATCH_"


class ConfigError(Exception):
    """Settings could not be loaded; the message says which key is wrong and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(_Section):
    """Everything callwatch can be told; see config/defaults.toml for the commented version."""

    data_dir: Path = Path("data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: `json` for log shippers, `text` for people.
    log_format: Literal["json", "text"] = "text"
    gateway: GatewaySettings = GatewaySettings()
    switch_auth: SwitchAuthSettings = SwitchAuthSettings()
    recording: RecordingSettings = RecordingSettings()
    vad: VadSettings = VadSettings()
    asr: AsrSettings = AsrSettings()
    load: LoadSettings = LoadSettings()
    storage: StorageSettings = StorageSettings()
    quality: QualitySettings = QualitySettings()
    compliance: ComplianceSettings = ComplianceSettings()
    grading: GradingSettings = GradingSettings()
    api: ApiSettings = ApiSettings()
    alerts: AlertSettings = AlertSettings()
    webhooks: WebhookSettings = WebhookSettings()
    retention: RetentionSettings = RetentionSettings()
    privacy: PrivacySettings = PrivacySettings()
    bus: BusSettings = BusSettings()
    node: NodeSettings = NodeSettings()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.asr.remote and not self.bus.enabled:
            raise ValueError("asr.remote = true needs bus.url (the NATS the ASR workers serve)")
        if self.vad.pad_ms >= self.vad.end_silence_ms:
            raise ValueError(
                f"vad.pad_ms ({self.vad.pad_ms}) must be smaller than "
                f"vad.end_silence_ms ({self.vad.end_silence_ms})"
            )
        a = self.switch_auth
        creds = a.audiofork_tokens or a.audiofork_basic or a.twilio_auth_token
        exposed = not is_loopback(self.gateway.host) and not a.allow_unauthenticated
        if exposed and (not (creds or a.audiohook_api_keys) or a.require is False):
            raise ValueError(
                f"gateway.host = {self.gateway.host!r} is reachable beyond this machine but "
                "switches could connect without credentials: set [switch_auth] audiofork_tokens"
                " / twilio_auth_token / audiohook_api_keys (and leave require unset), or set "
                "switch_auth.allow_unauthenticated = true to accept that"
            )
        return self

    @property
    def switch_auth_required(self) -> bool:
        """Whether a protocol without credentials refuses connections (see SwitchAuthSettings)."""
        a = self.switch_auth
        if a.require is not None:
            return a.require
        return not (a.allow_unauthenticated or is_loopback(self.gateway.host))

    @property
    def database_url(self) -> str:
        return self.storage.url or f"sqlite:///{(self.data_dir / 'callwatch.db').resolve()}"

    @property
    def recordings_dir(self) -> Path:
        return self.node.recordings_dir or self.data_dir / "recordings"

    def check_bus_mode(self) -> None:
        """Refuse a gateway node in NATS mode on SQLite (called by `callwatch serve`): nodes
        share one database, which SQLite cannot be across machines. ASR workers need none."""
        if self.bus.enabled and not self.database_url.startswith("postgresql"):
            raise ConfigError(
                f"bus.url is set (NATS mode, several nodes) but the database is "
                f"{self.database_url.split(':', 1)[0]}: NATS mode needs one PostgreSQL shared "
                'by every node. Set storage.url = "postgresql+psycopg://user@host/callwatch" '
                "(or CALLWATCH_STORAGE__URL), or unset bus.url for the single-box mode"
            )

    @property
    def model_cache_dir(self) -> Path:
        return self.asr.cache_dir or self.data_dir / "models"


def is_loopback(host: str) -> bool:
    """Whether `host` binds only this machine ("" and "0.0.0.0" are every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Turn `CALLWATCH_SECTION__KEY=value` into nested dicts (values parsed by pydantic)."""
    tree: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "CALLWATCH_CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            # The environment is shared (CALLWATCH_TEST_PG_URL, CALLWATCH_HOME...): only names
            # of our sections count; inside a section, unknown keys are still errors.
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if value.startswith(("[", "(")) and path[-1] == "subprotocols":
            node[path[-1]] = [p.strip() for p in value.strip("[]()").split(",") if p.strip()]
        elif value.startswith(("[", "{")):
            try:  # lists and tables (switch_auth keys, leg maps) as JSON
                node[path[-1]] = json.loads(value)
            except json.JSONDecodeError:
                node[path[-1]] = value
        else:
            node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings once: defaults, then the TOML file, then the environment, then
    keyword overrides (used by the CLI and tests). Raises `ConfigError` with a readable message.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = path or env.get("CALLWATCH_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found: pass an existing TOML file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(env))
    data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        ]
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
