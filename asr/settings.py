"""The speech-recognition package's settings: utterance segmentation for ASR (`VadSettings`)
and the model, workers, windows and lanes (`AsrSettings`). The application settings
(`config.settings.Settings`) embed them as `vad` and `asr`; this package owns them so that
`asr` depends on nothing above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    #: `whisper`: the model below. `scripted`: no model; each utterance is answered with the
    #: next of `scripted_lines` (asr/scripted.py: the seam for tests and demos).
    engine: Literal["whisper", "scripted"] = "whisper"
    #: What `engine = "scripted"` answers, one line per utterance in order; past the last,
    #: "utterance a", "utterance b" ...
    scripted_lines: list[str] = Field(default_factory=list, max_length=10_000)
    #: Seconds each scripted answer takes (0 = at once): stands in for a slow model.
    scripted_delay_s: float = Field(default=0.0, ge=0.0, le=60.0)
    #: Utterances (1-based, in the order they arrive) `engine = "scripted"` never answers:
    #: stands in for a hung model (RELIABILITY B3).
    scripted_hang: tuple[int, ...] = Field(default=(), max_length=10_000)
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
    #: Utterances waiting in the live lane (deadline order); past it, the oldest moves to the
    #: catch-up lane (transcribed when no live work waits, flagged late). Nothing is shed.
    queue_size: int = Field(default=256, ge=1)
    #: A live utterance waiting longer than this (from the end of its speech) moves to the
    #: catch-up lane, so fresh speech is transcribed first when the box cannot keep up.
    live_budget_s: float = Field(default=3.0, gt=0.0, le=600.0)
    #: Audio seconds the catch-up lane holds in memory (32 kB per second); past it an
    #: utterance's audio is released and it is transcribed from the recording after its call.
    catchup_max_s: float = Field(default=1800.0, ge=0.0)
    #: Utterances handed to a worker in one batch. On CPU 1 is best (a batch costs as much as
    #: its utterances one by one, and every result waits for the whole batch); GPUs gain from 4-8.
    batch_size: int = Field(default=1, ge=1)
    beam_size: int = Field(default=1, ge=1)
    #: Encode an utterance in a window of its length plus this margin instead of Whisper's
    #: padded 30 s (0 = always 30 s). A decode that looks wrong (asr/window.py) is redone on
    #: the full window; the margin was chosen by measurement (docs/benchmarks.md).
    window_margin_s: float = Field(default=3.0, ge=0.0, le=30.0)
    #: Lock a party's language after this many detections in a row of the same language,
    #: each with probability >= `language_lock_p`; later utterances skip detection (0 = never).
    language_lock_after: int = Field(default=2, ge=0)
    #: Raise a quieter utterance to this loudness (dBFS of its loud part) before decoding, by
    #: at most 20 dB; 0 = off. Quiet lines (-31 dBFS) decoded worse on short windows.
    quiet_boost_dbfs: float = Field(default=-25.0, ge=-60.0, le=0.0)
    language_lock_p: float = Field(default=0.9, gt=0.5, le=1.0)
    #: Seconds a worker may take per utterance of a batch before the batch is given up: its
    #: utterances are marked `asr_timeout` (their ranges listed as missing from the call's
    #: transcript, which is then incomplete), the worker is restarted and the call goes on.
    #: Whisper `base` takes a few seconds for a 15 s utterance on one CPU core; a hung model
    #: never answers. Below `final_wait_s`, so a hung utterance is settled before the verdict.
    utterance_timeout_s: float = Field(default=60.0, gt=0.0, le=3600.0)
    #: A call is stored as ended the moment the switch hangs up; its verdict (compliance,
    #: grade, end-of-call alerts) is made when its last transcript lands, or after this long
    #: at most. Segments that arrive later are still stored; the `finalised` trace entry
    #: counts the utterances still pending.
    final_wait_s: float = Field(default=120.0, gt=0.0, le=3600.0)
    #: Normalise Mandarin output to Simplified characters.
    simplified_chinese: bool = True
    #: Where joined bundled models are cached (default: <data_dir>/models).
    cache_dir: Path | None = None
    #: Refuse hub downloads (also honoured: HF_HUB_OFFLINE=1).
    offline: bool = False
    #: Send utterances to shared `callwatch asr-worker` processes over the bus (needs
    #: `bus.url`) instead of this process's own workers.
    remote: bool = False
    #: Seconds one remote attempt may take before it is sent again (another worker of the
    #: queue group takes it) ...
    remote_timeout_s: float = Field(default=10.0, gt=0.0, le=600.0)
    #: ... and attempts in all before the utterance goes to the catch-up path.
    remote_attempts: int = Field(default=3, ge=1, le=10)
    #: With `remote`: also run this node's own workers (`workers`, the model loaded at start)
    #: and transcribe on them what no remote worker can be reached for (the bus away). Off:
    #: such utterances wait (catch-up lane, then the recording) until the workers are back.
    local_fallback: bool = False
