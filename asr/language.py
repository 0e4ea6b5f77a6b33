"""Language once per party: lock a speaker's language after strong evidence, never on weak.

This module owns `LanguageTracker`, a sans-I/O tracker for one party of one call. Whisper's
language detection is a full pass of the decoder's first step over the encoder output; once
a party's language is known it only adds cost and risk (a short or noisy utterance of a
Mandarin speaker can come out as Japanese or English). So after `lock_after` detections in a
row of the same language, each with probability >= `lock_p`, the tracker reports that
language and later utterances are decoded in it without detection.

Why so strict: a peer server that locks at p > 0.5 from a stream's first second sent 6 of 10
Mandarin streams to English in a side-by-side run on this corpus. Detections below `lock_p`
neither count nor reset the streak; a confident detection of another language restarts it.

Unlocking: a decode under the lock that the engine found suspect (redone on the full window
with detection, see `asr.window`) reports its fresh detection; a confident other language
moves the lock there only after the same `lock_after` evidence, and meanwhile the party is
detected on every utterance again (code-switching callers stay detected).
"""

from __future__ import annotations

from asr.types import AsrResult


class LanguageTracker:
    """One party's language: `locked` is the language to force, or None to detect."""

    def __init__(self, *, lock_p: float = 0.9, lock_after: int = 2) -> None:
        if not 0.5 < lock_p <= 1.0:
            raise ValueError(f"lock_p must be in (0.5, 1], got {lock_p}")
        if lock_after < 0:
            raise ValueError(f"lock_after must be >= 0 (0 never locks), got {lock_after}")
        self._lock_p = lock_p
        self._lock_after = lock_after
        self._locked: str | None = None
        self._candidate: str | None = None
        self._streak = 0
        #: How many times a lock was released by a confident detection of another language.
        self.unlocks = 0

    @property
    def locked(self) -> str | None:
        return self._locked

    def observe(self, language: str, probability: float | None) -> None:
        """Feed one decode: the language it was decoded in and its detection probability
        (None when it was decoded without detection, i.e. under the lock or a forced
        language: that is no new evidence)."""
        if probability is None or self._lock_after == 0:
            return
        if probability < self._lock_p:
            return  # weak evidence: neither counts nor resets
        if language != self._candidate:
            self._candidate, self._streak = language, 0
            if self._locked is not None and language != self._locked:
                # Confident evidence against the lock: detect every utterance again.
                self._locked = None
                self.unlocks += 1
        self._streak += 1
        if self._streak >= self._lock_after:
            self._locked = language

    def observe_result(self, result: AsrResult) -> None:
        """`observe` from an engine result (its `language` and `language_p`)."""
        if result.text:  # a detection on noise or silence is no evidence of the speaker
            self.observe(result.language, result.language_p)
