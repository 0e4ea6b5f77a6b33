"""Settings sections for what callwatch judges and keeps: load and degradation, compliance,
grading, alert rules, webhooks, retention and privacy. Composed into the one `Settings`
object by `config.settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    #: Media stalled: no audio for this long (wall time) while the call is connected. 2.5 s
    #: plus one `tick_s` (0.25 s) raises it within 3 s of the last audio (RELIABILITY N2),
    #: before the gateway's stall probe (`gateway.stall_timeout_s`) ends the call.
    media_stall_s: float = Field(default=2.5, ge=0)


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
