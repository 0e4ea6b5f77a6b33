"""Every knob and threshold of the audio-quality package, with defaults (one frozen model).

`QualitySettings` is embedded in the application settings as `Settings.quality` and passed down
as a typed slice; trackers read it once at construction. Units are in the field names. The
metric VAD has its own settings, deliberately not the ASR segmenter's: ASR wants generous
padding and merged pauses, talk-time and dead-air figures want tight boundaries
(QUALITY_METRICS.md §8).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricVadSettings(_Section):
    """Speech/silence per 10 ms frame for talk time, dead air, overtalk and SNR."""

    #: Noise floor: median smoothed power of the frames decided as silence within this much
    #: of the party's silence (speech never moves it).
    noise_window_ms: int = Field(default=4000, ge=500, le=20_000, multiple_of=10)
    #: Until 1 s of silence was decided: this quantile of all recent frames instead.
    floor_quantile: float = Field(default=0.15, gt=0.0, lt=0.5)
    #: One-pole smoothing of frame power before the decision.
    smoothing_ms: int = Field(default=20, ge=0, le=200)
    #: Speech starts where the smoothed power is this far above the noise floor ...
    threshold_db: float = Field(default=8.0, ge=3.0, le=30.0)
    #: ... and goes on while it stays this far above it (hysteresis) ...
    continue_db: float = Field(default=4.0, ge=1.0, le=30.0)
    #: A frame is voiced when its normalised autocorrelation in the pitch range reaches this.
    voicing_threshold: float = Field(default=0.6, gt=0.0, lt=1.0)
    #: A loud stretch counts as speech only once this much of it is voiced ...
    min_voiced_ms: int = Field(default=60, ge=10, le=1000)
    #: ... and this share of its loud frames is voiced (clatter, clicks and fan noise are
    #: loud but not periodic; clinking cutlery is, but only briefly) ...
    min_voiced_ratio: float = Field(default=0.3, ge=0.0, le=1.0)
    #: ... and is given up as noise if it has not got there after this long; speech also
    #: ends this long after its last voiced frame. (500 ms would keep more knocks between
    #: turns out of speech, a better noise estimate, but cuts 2 % of clean talk time.)
    max_unvoiced_ms: int = Field(default=1000, ge=100, le=10_000)
    #: Speech also needs this absolute level (keeps faint hiss after digital silence out).
    min_level_dbov: float = Field(default=-55.0, ge=-90.0, le=-20.0)
    #: Speech stretches shorter than this (after bridging) are dropped as clicks.
    min_speech_ms: int = Field(default=200, ge=0, le=1000)
    #: Pauses shorter than this inside speech are bridged (counted as talk).
    min_silence_ms: int = Field(default=250, ge=20, le=2000)
    #: Added to both ends of each speech stretch.
    pad_ms: int = Field(default=0, ge=0, le=200)
    #: Noise compensation. Speech reaches this far below its median level (faint syllables,
    #: turn fade-outs: the talk-time truth counts them); for each dB of that range the
    #: party's noise floor hides, pauses up to `bridge_ms_per_db` longer are bridged (once
    #: the sound after the pause is confirmed as speech) and each stretch's end is extended
    #: by `tail_ms_per_db`. Nothing changes on clean lines.
    faint_range_db: float = Field(default=30.0, ge=0.0, le=60.0)
    bridge_ms_per_db: float = Field(default=20.0, ge=0.0, le=50.0)
    tail_ms_per_db: float = Field(default=7.0, ge=0.0, le=50.0)

    @model_validator(mode="after")
    def _check(self) -> MetricVadSettings:
        if self.continue_db > self.threshold_db:
            raise ValueError(
                f"vad.continue_db ({self.continue_db}) must not exceed "
                f"vad.threshold_db ({self.threshold_db})"
            )
        if 2 * self.pad_ms >= self.min_silence_ms:
            raise ValueError(
                f"vad.pad_ms ({self.pad_ms}) must be less than half of "
                f"vad.min_silence_ms ({self.min_silence_ms})"
            )
        return self


class DnsmosSettings(_Section):
    """DNSMOS P.835 scoring on non-overlapping 9.01 s windows at 16 kHz."""

    enabled: bool = True
    #: A window is scored only if the party spoke for at least this fraction of it
    #: (a silent listener's window says nothing about speech quality and wastes CPU).
    min_speech_ratio: float = Field(default=0.25, ge=0.0, le=1.0)
    #: Windows waiting to be taken by the runtime; when full the oldest is dropped (counted).
    max_pending_windows: int = Field(default=2, ge=1, le=16)
    #: `dnsmos` (P.835) or `dnsmos_personalized` (pDNSMOS, penalises interfering talkers).
    model: Literal["dnsmos", "dnsmos_personalized"] = "dnsmos"
    #: Threads of the one shared onnxruntime session.
    intra_op_threads: int = Field(default=1, ge=1, le=64)
    #: Windows scored per model run, across parties and calls. Each costs ~470 MB of peak
    #: activations and larger batches measured no faster on CPU: keep it small.
    batch_size: int = Field(default=2, ge=1, le=16)
    #: CPU budget: score at most one window per party per this many seconds of media, plus
    #: each party's last window at the end of the call (0 = every window, ~0.065 CPU-s per
    #: audio-second per party). 45 s scored 43 of 106 windows on the test calls and kept
    #: per-call clarity within 0.09 MOS of scoring every window (tests/test_dnsmos_budget.py).
    sample_every_s: float = Field(default=45.0, ge=0.0, le=3600.0)


class ConversationSettings(_Section):
    """Cross-party measures: dead air, overtalk, response gaps, speaking rate."""

    #: Both parties silent at least this long is dead air (Google CCAI uses 5 s).
    dead_air_min_ms: int = Field(default=5000, ge=500)
    #: Both parties speaking at least this long is overtalk.
    overtalk_min_ms: int = Field(default=500, ge=50)
    #: An agent turn starting this long after the customer stopped is not a "response"
    #: (the gap is dead air or a new topic, not a reply).
    response_max_gap_ms: int = Field(default=30_000, ge=1000)
    #: Speaking rate is pooled per party (words, or Han characters, over the party's VAD
    #: speech time inside its transcript segments, so short turns do not swing it) and
    #: reported only once this many units were heard.
    min_rate_words: int = Field(default=8, ge=1)
    #: Speaking-rate history kept for matching transcripts to VAD speech (bounded memory).
    activity_history_ms: int = Field(default=120_000, ge=10_000)


class ThresholdSettings(_Section):
    """Measures to findings: a value beyond `*_warning` is a warning, beyond `*_critical` is
    critical. Directions are in the names (`min` = below is bad, `max` = above is bad)."""

    snr_min_db_warning: float = 15.0
    snr_min_db_critical: float = 8.0
    dnsmos_ovrl_min_warning: float = 2.8
    dnsmos_ovrl_min_critical: float = 2.2
    speech_level_min_dbov_warning: float = -38.0
    speech_level_min_dbov_critical: float = -45.0
    speech_level_max_dbov_warning: float = -12.0
    speech_level_max_dbov_critical: float = -6.0
    clip_ratio_max_warning: float = Field(default=0.0005, ge=0.0)
    clip_ratio_max_critical: float = Field(default=0.005, ge=0.0)
    dropouts_per_min_max_warning: float = Field(default=1.0, ge=0.0)
    dropouts_per_min_max_critical: float = Field(default=5.0, ge=0.0)
    #: Longest single dead-air stretch.
    dead_air_max_ms_warning: int = Field(default=10_000, ge=0)
    dead_air_max_ms_critical: int = Field(default=30_000, ge=0)
    #: Overtalk events per minute of conversation, judged only once there were at least
    #: `overtalk_min_count` overlaps or `overtalk_min_total_ms` of them in all.
    overtalk_per_min_max_warning: float = Field(default=1.0, ge=0.0)
    overtalk_per_min_max_critical: float = Field(default=3.0, ge=0.0)
    overtalk_min_count: int = Field(default=3, ge=1)
    overtalk_min_total_ms: int = Field(default=5000, ge=0)
    #: Speaking rate: English words per minute of the party's speech.
    words_per_min_max_warning: float = 190.0
    words_per_min_max_critical: float = 230.0
    #: Mandarin Han characters per minute of the party's speech.
    chars_per_min_max_warning: float = 330.0
    chars_per_min_max_critical: float = 400.0
    #: Agent's mean response gap after the customer stops.
    response_gap_mean_ms_max_warning: int = Field(default=3000, ge=0)
    response_gap_mean_ms_max_critical: int = Field(default=6000, ge=0)


class ScoreSettings(_Section):
    """Per-call audio-quality score 0–100: start at 100, subtract per finding, then grade."""

    warning_penalty: float = Field(default=10.0, ge=0.0, le=100.0)
    critical_penalty: float = Field(default=25.0, ge=0.0, le=100.0)
    #: Multipliers of the penalty per finding kind.
    poor_snr_weight: float = Field(default=1.0, ge=0.0)
    low_clarity_weight: float = Field(default=1.2, ge=0.0)
    clipping_weight: float = Field(default=0.8, ge=0.0)
    dropouts_weight: float = Field(default=0.8, ge=0.0)
    low_level_weight: float = Field(default=0.6, ge=0.0)
    high_level_weight: float = Field(default=0.6, ge=0.0)
    long_dead_air_weight: float = Field(default=1.0, ge=0.0)
    excessive_overtalk_weight: float = Field(default=0.8, ge=0.0)
    fast_speech_weight: float = Field(default=0.5, ge=0.0)
    slow_response_weight: float = Field(default=0.6, ge=0.0)
    #: Lowest score of each grade; below `pass_min` is `needs_improvement`.
    excellent_min: float = Field(default=90.0, ge=0.0, le=100.0)
    good_min: float = Field(default=75.0, ge=0.0, le=100.0)
    pass_min: float = Field(default=60.0, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _check(self) -> ScoreSettings:
        if not self.excellent_min >= self.good_min >= self.pass_min:
            raise ValueError(
                "score grades must satisfy excellent_min >= good_min >= pass_min, got "
                f"{self.excellent_min}, {self.good_min}, {self.pass_min}"
            )
        return self


class QualitySettings(_Section):
    """Audio-quality and conversation measures (`Settings.quality`)."""

    #: Readings are emitted every this much media time (per party).
    reading_interval_ms: int = Field(default=2000, ge=100, le=2000, multiple_of=10)
    #: Rolling window behind each reading's level/noise/SNR (a blind SNR needs several s).
    reading_window_ms: int = Field(default=10_000, ge=2000, le=60_000, multiple_of=10)
    #: Audio is analysed in batches of at least this much media (cost vs. latency: readings
    #: and activity come this much later at most; results do not depend on it).
    analysis_batch_ms: int = Field(default=200, ge=10, le=2000)
    #: SNR is clamped to this range (no blind estimator is meaningful beyond it).
    snr_min_db: float = -10.0
    snr_max_db: float = 50.0
    #: Dropouts (`audio_quality.dropouts`): runs of digital zeros that cut into speech, at
    #: least `dropout_min_ms` and at most `dropout_max_ms` long (longer zeros are a pause, a
    #: mute or a TTS engine's phrase break; media the switch never sent is `missing_ms`),
    #: with the audio just before them within `dropout_edge_db` of the speech level of the
    #: half second before (silence after a turn decays first, a cut does not).
    dropout_min_ms: int = Field(default=20, ge=10, le=1000, multiple_of=10)
    dropout_max_ms: int = Field(default=200, ge=10, le=5000)
    dropout_edge_db: float = Field(default=20.0, gt=0.0, le=60.0)
    vad: MetricVadSettings = MetricVadSettings()
    dnsmos: DnsmosSettings = DnsmosSettings()
    conversation: ConversationSettings = ConversationSettings()
    thresholds: ThresholdSettings = ThresholdSettings()
    score: ScoreSettings = ScoreSettings()

    @model_validator(mode="after")
    def _check(self) -> QualitySettings:
        if self.reading_window_ms < self.reading_interval_ms:
            raise ValueError(
                f"reading_window_ms ({self.reading_window_ms}) must be at least "
                f"reading_interval_ms ({self.reading_interval_ms})"
            )
        if self.dropout_max_ms < self.dropout_min_ms:
            raise ValueError(
                f"dropout_max_ms ({self.dropout_max_ms}) must be at least dropout_min_ms "
                f"({self.dropout_min_ms})"
            )
        if self.reading_window_ms % self.reading_interval_ms:
            raise ValueError(
                f"reading_window_ms ({self.reading_window_ms}) must be a multiple of "
                f"reading_interval_ms ({self.reading_interval_ms})"
            )
        return self
