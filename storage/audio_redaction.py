"""Audio redaction of a live recording, in place, with a crash journal (issue 18 item 2).

This module owns the bytes: masking spans of a call's WAV with silence or a tone while the
call is still being recorded, and what makes that safe against `kill -9`.

**In place, not a holding area.** The recording stays the one growing WAV of
`storage.recordings` (it plays at every moment, `kill -9` loses at most a flush interval,
catch-up ASR re-reads it). A span is masked once the transcript redactor says what was said
there, which is seconds after the audio reached the disk (ASR latency plus the redactor's
hold). So the unredacted audio exists on disk for those seconds either way; what matters is
that it can never *become the final recording*. That is the job of the **journal**,
`<recording>.redact`: one fixed-size record, rewritten in place with one `pwrite`, holding
the *confirmed frame*: every frame before it has been heard by ASR, released by the redactor
and had its masks written. The order of writes keeps it honest: masks first (and, with
`fsync`, synced), the journal second; so the journal is at worst behind. At the end of the
call the journal is removed after the last masks are synced. A recording that
still has a journal after the process died is withheld (not sealed, not served) until
start-up has *checked* the audio after the confirmed frame (monitor.runtime.redaction_check:
ASR and the transcript redactor, then `mask_spans` over the entities and `drop_journal`);
where that cannot be done, everything from the confirmed frame to the end is silenced
(`recover_redaction`): what was not checked for card numbers never becomes final.

**Where the writes happen.** `RedactingRecorder` is a `WavRecorder` whose `write` (the worker
thread, serialised per call) also applies the masks queued by the event loop (`redact`,
`confirm`: a lock, no I/O): a mask over audio already written is `pwrite`n at its offset, one
over the chunk being written is applied to that chunk before it goes out, one over audio not
written yet waits. Masks and the confirmed frame queued after the recorder is closed are
applied by `finish_redaction` (also a worker thread), which the call runs before `CallClosed`
(sealing, encryption at rest, is the last write and follows that record).

Every channel of the span is masked, not only the speaker's: another leg may carry the
number as echo or bleed.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from storage.errors import RecordingError
from storage.recordings import HEADER_BYTES, WavRecorder, repair_wav

JOURNAL_SUFFIX = ".redact"
Fill = Literal["silence", "tone"]
TONE_HZ = 1000.0
TONE_DBFS = -20.0
_RECORD = struct.Struct("<8sBxxxQ")  # magic, fill (0 silence, 1 tone), confirmed frame
_MAGIC = b"CWREDACT"
_FILLS: tuple[Fill, ...] = ("silence", "tone")


def journal_path(recording: Path) -> Path:
    return recording.with_name(recording.name + JOURNAL_SUFFIX)


def fill_frames(first: int, count: int, channels: int, rate: int, fill: Fill) -> bytes:
    """`count` interleaved int16 frames of the mask, starting at absolute frame `first` (the
    tone's phase follows the absolute frame, so pieces written apart join without a click)."""
    if fill == "silence" or count <= 0:
        return bytes(max(0, count) * channels * 2)
    amp = 32767 * 10 ** (TONE_DBFS / 20)
    n = np.arange(first, first + count, dtype=np.float64)
    tone = np.round(amp * np.sin(2 * math.pi * TONE_HZ * n / rate)).astype("<i2")
    return np.repeat(tone, channels).tobytes()


class RedactingRecorder(WavRecorder):
    """A `WavRecorder` that masks spans in place and keeps the crash journal (module doc).

    Loop side (no I/O): `redact(first, end)`, `confirm(frame)`. Worker side: `write`,
    `close`, `finish_redaction`, serialised by the caller as for `WavRecorder`.
    """

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        channels: int,
        flush_interval_s: float = 0.5,
        fsync: bool = False,
        *,
        fill: Fill = "silence",
    ) -> None:
        if fill not in _FILLS:
            raise ValueError(f"fill must be one of {_FILLS}, got {fill!r}")
        super().__init__(path, sample_rate, channels, flush_interval_s, fsync)
        self._fill: Fill = fill
        self._lock = threading.Lock()
        self._queued: list[tuple[int, int]] = []  # loop -> worker: masks not taken yet
        self._confirmed = 0  # loop -> worker: frames checked by the redactor
        self._waiting: list[tuple[int, int]] = []  # worker: masks past the written audio
        self._journaled = -1
        self.masked_frames = 0  # frames overwritten (or written masked), for the trace
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._journal = self._rw = -1
        try:
            # Created before any audio is written: a recording without its journal is clean.
            self._journal = os.open(journal_path(self.path), flags, 0o600)
            self._rw = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            self._persist(0)
        except BaseException:
            self.abandon()
            super().close()
            raise

    # -- loop side ---------------------------------------------------------------------
    def redact(self, first: int, end: int) -> None:
        """Mask frames [first, end) (clamped at 0); applied by the next write."""
        first = max(0, first)
        if end > first:
            with self._lock:
                self._queued.append((first, end))

    def confirm(self, frame: int) -> None:
        """Every frame before `frame` is checked and its masks queued (never goes back)."""
        with self._lock:
            self._confirmed = max(self._confirmed, frame)

    # -- worker side -------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        with self._lock:
            masks, self._queued = self._queued, []
            confirmed = self._confirmed
        start = self.frames_written
        end = start + len(data) // (self.channels * 2)
        if masks or self._waiting:
            data = self._apply(self._waiting + masks, start, end, data)
        super().write(data)
        self._advance(confirmed)

    def _apply(self, masks: list[tuple[int, int]], start: int, end: int, data: bytes) -> bytes:
        """Write the parts of `masks` before `start` in place, mask the chunk [start, end)
        and keep the parts after it waiting."""
        chunk = bytearray(data) if data else None
        align = self.channels * 2
        self._waiting = []
        for a, b in masks:
            if a < start:
                top = min(b, start)
                self._pwrite_fill(a, top)
            if chunk is not None and b > start and a < end:
                lo, hi = max(a, start), min(b, end)
                chunk[(lo - start) * align : (hi - start) * align] = self._fill_bytes(lo, hi)
                self.masked_frames += hi - lo
            if b > end:
                self._waiting.append((max(a, end), b))
        return bytes(chunk) if chunk is not None else data

    def _pwrite_fill(self, a: int, b: int) -> None:
        align = self.channels * 2
        step = max(1, (1 << 20) // align)  # at most 1 MiB per write
        for lo in range(a, b, step):
            hi = min(b, lo + step)
            os.pwrite(self._rw, self._fill_bytes(lo, hi), HEADER_BYTES + lo * align)
        self.masked_frames += b - a

    def _fill_bytes(self, a: int, b: int) -> bytes:
        return fill_frames(a, b - a, self.channels, self.sample_rate, self._fill)

    def _advance(self, confirmed: int) -> None:
        """Journal the confirmed frame: never past audio on disk or a mask still waiting."""
        frame = min([confirmed, self.frames_written, *(a for a, _ in self._waiting)])
        if frame <= self._journaled:
            return
        if self._fsync:
            _datasync(self._rw)  # the masks are on disk before the journal says so
        self._persist(frame)

    def _persist(self, frame: int) -> None:
        os.pwrite(self._journal, _RECORD.pack(_MAGIC, _FILLS.index(self._fill), frame), 0)
        if self._fsync:
            _datasync(self._journal)
        self._journaled = frame

    def finish_redaction(self, *, unverified: Sequence[tuple[int, int]] = ()) -> int:
        """The call is over (recorder closed, redactor flushed): apply every queued mask and
        `unverified` spans (audio never checked), sync, drop the journal. Returns the frames
        masked over the call. Idempotent; a failure leaves the journal for recovery."""
        if self._rw < 0:
            return self.masked_frames
        if not self.closed:
            raise RecordingError("finish_redaction before the recording is closed")
        with self._lock:
            masks, self._queued = self._queued + list(unverified), []
        written = self.frames_written
        self._apply(self._waiting + masks, written, written, b"")
        self._waiting = []  # past the end of the recording: nothing there to mask
        os.fsync(self._rw)
        os.close(self._rw)
        self._rw = -1
        os.close(self._journal)
        self._journal = -1  # closed: `abandon` after a failure below must not close it again
        os.unlink(journal_path(self.path))
        if self._fsync:
            _fsync_dir(self.path.parent)
        return self.masked_frames

    def abandon(self) -> None:
        """Close the descriptors and keep the journal (the call could not finish: recovery
        at the next start silences what was not confirmed)."""
        for fd in (self._rw, self._journal):
            if fd >= 0:
                os.close(fd)
        self._rw = self._journal = -1


@dataclass(frozen=True, slots=True)
class Journal:
    """What a crash left in a recording's journal: every frame before `confirmed` was
    checked; the rest is to be checked (or masked) with `fill` before the file is final."""

    confirmed: int
    fill: Fill


def read_journal(recording: Path) -> Journal | None:
    """The journal of `recording`, or None when it has none (the recording is final). A
    torn or unreadable journal confirms nothing: the whole recording is unchecked."""
    try:
        raw = journal_path(recording).read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) >= _RECORD.size:
        magic, fill_code, frame = _RECORD.unpack_from(raw)
        if magic == _MAGIC and fill_code < len(_FILLS):
            return Journal(frame, _FILLS[fill_code])
    return Journal(0, "silence")


def mask_spans(recording: Path, spans: Sequence[tuple[int, int]], fill: Fill) -> int:
    """Overwrite frames [a, b) of each span (clamped to the audio on disk) with `fill`,
    after repairing the header, and sync. Returns the frames masked (overlaps twice)."""
    frames = repair_wav(recording)
    masked = 0
    with open(recording, "r+b") as f:
        f.seek(22)
        channels, rate = struct.unpack("<HI", f.read(6))
        align = channels * 2
        step = max(1, (1 << 20) // align)  # at most 1 MiB per write
        for a, b in spans:
            for lo in range(max(0, a), min(b, frames), step):
                hi = min(b, frames, lo + step)
                f.seek(HEADER_BYTES + lo * align)
                f.write(fill_frames(lo, hi - lo, channels, rate, fill))
                masked += hi - lo
        f.flush()
        os.fsync(f.fileno())
    return masked


def drop_journal(recording: Path) -> None:
    """The recording is final (checked, or masked where it was not): remove its journal,
    durably. Only after the masks are synced (`mask_spans` does)."""
    journal_path(recording).unlink(missing_ok=True)
    _fsync_dir(recording.parent)


def recover_redaction(recording: Path) -> int | None:
    """The fallback after a crash: if `recording` still has its journal, mask every frame
    from the confirmed one to the end (with the call's fill), sync, and remove the journal.
    Returns the frames masked, or None when there was no journal. Idempotent; run it after
    `repair_wav` and before the file is sealed or served. (Start-up first tries to *check*
    that audio instead: monitor.runtime.redaction_check.)"""
    journal = read_journal(recording)
    if journal is None:
        return None
    masked = 0
    if recording.exists():
        masked = mask_spans(recording, [(journal.confirmed, 1 << 62)], journal.fill)
    drop_journal(recording)
    return masked


def _datasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
