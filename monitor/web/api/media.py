"""Recordings over HTTP: byte-range requests (RFC 9110 §14) for seeking, and the media-time
span each request covers, for the audit row.

`parse_range` is pure: one `bytes=` range (`a-b`, `a-`, `-n`) is honoured; a header that is
not a single valid byte range is ignored (the whole file is sent, as RFC 9110 allows), and a
range starting past the end is unsatisfiable (416 with `Content-Range: bytes */size`).
Browsers' <audio> elements send exactly these single ranges while seeking.

A recording sealed at rest (storage/encryption.py) is served decrypted: `open_recording`
gives its plaintext size and reads any range by decrypting only the chunks that hold it, so
clients see the same WAV bytes, sizes and ranges either way.

Play and download differ (issue 17 item 6): a play request is always answered with a window
of at most `api.play_window_s` of audio (206 and `Content-Range`, `inline`), which is what an
<audio> element asks for anyway; only `?download=true` (qa, admin) sends the file whole, as an
attachment. Both are audited per response with the media time served.

A recording a crash left with unchecked audio (its audio-redaction journal is still there
after the call was closed) is withheld, 503, until start-up has checked it for card numbers
(monitor/runtime/redaction_check.py); then it is served as usual.

A call still running has a growing recording: each response covers the file as it is at the
time of the request (the header's sizes are rewritten at every flush, see storage/recordings).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.audio_redaction import journal_path
from storage.encryption import RecordingKey, SealedReader, read_header
from storage.recordings import HEADER_BYTES

CHUNK = 64 * 1024
#: The recording responses' validators, as the OpenAPI document declares them.
VERSION_HEADERS = {
    "ETag": {"description": "changes whenever the file does (a live call's grows)",
             "schema": {"type": "string"}},
    "Last-Modified": {"description": "when the file last changed", "schema": {"type": "string"}},
}  # fmt: skip
WITHHELD = "the recording is being checked for card numbers after a crash; try again shortly"
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(ValueError):
    """The requested range starts past the end of the file."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range asked for, clipped to the file; None means the whole file."""
    if not header:
        return None
    m = _RANGE.match(header)
    if m is None:  # several ranges, other units, garbage: ignore the header
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes=-{n} of a {size}-byte file")
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid range: ignored
    if start >= size:
        raise RangeNotSatisfiable(f"bytes={start}- of a {size}-byte file")
    end = int(last) if last else size - 1
    return ByteRange(start, min(end, size - 1))


def play_window(rng: ByteRange | None, size: int, window_bytes: int) -> ByteRange:
    """What a play request gets: the range asked for (the whole file when none), cut to at
    most `window_bytes` from its start. A player asks on from where the answer ended (its
    `Content-Range` names the full size), so listening works and seeking stays free, but no
    single play response is the recording as a file."""
    if size <= 0:
        raise RangeNotSatisfiable("an empty file")
    start, end = (0, size - 1) if rng is None else (rng.start, rng.end)
    return ByteRange(start, min(end, start + max(window_bytes, 1) - 1))


def media_span_ms(
    rng: ByteRange | None, size: int, sample_rate: int, channels: int
) -> tuple[int, int]:
    """The media time (ms) that the bytes cover, for the audit row: PCM16 frames after the
    44-byte header of callwatch's recordings."""
    start, end = (0, size - 1) if rng is None else (rng.start, rng.end)
    frame = 2 * max(channels, 1)

    def ms(byte: int) -> int:
        return max(0, byte - HEADER_BYTES) // frame * 1000 // max(sample_rate, 1)

    return ms(start), ms(end + 1)


def withheld(path: Path, status: str) -> bool:
    """A closed call whose recording still has audio-redaction work to do (module doc). A
    live call's journal is its running state: its growing recording plays as before."""
    return status != "active" and journal_path(path).exists()


def read_file(path: Path, start: int, length: int) -> Iterator[bytes]:
    """The bytes [start, start+length) in chunks (a sync iterator: Starlette runs it in its
    thread pool, so disk reads stay off the event loop)."""
    with path.open("rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:  # the file shrank under us (should not happen): stop short
                return
            left -= len(chunk)
            yield chunk


def primed(body: Iterator[bytes]) -> Iterator[bytes]:
    """`body` with its first chunk already read: a read error (EIO, a file gone) is raised
    here, before the response starts, so it can still be a 5xx."""
    first = next(body, b"")
    return itertools.chain((first,), body)


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording as clients see it: its (plaintext) size and a range reader."""

    path: Path
    size: int
    sealed: SealedReader | None

    def read(self, start: int, length: int) -> Iterator[bytes]:
        if self.sealed is not None:
            return self.sealed.read(start, length)
        return read_file(self.path, start, length)


def open_recording(path: Path, keys: Sequence[RecordingKey]) -> Recording:
    """The recording at `path`, plain or sealed (DecryptionError: no key fits)."""
    if read_header(path) is None:
        return Recording(path, path.stat().st_size, None)
    reader = SealedReader(path, keys)
    return Recording(path, reader.size, reader)
