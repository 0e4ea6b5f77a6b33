"""Per-party records the trackers emit: frozen, slotted, flat, units in the field names.

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
