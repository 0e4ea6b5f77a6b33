"""A scripted transcriber: the test and demo seam at the ASR boundary.

`ScriptedTranscriber` answers `transcribe_batch(requests)` at once, without a speech model,
with text from a script: the i-th utterance it is given (counted over its lifetime, in the
order requests arrive) gets the i-th line, and past the last line (or with no lines) a text
that names the utterance by letters, `utterance g` for the 7th, so every segment is distinct
and traceable to the audio it stands for. Letters, not digits: the privacy redactor holds a
segment with digits in it as a possible card number, which is not what a stand-in should do.
The language is the request's forced or locked one, else the configured one. It has the
`worker_count` / `transcribe_batch` shape of `asr.pool.AsrPool`, so the runtime cannot tell
them apart.

It is selected with `[asr] engine = "scripted"` (lines in `scripted_lines`; `scripted_delay_s`
makes each answer take that long, standing in for a slow model; the utterances numbered in
`scripted_hang` are never answered, standing in for a hung one: the batch holding one waits
until it is cancelled, and its line is used up), which lets the whole server
(gateway, call core, storage, alerts, board, API) run in process or as `callwatch serve`
without loading a model, and demos run on machines without it. Accuracy
is what Whisper is for: tests that assert recognised words use the real model.

Order is the order the ASR service hands utterances over: for one call that is the order its
utterances end (the segmenter is deterministic for the same audio); with several calls at
once, their lines interleave as their utterances do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from asr.types import SAMPLE_RATE, AsrRequest, AsrResult

#: The confidence reported for scripted text (what a clear Whisper decode reports).
CONFIDENCE = 0.9


def letters(n: int) -> str:
    """1 -> a, 26 -> z, 27 -> aa: a count written without digits (bijective base 26)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    out = ""
    while n:
        n, rest = divmod(n - 1, 26)
        out = chr(ord("a") + rest) + out
    return out


class ScriptedTranscriber:
    """A batch transcriber answering from `lines` in arrival order (see the module doc)."""

    def __init__(
        self,
        lines: Sequence[str] = (),
        language: str = "en",
        delay_s: float = 0.0,
        hang: Iterable[int] = (),
    ) -> None:
        if language not in ("en", "zh"):
            raise ValueError(f"language must be 'en' or 'zh', not {language!r}")
        if not 0.0 <= delay_s <= 60.0:
            raise ValueError(f"delay_s must be within 0..60 s, not {delay_s!r}")
        self._lines = tuple(lines)
        self._language = language
        #: Seconds each utterance takes, one at a time (a slow model: late transcripts).
        self.delay_s = delay_s
        #: Utterances answered so far (hung ones included: their lines are used up).
        self.answered = 0
        #: Utterance numbers (1-based, arrival order) never answered: a hung model.
        self.hang = frozenset(hang)

    @property
    def worker_count(self) -> int:
        return 1

    @property
    def worker_pids(self) -> list[int]:
        """No worker processes: everything runs on the caller's loop."""
        return []

    def answer(self, request: AsrRequest) -> AsrResult:
        """The next line for this utterance (synchronous; `transcribe_batch` maps it)."""
        n = self.answered
        self.answered += 1
        audio_s = len(request.audio) / SAMPLE_RATE
        text = self._lines[n] if n < len(self._lines) else f"utterance {letters(n + 1)}"
        language = request.language or request.locked_language or self._language
        return AsrResult(text, language, CONFIDENCE, audio_s, 0.0, tag=request.tag)

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s * len(requests))
        first = self.answered + 1
        results = [self.answer(r) for r in requests]
        if self.hang.intersection(range(first, first + len(requests))):
            await asyncio.Event().wait()  # hung: nothing ever sets it; only a cancel ends this
        return results

    async def start(self) -> None:
        """Nothing to load (the `AsrPool` lifecycle, so the composition root treats both alike)."""

    async def close(self) -> None:
        """Nothing to stop."""
