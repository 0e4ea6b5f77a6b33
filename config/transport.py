"""Settings sections for how callwatch meets the outside: the gateway and its switch
credentials, recordings, the HTTP API, and scale-out (the bus and this node). Composed into
the one `Settings` object by `config.settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


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
    #: pause must be marked with a `{"event":"paused"}` text frame) before the peer is probed
    #: with a ping: one that answers is alive but silent and the call is finalised as
    #: interrupted ("stalled", close 1001); one that does not answer within `ping_timeout_s`
    #: is dead or half-open (close 1011). Paused calls fall back to `idle_timeout_s`.
    stall_timeout_s: float = Field(default=5.0, gt=0)
    #: Keepalive: a websocket ping this often; a peer that leaves one unanswered for
    #: `ping_timeout_s` (dead, or half-open: TCP up, nothing read) is closed with 1011 and the
    #: call finalised as interrupted ("stalled"). Pongs queue behind unread audio on a busy
    #: server, hence the generous timeout; interval + timeout bound the close (35 s).
    ping_interval_s: float = Field(default=5.0, gt=0, le=300)
    ping_timeout_s: float = Field(default=30.0, gt=0, le=300)
    #: Seconds a call whose connection dropped without a close frame stays open for its
    #: switch to reconnect with the same call id (one call, one recording, the gap silence,
    #: counted: monitor/runtime/resume.py); 0 = off, the call ends `interrupted/transport`.
    resume_grace_s: float = Field(default=0.0, ge=0, le=60)
    #: Seconds a closing handshake waits for the peer's close frame before dropping TCP.
    close_timeout_s: float = Field(default=5.0, gt=0, le=60)
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
    #: A board websocket whose browser takes longer than this to accept one message (it
    #: stopped reading: a frozen tab, a dead network) is dropped, its connection aborted. The
    #: keepalive ping cannot find it: the ping waits behind the unsent data.
    ws_send_timeout_s: float = Field(default=10.0, gt=0, le=600)
    #: Board websockets are pinged this often; one whose pong does not come within the
    #: timeout (a browser that stopped reading, a dead network) is closed 1011.
    ws_ping_interval_s: float = Field(default=20.0, gt=0, le=600)
    ws_ping_timeout_s: float = Field(default=20.0, gt=0, le=600)
    #: permessage-deflate on the board websockets. Off by default: it compresses every frame
    #: once per browser, on the event loop that also reads the calls' audio (200 supervisors
    #: watching 20 calls: RELIABILITY.md L3). On only where browsers sit behind a slow link.
    ws_compress: bool = False

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
