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
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from asr.settings import AsrSettings, VadSettings
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
    #: Largest silence gap one message may open (a Twilio `timestamp` or AudioHook `position`
    #: ahead of the audio received, an AudioHook `discarded` span); more closes the call 1008
    #: with the audio so far kept. Filled silence also counts against `max_audio_rate`.
    max_gap_s: float = Field(default=60.0, gt=0, le=3600)
    #: Total silence one call's messages may claim (gaps, discarded spans); more closes 1008.
    max_gap_total_s: float = Field(default=1800.0, gt=0, le=86400)
    #: Text frames (app messages, DTMF, marks) larger than this (as stored, JSON bytes) are
    #: counted in the call's media counts (`text_oversized`), not stored.
    max_text_bytes: int = Field(default=4096, ge=64)
    #: Text frames stored per second per call after a burst of `text_burst`; the excess is
    #: counted (`text_dropped`), not stored.
    max_text_rate: float = Field(default=10.0, gt=0)
    text_burst: int = Field(default=50, ge=1)
    #: Per-party reorder window: held audio spanning more than this fills the hole with silence.
    reorder_window_ms: int = Field(default=200, ge=20, le=5000)
    #: A party this far behind the others (track stopped, leg not connected) gets silence.
    max_party_lag_ms: int = Field(default=1000, ge=100, le=30000)
    #: The audio format of an audio fork (FreeSWITCH / jambonz / drachtio) whose metadata
    #: names none; per path, `/audiofork?rate=16000&channels=1` overrides these, and the
    #: metadata's own `sampleRate` / `channels` / `mixType` override both.
    default_sample_rate: Literal[8000, 16000] = 8000
    default_channels: Literal[1, 2] = 2
    #: Look at the first seconds of each fork's loud audio for signs that it is read in the
    #: wrong format (`audio_quality.format_check`): a warning, a trace entry, a board badge.
    format_check: bool = True
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
    refuses every connection when authentication is required - by default whenever the
    gateway listens beyond loopback - and accepts anyone (logged at start) otherwise."""

    #: Refuse every connection of a protocol that has no credentials configured. Unset: true
    #: unless `gateway.host` is a loopback address.
    require: bool | None = None
    #: Let a non-loopback gateway run without switch credentials (logged at CRITICAL on start).
    allow_unauthenticated: bool = False
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
    #: Encrypt finished recordings at rest (AES-256-GCM, docs/privacy.md).
    encrypt: bool = False
    #: The 32-byte key: a file holding it (raw, hex or base64) or the value itself
    #: (`CALLWATCH_RECORDING__ENCRYPTION_KEY`, hex or base64); one is needed when `encrypt`.
    encryption_key_file: Path | None = None
    encryption_key: SecretStr | None = None
    #: Older keys still accepted for reading, by key id (rotation: docs/privacy.md).
    old_key_files: tuple[Path, ...] = ()

    @model_validator(mode="after")
    def _check_key(self) -> RecordingSettings:
        if self.encrypt and self.encryption_key_file is None and self.encryption_key is None:
            raise ValueError(
                "recording.encrypt needs recording.encryption_key_file or "
                "CALLWATCH_RECORDING__ENCRYPTION_KEY (32 bytes, hex or base64)"
            )
        return self


class BusCredentials(_Section):
    """How this process logs in to NATS: a user and password, an nkey seed file, or a
    `.creds` file (JWT + nkey). The bus is always authenticated: one of them is required."""

    user: str | None = None
    #: Or `CALLWATCH_BUS__CREDENTIALS__PASSWORD`, so it stays out of the config file.
    password: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None

    @model_validator(mode="after")
    def _one_way(self) -> BusCredentials:
        ways = [
            self.user is not None or self.password is not None,
            self.nkey_seed_file is not None,
            self.creds_file is not None,
        ]
        if sum(ways) > 1:
            raise ValueError(
                "bus.credentials: give one of user + password, nkey_seed_file or creds_file"
            )
        if ways[0] and (not self.user or self.password is None):
            raise ValueError("bus.credentials: user and password go together")
        return self

    @property
    def given(self) -> bool:
        return self.user is not None or bool(self.nkey_seed_file or self.creds_file)


class BusSettings(_Section):
    """Scale-out (docs/scale-out.md): NATS with JetStream between gateway nodes, ASR workers
    and storage. Unset `url`: embedded mode, everything in this one process (the default)."""

    #: e.g. `nats://nats-1:4222` (several, comma-separated, for a cluster); `tls://` for TLS.
    url: str | None = None
    credentials: BusCredentials = BusCredentials()
    #: Events buffered in memory while NATS is unreachable; past it the oldest buffered are
    #: dropped, counted and logged (never silently) ...
    buffer_events: int = Field(default=20_000, ge=1)
    #: ... or past this many bytes of them.
    buffer_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    #: Largest message this process sends or accepts (NATS' default `max_payload` is 1 MB;
    #: a 15 s utterance is 480 kB of PCM16).
    max_message_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=8 * 1024 * 1024)
    #: Seconds between node heartbeats; a node silent for `node_ttl_s` is lost, and a
    #: surviving node closes its active calls as interrupted / node_lost.
    heartbeat_s: float = Field(default=2.0, gt=0.0, le=60.0)
    node_ttl_s: float = Field(default=10.0, gt=0.0, le=600.0)
    #: Subject prefix, stream and bucket names, so two deployments can share one NATS.
    prefix: str = Field(default="callwatch", pattern=r"^[A-Za-z0-9_-]+$")

    @model_validator(mode="after")
    def _check(self) -> BusSettings:
        if self.url is not None and not self.credentials.given:
            raise ValueError(
                "bus.url is set but bus.credentials is not: the bus is always authenticated; "
                "set [bus.credentials] user + password (CALLWATCH_BUS__CREDENTIALS__PASSWORD), "
                "nkey_seed_file or creds_file"
            )
        if self.node_ttl_s < 2 * self.heartbeat_s:
            raise ValueError("bus.node_ttl_s must be at least twice bus.heartbeat_s")
        return self

    @property
    def enabled(self) -> bool:
        return self.url is not None


class NodeSettings(_Section):
    """This process as one node of several (only matters with `bus.url`)."""

    #: Unique per node; empty = the host name. Calls are owned by the node that took them.
    name: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9._-]*$")
    #: Where this node writes recordings (default: <data_dir>/recordings). Point every node
    #: at shared storage (NFS, a mounted object store) for any node's API to play any call.
    recordings_dir: Path | None = None

    @property
    def resolved_name(self) -> str:
        return self.name or _hostname()


def _hostname() -> str:
    import socket

    return socket.gethostname().split(".")[0] or "node"


class LoadSettings(_Section):
    """Overload: when the box cannot keep up, how the operator is told and what gives way.

    Degradation order (monitor/runtime/load.py): 1. DNSMOS sampling is paused (each call's
    end-of-call window is still scored); 2. partial metrics; 3. ASR last, and ASR work is
    never dropped: utterances it cannot take live are transcribed later (late)."""

    #: Declared capacity in concurrent calls; more are refused with HTTP 503 + Retry-After,
    #: like `gateway.max_calls` (0 = none declared: only `gateway.max_calls` applies).
    capacity_calls: int = Field(default=0, ge=0)
    #: While overloaded, refuse new calls with 503 too (whatever the capacity).
    refuse_when_overloaded: bool = False
    #: Overloaded when the oldest utterance of a live call has waited this long for ASR, or
    #: ASR deferred one (its transcript will come late) ...
    overload_lag_s: float = Field(default=5.0, gt=0.0, le=600.0)
    #: ... and back to normal once the wait stays under half of that, with no deferral, this
    #: long.
    recover_s: float = Field(default=10.0, ge=0.0, le=3600.0)


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
    #: Match the scripts' intents by meaning (example utterances, a bundled sentence encoder:
    #: `monitor/qa/embedding.py`) besides their phrases; false = the phrases alone.
    semantic: bool = True


#: Call grades, best first.
GRADES = ("excellent", "good", "pass", "needs_improvement")
Grade = Literal["excellent", "good", "pass", "needs_improvement"]


class GradingSettings(_Section):
    """How the audio-quality and compliance scores (0-100) make the call's grade
    (`monitor.core.grading`)."""

    #: Share of the audio-quality score in the call score; the rest is compliance.
    quality_weight: float = Field(default=0.4, ge=0.0, le=1.0)
    excellent: float = Field(default=90.0, ge=0, le=100)
    good: float = Field(default=80.0, ge=0, le=100)
    passing: float = Field(default=60.0, ge=0, le=100)
    #: Caps: the best grade a call can get, whatever its score, when its compliance failed
    #: (below the script's pass score), something critical went wrong (a critical stage
    #: missed, a critical forbidden phrase), a required stage was missed (or heard outside
    #: its window), or any forbidden phrase was said. "excellent" switches a cap off.
    cap_compliance_failed: Grade = "needs_improvement"
    cap_critical: Grade = "needs_improvement"
    cap_missed_required: Grade = "needs_improvement"
    cap_forbidden: Grade = "pass"

    @model_validator(mode="after")
    def _ordered(self) -> GradingSettings:
        if not self.excellent >= self.good >= self.passing:
            raise ValueError("grading thresholds must satisfy excellent >= good >= passing")
        return self


class AlertRuleSettings(_Section):
    """Alert thresholds; every key can be overridden per queue under [alerts.queues.NAME].
    A limit of 0 switches its rule off."""

    #: Fixed limits: a completed call shorter than this (too short), a running call longer.
    min_duration_s: float = Field(default=0.0, ge=0)
    max_duration_s: float = Field(default=3600.0, ge=0)
    #: Learned limits from the queue's (and agent's) stored calls: median and MAD of log
    #: duration; bound = exp(median +/- k * 1.4826 * MAD).
    learned: bool = True
    learned_k: float = Field(default=3.0, gt=0)
    #: Fewest stored calls a queue (or agent in a queue) needs before its baseline is used.
    learned_min_samples: int = Field(default=30, ge=5)
    #: Silence between the parties (conversation tracker's dead air) this long alerts.
    dead_air_s: float = Field(default=15.0, ge=0)
    #: Poor audio for this long in a row (readings below the limits below) alerts.
    poor_audio_s: float = Field(default=20.0, ge=0)
    poor_snr_db: float = 10.0
    poor_clip_ratio: float = Field(default=0.01, ge=0, le=1)
    poor_dropout_ratio: float = Field(default=0.05, ge=0, le=1)
    #: Compliance misses and forbidden phrases alert from this finding severity up.
    compliance_min_severity: Literal["info", "minor", "major", "critical"] = "major"
    #: End-of-call quality findings alert from this severity up ("off" = never).
    quality_min_severity: Literal["minor", "major", "critical", "off"] = "critical"
    #: ASR falling behind: a transcript this late, or this many utterances shed in one call.
    asr_latency_s: float = Field(default=15.0, ge=0)
    asr_shed: int = Field(default=3, ge=0)
    #: Media stalled: no audio for this long (wall time) while the call is connected.
    media_stall_s: float = Field(default=5.0, ge=0)


class AlertSettings(AlertRuleSettings):
    """[alerts]: the alert engine. Per-queue overrides of any rule key:
    `[alerts.queues.billing]` `max_duration_s = 900`."""

    enabled: bool = True
    #: Running calls are checked this often (wall time) for duration, dead air and stalls.
    tick_s: float = Field(default=0.25, gt=0, le=5.0)
    #: Learned baselines: stored calls of the last `history_days`, at most `history_limit`
    #: (newest first), recomputed every `refresh_s` off the event loop.
    history_days: float = Field(default=30.0, gt=0)
    history_limit: int = Field(default=50_000, ge=100)
    refresh_s: float = Field(default=3600.0, ge=10)
    queues: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_queues(self) -> AlertSettings:
        for name in self.queues:
            try:
                self.for_queue(name)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(f"alerts.queues.{name}: {problems}") from None
        return self

    def for_queue(self, queue: str | None) -> AlertRuleSettings:
        """The rules of `queue`: the defaults with that queue's overrides."""
        base = {k: getattr(self, k) for k in AlertRuleSettings.model_fields}
        return AlertRuleSettings.model_validate(base | self.queues.get(queue or "", {}))


class WebhookTarget(_Section):
    """One receiver of signed alert webhooks ([[webhooks.targets]])."""

    name: str = Field(min_length=1, max_length=64)
    url: str = Field(pattern=r"^https?://")
    #: HMAC-SHA256 key; receivers verify the X-Callwatch-Signature header with it.
    secret: str = Field(min_length=16)
    #: Alerts below this severity are not sent to this target.
    min_severity: Literal["info", "warning", "critical"] = "info"
    #: Also send acknowledge / resolve changes.
    changes: bool = True


class WebhookSettings(_Section):
    """[webhooks]: delivery of alerts to HTTP receivers from the persisted outbox."""

    targets: tuple[WebhookTarget, ...] = ()
    timeout_s: float = Field(default=10.0, gt=0)
    #: Retries: first after `backoff_initial_s`, doubling up to `backoff_max_s`, each with up
    #: to +/- `jitter` of itself added at random; a delivery older than `give_up_after_s` fails.
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    jitter: float = Field(default=0.2, ge=0, le=1)
    give_up_after_s: float = Field(default=86_400.0, gt=0)
    #: Deliveries sent at once.
    concurrency: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _unique_names(self) -> WebhookSettings:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook target names must be unique, got {names}")
        return self


class RetentionRule(_Section):
    """How long one queue's calls are kept (days; 0 = forever)."""

    #: Days a call (transcript, readings, findings, alerts, search entries) is kept.
    days: float = Field(default=0.0, ge=0)
    #: Days its recording is kept; 0 = as long as the call. Never longer than `days`.
    recording_days: float = Field(default=0.0, ge=0)


class RetentionSettings(RetentionRule):
    """[retention]: storage limitation and erasure (docs/privacy.md). Per-queue
    overrides: `[retention.queues.payments]` `days = 90`. Calls under legal hold are kept."""

    #: Run the retention job in the server this often (seconds; 0 = only by
    #: `callwatch retention run`, e.g. from cron).
    interval_s: float = Field(default=86_400.0, ge=0)
    queues: dict[str, RetentionRule] = Field(default_factory=dict)
    #: Key of the keyed hash (HMAC-SHA256) that pseudonymises erased subjects in the audit
    #: trail and tombstones; missing = generated once into <data_dir>/pseudonym.key.
    pseudonym_key_file: Path | None = None

    def for_queue(self, queue: str | None) -> RetentionRule:
        """The rule of `queue`: its override, else the defaults."""
        return self.queues.get(queue or "") or RetentionRule(
            days=self.days, recording_days=self.recording_days
        )


class ApiSettings(_Section):
    """The HTTP API (search, replay, alerts, KPIs, export) and the board it serves."""

    enabled: bool = True
    host: str = "127.0.0.1"
    #: 0 picks a free port (tests); `Callwatch.api_url` tells which.
    port: int = Field(default=8080, ge=0, le=65535)
    #: Lifetime of a login token (also the cookie's Max-Age).
    token_ttl_s: int = Field(default=12 * 3600, ge=60)
    #: Mark the `cw_token` cookie Secure. Unset: true when a `public_origins` entry is
    #: https:// (the pages are served over TLS, by callwatch's proxy).
    cookie_secure: bool | None = None
    #: Serve /api/docs and /api/openapi.json. Unset: only when `host` is a loopback address.
    docs: bool | None = None
    #: Origins the board's pages are served from (e.g. "https://qa.example.com"); a board
    #: websocket from any other Origin is refused (HTTP 403). Empty: the request's own host.
    public_origins: tuple[str, ...] = ()
    #: Open board websockets re-check their user this often (and on any user change made
    #: through the API): logged out, expired or disabled -> close 4401, role removed -> 4403.
    ws_reauth_s: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _check_scrypt(self) -> ApiSettings:
        if self.scrypt_n & (self.scrypt_n - 1):
            raise ValueError(f"api.scrypt_n must be a power of two, got {self.scrypt_n}")
        return self

    @property
    def secure_cookie(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return any(o.lower().startswith("https://") for o in self.public_origins)

    #: A request's headers must arrive within this long of the connection (slowloris) ...
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    #: ... an idle keep-alive connection is closed after this long ...
    keepalive_timeout_s: float = Field(default=5.0, ge=1, le=300)
    #: ... and connections beyond this many are closed on accept.
    max_connections: int = Field(default=256, ge=1)
    #: This many wrong passwords for one user from one address within `login_window_s` ...
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: float = Field(default=300.0, gt=0)
    #: ... refuse that user's logins from there for this long (HTTP 429). An address with
    #: this many failures in the window, whatever the usernames, is refused as a whole.
    login_lockout_s: float = Field(default=300.0, gt=0)
    login_max_address_failures: int = Field(default=20, ge=1)
    #: Password checks (scrypt, 16 MiB each) running at once, off the event loop; this many
    #: more logins may wait, further ones get 503 at once.
    login_concurrency: int = Field(default=2, ge=1, le=64)
    #: scrypt cost N of new password hashes (OWASP: 2**17, 128 MiB and ~1 s here; a power of
    #: two, at least 2**14). Stored with each hash: raising it keeps old passwords working.
    scrypt_n: int = Field(default=2**17, ge=2**14, le=2**18)
    login_queue: int = Field(default=32, ge=0)
    #: "Play" is a ranged stream, not a file (issue 17 item 6): each play response is a 206
    #: of at most this much audio, `inline`; the whole file is `?download=true` (qa, admin).
    play_window_s: float = Field(default=30.0, ge=1, le=600)
    #: Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs, or "*"); empty:
    #: none, the peer address is the client (throttling and audit use it).
    trusted_proxies: tuple[str, ...] = ()
    #: The API's address as receivers see it (e.g. "https://qa.example.com"): the vCon
    #: export's recording URL starts with it. Empty: the address the request came to.
    public_base_url: str = Field(default="", pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$")


class PrivacySettings(_Section):
    """Transcript, DTMF and metadata redaction (docs/privacy.md)."""

    #: Redact transcripts before they are stored, published, searched or exported.
    redact_transcripts: bool = True
    #: Entity classes to mask: pan, card_data (expiry/code said right after a PAN), cvv,
    #: expiry, cn_id (resident ID), account (after an account cue), phone, email.
    classes: tuple[str, ...] = (
        "pan", "card_data", "cvv", "expiry", "cn_id", "account", "phone", "email",
    )  # fmt: skip
    #: A segment ending in digits waits this long (media ms) for the rest of the number.
    hold_ms: int = Field(default=5000, ge=0, le=60_000)
    #: At most this many segments wait at once (more: released, redacted as they are).
    max_held: int = Field(default=8, ge=1, le=64)
    #: Text-frame events (`event` or `type`) that open / close a secure-entry stage: DTMF
    #: inside it is not traced at all, not even its count.
    secure_entry_start: tuple[str, ...] = ("secure_entry_start", "pci_start", "payment_start")
    secure_entry_end: tuple[str, ...] = ("secure_entry_end", "pci_end", "payment_end")
    #: Mask the audio of every entity redacted from a transcript in the recording (needs
    #: redact_transcripts; word times from the ASR, ~10 % more ASR compute on numbers only).
    redact_audio: bool = True
    #: What replaces it: "silence" (zero samples) or "tone" (1 kHz at -20 dBFS).
    audio_fill: Literal["silence", "tone"] = "silence"
    #: Widen each masked span by this much on each side (word times are ~0.1-0.2 s off).
    audio_pad_ms: int = Field(default=250, ge=0, le=5000)
    #: After a crash, the audio a recording's journal does not confirm checked is
    #: transcribed and redacted at start-up (in the background): at most this many seconds
    #: of it per start, all recordings together; a recording past the bound is silenced
    #: from its confirmed point instead (docs/privacy.md).
    recovery_check_max_s: int = Field(default=900, ge=0, le=86_400)
    #: Key sequences that pause / resume capture from a phone's keypad ("" = off).
    pause_keys: str = Field(default="*1", pattern=r"^[0-9*#A-D]{0,4}$")
    resume_keys: str = Field(default="*2", pattern=r"^[0-9*#A-D]{0,4}$")

    @model_validator(mode="after")
    def _check_classes(self) -> PrivacySettings:
        known = {"pan", "card_data", "cvv", "expiry", "cn_id", "account", "phone", "email"}
        unknown = sorted(set(self.classes) - known)
        if unknown:
            raise ValueError(f"privacy.classes {unknown} unknown: use some of {sorted(known)}")
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
