"""One live call: its parties, their media clocks and their utterance segmenters (sans-I/O).

`CallSession.feed` takes whole interleaved L16 frames at the call's native rate (what the wire
decoders emit), splits them per party, brings each party to the 16 kHz analysis rate once
(`Upsampler2x` for 8 kHz calls) and returns the utterances that ended. Recording happens in the
runtime from the same bytes, so what is recorded is exactly what was received.

Lifecycle: ACTIVE → ENDED (`finish`); feeding an ended session raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from asr.settings import VadSettings
from audio_quality.resample import Upsampler2x
from monitor.core.events import ANALYSIS_RATE, Party, UtteranceEnded
from monitor.core.metadata import CallMetadata
from monitor.core.segmenter import UtteranceSegmenter


class CallState(enum.Enum):
    ACTIVE = "active"
    ENDED = "ended"


class SessionError(RuntimeError):
    """An illegal call-state transition (a bug in the caller, not bad input)."""


@dataclass(slots=True)
class LegState:
    party: Party
    channel: int
    segmenter: UtteranceSegmenter
    upsampler: Upsampler2x | None
    samples: int = 0  # native-rate samples received
    utterances: int = field(default=0)


class CallSession:
    def __init__(self, metadata: CallMetadata, vad: VadSettings) -> None:
        if ANALYSIS_RATE % metadata.sample_rate:
            raise ValueError(f"sample_rate must divide {ANALYSIS_RATE}, got {metadata}")
        self.metadata = metadata
        self.state = CallState.ACTIVE
        self.legs: dict[Party, LegState] = {
            party: LegState(
                party=party,
                channel=channel,
                segmenter=UtteranceSegmenter(party, vad),
                upsampler=Upsampler2x() if metadata.sample_rate == 8000 else None,
            )
            for party, channel in sorted(metadata.channel_of.items(), key=lambda kv: kv[1])
        }
        self.frames = 0  # interleaved frames received (= samples per channel)

    @property
    def duration_ms(self) -> int:
        return self.frames * 1000 // self.metadata.sample_rate

    def feed(self, pcm: bytes) -> list[UtteranceEnded]:
        if self.state is not CallState.ACTIVE:
            raise SessionError(f"feed() on a call in state {self.state.value}")
        if len(pcm) % self.metadata.frame_bytes:
            raise ValueError(
                f"pcm must hold whole frames of {self.metadata.frame_bytes} bytes, got {len(pcm)}"
            )
        return self.feed_frames(np.frombuffer(pcm, dtype="<i2").reshape(-1, self.metadata.channels))

    def feed_frames(self, frames: np.ndarray) -> list[UtteranceEnded]:
        """Whole frames already split into channels: shape (frames, channels), int16."""
        if self.state is not CallState.ACTIVE:
            raise SessionError(f"feed() on a call in state {self.state.value}")
        self.frames += frames.shape[0]
        out: list[UtteranceEnded] = []
        for leg in self.legs.values():
            samples = np.ascontiguousarray(frames[:, leg.channel], dtype=np.int16)
            leg.samples += samples.size
            if leg.upsampler is not None:
                samples = leg.upsampler.process(samples)
            found = leg.segmenter.feed(samples)
            leg.utterances += len(found)
            out.extend(found)
        out.sort(key=lambda u: u.end_sample)
        return out

    def finish(self) -> list[UtteranceEnded]:
        if self.state is not CallState.ACTIVE:
            raise SessionError(f"finish() on a call in state {self.state.value}")
        self.state = CallState.ENDED
        out: list[UtteranceEnded] = []
        for leg in self.legs.values():
            found = leg.segmenter.finish()
            leg.utterances += len(found)
            out.extend(found)
        return out
