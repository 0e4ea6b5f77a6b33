"""What one live call holds in audio by design, computed from the settings: the allowance
RELIABILITY.md L1 adds to its "RSS per call <= 2 MiB plus audio buffers".

Each term is a buffer a call legitimately keeps while it runs, at its largest, in the dtype
the code keeps it in (so a setting that grows a buffer grows the allowance, and a buffer that
grows without a setting fails L1):

- `segmenter`: per party, the ASR segmenter's preallocated history (`UtteranceSegmenter`):
  the longest utterance (`vad.max_utterance_s`) with its pads and a closing silence run,
  int16 at 16 kHz;
- `utterance`: per party, one cut utterance waiting for its transcript (its own copy of the
  audio, int16 at 16 kHz, up to `max_utterance_s` plus pads; the ASR queue itself is shared
  by all calls, bounded by `asr.queue_size`, and deferred utterances release their audio);
- `quality`: per party, the audio-quality tracker's pending batch (`quality.analysis_batch_ms`,
  int16 kept plus its float64 working copies) and its history for the voicing analysis;
- `dnsmos`: per party, when DNSMOS is on, the window filling and one waiting for the metric
  VAD (int16, native rate), and the windows waiting to be taken for scoring
  (`quality.dnsmos.max_pending_windows`, float32 at 16 kHz);
- `recorder`: the recording's write buffer (`recording.flush_interval_s` of interleaved int16)
  and the previous one still being written by the disk thread;
- `receive`: one websocket message at its largest (`gateway.max_message_bytes`), being
  parsed.

Not counted: the ASR worker's decode window (one per worker, not per call), Python objects
(events, trace, transcript lines: the 2 MiB), and kernel socket buffers (not RSS).
"""

from __future__ import annotations

from audio_quality.dnsmos import WINDOW_SAMPLES
from audio_quality.frame_features import HISTORY_SAMPLES
from config.settings import Settings
from monitor.core.events import ANALYSIS_RATE

_INT16, _FLOAT32, _FLOAT64 = 2, 4, 8


def call_audio_buffers(settings: Settings, sample_rate: int, channels: int) -> dict[str, int]:
    """Bytes of audio one live call of `sample_rate` Hz and `channels` parties may hold, by
    buffer (see the module docstring); `sum(...values())` is the call's allowance."""
    if sample_rate <= 0 or channels not in (1, 2):
        raise ValueError(f"sample_rate must be > 0 and channels 1 or 2, got {sample_rate}, "
                         f"{channels}")  # fmt: skip
    vad, q = settings.vad, settings.quality
    ms = ANALYSIS_RATE // 1000
    pad = vad.pad_ms * ms
    longest = int(vad.max_utterance_s * ANALYSIS_RATE) + 2 * pad
    close_run = (-(-vad.end_silence_ms // vad.frame_ms) + 2) * vad.frame_ms * ms
    batch = q.analysis_batch_ms * sample_rate // 1000
    # The pending int16 batch, and float64 copies while it is analysed (signal, power,
    # high band), plus the voicing analysis' history (8 kHz, float64).
    quality = batch * (_INT16 + 3 * _FLOAT64) + HISTORY_SAMPLES * _FLOAT64
    dnsmos = 0
    if q.dnsmos.enabled:
        native = WINDOW_SAMPLES * sample_rate // ANALYSIS_RATE
        # The window filling and one waiting for the metric VAD's decisions (native int16),
        # and the windows waiting for the runtime to take them (16 kHz float32).
        dnsmos = 2 * native * _INT16 + q.dnsmos.max_pending_windows * WINDOW_SAMPLES * _FLOAT32
    flush = int(settings.recording.flush_interval_s * sample_rate) * channels * _INT16
    return {
        "segmenter": channels * (longest + close_run) * _INT16,
        "utterance": channels * longest * _INT16,
        "quality": channels * quality,
        "dnsmos": channels * dnsmos,
        "recorder": 2 * flush,
        "receive": settings.gateway.max_message_bytes,
    }


def call_audio_allowance(settings: Settings, sample_rate: int, channels: int) -> int:
    """The total of `call_audio_buffers`: bytes of audio one live call may hold."""
    return sum(call_audio_buffers(settings, sample_rate, channels).values())
