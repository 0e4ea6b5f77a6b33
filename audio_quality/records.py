"""Records the trackers emit: per party (`ActivitySpan`, `QualityReading`,
`PartyQualitySummary`) and across the parties (`ConversationTracker`'s dead air and overtalk
events, `ConversationSummary`; their definitions are in audio_quality/conversation.py).
Frozen, slotted, flat, units in the field names.

Media time is in milliseconds of the party's stream from the start of the call (`*_ms`);
levels in dBov (relative to the codec's full scale), ratios in 0..1. `None` means "not
measurable in this span" (no speech, no noise observed), never zero. Storage can write these
field by field (`dataclasses.asdict`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ActivitySpan:
    """Final speech/silence decision of the metric VAD for [start_ms, end_ms) of one party.
    Consecutive spans of a party tile its media time without gaps (10 ms resolution)."""

    party: str
    start_ms: int
    end_ms: int
    speech: bool


@dataclass(frozen=True, slots=True)
class QualityReading:
    """One party's measures for one reading interval (`end_ms - start_ms` ≤ 2 s of media).

    Level, noise and SNR are over the rolling window `window_start_ms..end_ms` (a blind SNR
    needs several seconds); the other measures are over the interval itself.
    """

    party: str
    seq: int
    start_ms: int
    end_ms: int
    window_start_ms: int
    speech_ms: int
    rms_dbov: float
    speech_level_dbov: float | None
    noise_level_dbov: float | None
    snr_db: float | None
    clipped_samples: int
    clip_ratio: float
    dropouts: int
    dropout_ms: int
    missing_ms: int
    #: The party's latest DNSMOS P.835 OVRL (1..5) scored so far, for live clarity meters.
    #: Scores come back from the shared scorer asynchronously (a 9 s window, then a batch),
    #: so this lags the reading by up to ~10 s and is None until the first window is scored.
    dnsmos_ovrl: float | None = None
    #: The party's talk so far as the conversation tracker counts it (set by the call
    #: analyser): the board's talk share is computed from it, as the stored one is.
    talk_ms: int | None = None


@dataclass(frozen=True, slots=True)
class PartyQualitySummary:
    """One party's measures for the whole call."""

    party: str
    sample_rate_hz: int
    codec: str
    duration_ms: int
    speech_ms: int
    speech_ratio: float
    speech_level_dbov: float | None
    noise_level_dbov: float | None
    snr_db: float | None
    #: Lowest rolling-window SNR seen in any reading (worst stretch of the call).
    snr_min_db: float | None
    clipped_samples: int
    clip_ratio: float
    dropouts: int
    dropout_ms: int
    missing_ms: int
    readings: int
    dnsmos_windows_scored: int
    #: Windows not sent: too little speech in them.
    dnsmos_windows_skipped: int
    #: Windows lost because the runtime did not take them in time.
    dnsmos_windows_dropped: int
    dnsmos_sig_mean: float | None
    dnsmos_bak_mean: float | None
    dnsmos_ovrl_mean: float | None
    dnsmos_ovrl_min: float | None
    dnsmos_model_sample_rate_hz: int


@dataclass(frozen=True, slots=True)
class DeadAirStarted:
    start_ms: int
    detected_ms: int  # start_ms + dead_air_min_ms


@dataclass(frozen=True, slots=True)
class DeadAirDetected:
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class OvertalkDetected:
    start_ms: int
    end_ms: int
    interrupter: str
    interrupted: str


ConversationEvent = DeadAirStarted | DeadAirDetected | OvertalkDetected


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    duration_ms: int
    hold_ms: int
    ivr_ms: int
    agent_talk_ms: int
    customer_talk_ms: int
    #: agent / (agent + customer) talk; None when nobody spoke.
    agent_talk_ratio: float | None
    #: A party's talk over the conversation time (duration less hold and IVR).
    agent_talk_share: float | None
    customer_talk_share: float | None
    non_talk_ms: int
    non_talk_ratio: float | None
    dead_air_min_ms: int
    dead_air_count: int
    dead_air_total_ms: int
    dead_air_max_ms: int
    #: Where the longest dead air was (None without dead air).
    dead_air_longest_start_ms: int | None
    dead_air_longest_end_ms: int | None
    overtalk_min_ms: int
    overtalk_count: int
    overtalk_total_ms: int
    overtalk_max_ms: int
    agent_interruptions: int
    customer_interruptions: int
    response_gap_count: int
    response_gap_mean_ms: float | None
    response_gap_max_ms: int | None
    first_response_ms: int | None
    agent_words_per_min: float | None
    agent_chars_per_min: float | None
    customer_words_per_min: float | None
    customer_chars_per_min: float | None
    #: Parties whose audio was not streamed (a Twilio inbound-only fork, a mono fork): their
    #: talk is not 0 but unknown, and so are every measure that needs both parties (dead
    #: air, overtalk, response gaps, talk ratio): read those as n/a
    #: (`monitor.core.analysis.one_sided`).
    absent: tuple[str, ...] = ()
