"""Events the call core emits. Frozen, slotted, past-tense; media time in samples.

`start_sample` / `end_sample` count samples of the party's 16 kHz analysis stream from the
start of the call (the ASR/VAD clock); convert with `samples_to_ms` at the edges.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ANALYSIS_RATE = 16_000


class Party(enum.StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"


def samples_to_ms(samples: int, rate: int = ANALYSIS_RATE) -> int:
    return samples * 1000 // rate


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    """One party stopped speaking (or hit the length cap): the audio to transcribe."""

    party: Party
    start_sample: int
    end_sample: int
    audio: npt.NDArray[np.int16]  # 16 kHz mono, end_sample - start_sample samples
    voiced_ms: int
    capped: bool  # cut at the max utterance length, speech continues

    @property
    def start_ms(self) -> int:
        return samples_to_ms(self.start_sample)

    @property
    def end_ms(self) -> int:
        return samples_to_ms(self.end_sample)
