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

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from audio_quality.settings import QualitySettings

ENV_PREFIX = "CALLWATCH_"


class ConfigError(Exception):
    """Settings could not be loaded; the message says which key is wrong and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySettings(_Section):
    """The websocket endpoint that switches stream call audio into."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    #: Largest websocket message accepted; bigger ones close the call with 1009.
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    #: Concurrent calls; more are refused with close code 1013 (try again later).
    max_calls: int = Field(default=200, ge=1)
    #: Seconds a new connection may take to send its metadata frame.
    metadata_timeout_s: float = Field(default=10.0, gt=0)
    #: Seconds without any message before the call is finalised as interrupted.
    idle_timeout_s: float = Field(default=30.0, gt=0)
    #: Seconds without audio while not paused (every switch streams continuously; a FreeSWITCH
    #: pause must be marked with a `{"event":"paused"}` text frame) before the call is
    #: finalised as interrupted ("stalled"). Paused calls fall back to `idle_timeout_s`.
    stall_timeout_s: float = Field(default=5.0, gt=0)
    #: Audio faster than this many times real time (after `audio_burst_s` of head start) closes
    #: the call with 1008; 0 disables the check.
    max_audio_rate: float = Field(default=10.0, ge=0)
    audio_burst_s: float = Field(default=20.0, ge=0)
    #: Per-party reorder window: held audio spanning more than this fills the hole with silence.
    reorder_window_ms: int = Field(default=200, ge=20, le=5000)
    #: A party this far behind the others (track stopped, leg not connected) gets silence.
    max_party_lag_ms: int = Field(default=1000, ge=100, le=30000)
    #: Subprotocols echoed when a switch offers them (PROTOCOLS.md §1, §3).
    subprotocols: tuple[str, ...] = ("audio.drachtio.org", "audio.jambonz.org")
    #: TLS for the websocket port (wss://) when both are set: PEM certificate chain and key.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: Asterisk AudioSocket (raw TCP) port; 0 = any free port, -1 = off.
    audiosocket_port: int = Field(default=8766, ge=-1, le=65535)
    #: Call rate of AudioSocket calls: kind 0x10 (8000) and 0x12 (16000) go in as they are,
    #: the other higher-rate kinds are resampled to it.
    audiosocket_sample_rate: Literal[8000, 16000] = 8000
    #: AudioSocket kind byte -> rate overrides (e.g. {"17" = 16000} for the interim 0x11).
    audiosocket_kind_rates: dict[int, int] = Field(default_factory=dict)
    #: Explicit leg pairing: leg UUID -> "call-key:customer" / "call-key:agent".
    audiosocket_legs: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_tls(self) -> GatewaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("gateway.tls_cert_file and gateway.tls_key_file go together")
        return self


class SwitchAuthSettings(_Section):
    """Credentials switches must present (per protocol). A protocol with nothing configured
    accepts unauthenticated connections (logged at start) unless `require` is true."""

    #: Refuse every connection of a protocol that has no credentials configured.
    require: bool = False
    #: Audio fork / jambonz: `Authorization: Bearer <token>` ...
    audiofork_tokens: tuple[SecretStr, ...] = ()
    #: ... or `Authorization: Basic` with one of these "user:password" pairs.
    audiofork_basic: tuple[SecretStr, ...] = ()
    #: Twilio account auth token: `X-Twilio-Signature` is checked when set.
    twilio_auth_token: SecretStr | None = None
    #: The public base URL Twilio dials (e.g. "wss://qa.example.com"); the signature covers it.
    #: Empty: wss://<Host header><path>.
    twilio_public_url: str = ""
    #: AudioHook API key -> base64 client secret ("" = that key may send unsigned requests).
    audiohook_api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    #: Networks AudioSocket peers may connect from.
    audiosocket_allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")


class RecordingSettings(_Section):
    """Per-call recordings on disk."""

    #: Audio is handed to the OS at least this often, so a crash loses at most this much.
    flush_interval_s: float = Field(default=0.5, gt=0, le=1.0)
    #: fsync after each flush too (survives power loss, costs IOPS).
    fsync: bool = False


class VadSettings(_Section):
    """Utterance segmentation for ASR (not for audio-quality metrics)."""

    #: webrtcvad aggressiveness 0..3.
    aggressiveness: int = Field(default=2, ge=0, le=3)
    frame_ms: Literal[10, 20, 30] = 30
    #: Speech must last this long to open an utterance.
    min_speech_ms: int = Field(default=150, ge=0)
    #: Silence that closes an utterance.
    end_silence_ms: int = Field(default=500, ge=60)
    #: Audio kept before the detected start and after the end.
    pad_ms: int = Field(default=200, ge=0)
    #: Cap: an utterance longer than this is cut (Whisper's window is 30 s).
    max_utterance_s: float = Field(default=15.0, ge=1.0, le=29.0)
    #: Utterances shorter than this (voiced part) are dropped as clicks and breaths.
    min_utterance_ms: int = Field(default=300, ge=0)


class AsrSettings(_Section):
    """Speech recognition: which model, where, and how many workers."""

    #: A directory, a bundled model (`base`, `tiny.en`) or any faster-whisper model name.
    model: str = "base"
    #: `auto` detects per utterance; `zh` or `en` forces the language.
    language: Literal["auto", "zh", "en"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: `auto` = int8 on CPU, float16 on GPU.
    compute_type: str = "auto"
    #: Worker processes, each holding one copy of the model shared by all calls.
    workers: int = Field(default=0, ge=0)  # 0 = one per CPU core
    #: CPU threads inside each worker.
    cpu_threads: int = Field(default=1, ge=1)
    #: Utterances waiting for ASR; when full the oldest waiting utterance is shed (counted).
    queue_size: int = Field(default=256, ge=1)
    #: Utterances handed to a worker in one batch. On CPU 1 is best (a batch costs as much as
    #: its utterances one by one, and every result waits for the whole batch); GPUs gain from 4-8.
    batch_size: int = Field(default=1, ge=1)
    beam_size: int = Field(default=1, ge=1)
    #: Opt-in speed-up: encode a short utterance in a window of its length plus this margin
    #: instead of Whisper's padded 30 s (0 = always 30 s, the default). 10 s costs 2.5x less
    #: CPU; corpus WER/CER move by <= 0.3 pt, but single Mandarin calls lost up to 6 pt CER
    #: against the full window, so accuracy stays the default. See asr/engine.py.
    window_margin_s: float = Field(default=0.0, ge=0.0, le=30.0)
    #: Normalise Mandarin output to Simplified characters.
    simplified_chinese: bool = True
    #: Where joined bundled models are cached (default: <data_dir>/models).
    cache_dir: Path | None = None
    #: Refuse hub downloads (also honoured: HF_HUB_OFFLINE=1).
    offline: bool = False


class StorageSettings(_Section):
    """The SQL database and where recordings live."""

    #: SQLAlchemy URL; default: SQLite file `<data_dir>/callwatch.db`.
    url: str | None = None
    #: SQLite `synchronous` pragma under WAL (FULL survives power loss too).
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    #: Group commit: one transaction takes everything waiting, up to this many records ...
    batch_size: int = Field(default=200, ge=1)
    #: ... and the writer pauses this long after a commit so a burst shares the next one.
    group_commit_s: float = Field(default=0.02, ge=0, le=1.0)
    #: Events waiting for the writer; audio never goes through this queue.
    queue_size: int = Field(default=10_000, ge=10)


class ComplianceSettings(_Section):
    """Scripted-phrase checks: which scripts, and whether to run them."""

    enabled: bool = True
    #: A directory of compliance script TOML files (default: the shipped `config/scripts/`).
    scripts_dir: Path | None = None


class GradingSettings(_Section):
    """How the audio-quality and compliance scores (0-100) make the call's grade."""

    #: Share of the audio-quality score in the call score; the rest is compliance.
    quality_weight: float = Field(default=0.4, ge=0.0, le=1.0)
    excellent: float = Field(default=90.0, ge=0, le=100)
    good: float = Field(default=80.0, ge=0, le=100)
    passing: float = Field(default=60.0, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> GradingSettings:
        if not self.excellent >= self.good >= self.passing:
            raise ValueError("grading thresholds must satisfy excellent >= good >= passing")
        return self


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
    storage: StorageSettings = StorageSettings()
    quality: QualitySettings = QualitySettings()
    compliance: ComplianceSettings = ComplianceSettings()
    grading: GradingSettings = GradingSettings()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.vad.pad_ms >= self.vad.end_silence_ms:
            raise ValueError(
                f"vad.pad_ms ({self.vad.pad_ms}) must be smaller than "
                f"vad.end_silence_ms ({self.vad.end_silence_ms})"
            )
        return self

    @property
    def database_url(self) -> str:
        return self.storage.url or f"sqlite:///{(self.data_dir / 'callwatch.db').resolve()}"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def model_cache_dir(self) -> Path:
        return self.asr.cache_dir or self.data_dir / "models"


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
