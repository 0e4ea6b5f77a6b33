"""Per-call WAV recordings that play in standard tools at every moment and survive `kill -9`.

This module owns the recording file format and its crash story (RELIABILITY.md §5.1): one
interleaved int16 little-endian PCM WAV per call, `channels` channels at the call's native
rate (channel 0 customer, channel 1 agent by convention of the caller).

How the work is split so the event loop never touches the disk:

* on the event loop: `append(pcm)` only keeps a reference to the bytes (no copy, no I/O);
  when `flush_due` says a flush interval of audio is buffered, `drain()` hands the buffered
  bytes over;
* on a worker thread: `write(data)` appends them with `os.write` on an unbuffered file
  descriptor and then rewrites the 44-byte header, so the RIFF and data sizes always describe
  whole frames already on disk. Data goes first and the header second: a crash in between
  leaves a header that is merely *behind* (a valid, slightly shorter file), never one that
  promises bytes that are not there. `fsync=True` also syncs after each write (survives power
  loss, costs IOPS); a process crash loses nothing `write` returned from either way.

So `kill -9` loses at most what was buffered (one flush interval, ≤ 1 s by the settings) plus a
write in flight. After a crash `repair_wav` makes the header match the whole frames on disk.
Files larger than the WAV format's 4 GiB are refused with `RecordingError` (at 8 kHz stereo
that is 37 hours). A failed write (`OSError`: disk full, I/O error) is raised after the file is
cut back to the frames its header describes; a file whose header could not be written is
removed. What a call does then is the caller's (monitor/runtime/recording.py).
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from types import TracebackType

from storage.errors import RecordingError

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
HEADER_BYTES = _HEADER.size  # 44: RIFF, fmt (16-byte PCM), data chunk header
_SAMPLE_BYTES = 2  # int16
# The RIFF size field (36 + data bytes) is 32 bits; an odd data size would need a pad byte,
# which whole int16 frames never produce.
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)
_PCM = 1
_EXTENSIBLE = 0xFFFE


def wav_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    """A canonical 44-byte PCM16 WAV header for `data_bytes` bytes of audio."""
    block_align = channels * _SAMPLE_BYTES
    return _HEADER.pack(
        b"RIFF", HEADER_BYTES - 8 + data_bytes, b"WAVE",
        b"fmt ", 16, _PCM, channels, sample_rate, sample_rate * block_align, block_align, 16,
        b"data", data_bytes,
    )  # fmt: skip


class WavRecorder:
    """One call's recording, growing on disk while the call runs.

    Creating it creates the file (and missing parent directories) with a valid header; an
    existing file is never overwritten (`FileExistsError`). The file is created mode 0o600:
    recordings hold personal data (readable by the service's user only, whatever the umask).

    Thread contract: `append`, `flush_due` and `drain` belong to one thread (the event loop);
    `write` and `close` to another (a worker), and the caller serialises them per recorder.
    The two sides share no mutable state except through the bytes `drain` returns. Call
    `close` only after the last `append`.
    """

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        channels: int,
        flush_interval_s: float = 0.5,
        fsync: bool = False,
    ) -> None:
        if not 1 <= sample_rate <= 768_000:
            raise ValueError(f"sample_rate must be in 1..768000 Hz, got {sample_rate}")
        if not 1 <= channels <= 64:
            raise ValueError(f"channels must be in 1..64, got {channels}")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self._path = Path(path)
        self._sample_rate = sample_rate
        self._channels = channels
        self._block_align = channels * _SAMPLE_BYTES
        self._flush_bytes = max(1, round(flush_interval_s * sample_rate)) * self._block_align
        self._fsync = fsync
        # Event-loop side.
        self._chunks: list[bytes] = []
        self._buffered_bytes = 0
        self._appended_frames = 0
        # Worker side.
        self._written_bytes = 0
        self._closed = False

        self._path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self._path, flags, 0o600)
        try:
            _write_all(self._fd, wav_header(sample_rate, channels, 0))
            if fsync:
                os.fsync(self._fd)
                _fsync_dir(self._path.parent)  # the new directory entry, too
        except BaseException:
            # A disk full at the header must not leave an empty file that looks like a
            # recording: the call has none.
            os.close(self._fd)
            self._path.unlink(missing_ok=True)
            raise

    @property
    def path(self) -> Path:
        return self._path

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def frames(self) -> int:
        """Frames appended so far, whether still buffered or already written."""
        return self._appended_frames

    @property
    def frames_written(self) -> int:
        """Frames handed to the OS by `write` (what a process crash cannot lose)."""
        return self._written_bytes // self._block_align

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def flush_due(self) -> bool:
        """True once at least one flush interval of audio waits in memory."""
        return self._buffered_bytes >= self._flush_bytes

    def append(self, pcm: bytes) -> None:
        """Buffer interleaved int16 little-endian frames; no I/O and no copy of `bytes`."""
        if self._closed:
            raise RecordingError(f"recording {self._path} is closed")
        size = len(pcm)
        if size % self._block_align:
            raise ValueError(
                f"pcm must be whole frames of {self._block_align} bytes "
                f"({self._channels} x int16), got {size} bytes"
            )
        if (self._appended_frames * self._block_align) + size > MAX_DATA_BYTES:
            raise RecordingError(f"recording {self._path} would exceed the 4 GiB WAV limit")
        if size:
            # bytes(...) is free for bytes and detaches a bytearray the caller may reuse.
            self._chunks.append(bytes(pcm))
            self._buffered_bytes += size
            self._appended_frames += size // self._block_align

    def drain(self) -> bytes:
        """Take the buffered audio (possibly empty) for the next `write`."""
        data = b"".join(self._chunks)
        self._chunks = []
        self._buffered_bytes = 0
        return data

    def write(self, data: bytes) -> None:
        """Append `data` (from `drain`) to the file and update the header. Blocking."""
        if self._closed:
            raise RecordingError(f"recording {self._path} is closed")
        if len(data) % self._block_align:
            raise ValueError(
                f"data must be whole frames of {self._block_align} bytes, got {len(data)} bytes"
            )
        if not data:
            return
        try:
            _write_all(self._fd, data)
        except OSError:
            # Disk full or I/O error part-way: cut the file back to what the header already
            # describes, so it stays a valid WAV and holds no torn frame (and frees the blocks).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, HEADER_BYTES + self._written_bytes)
            raise
        self._written_bytes += len(data)
        # One pwrite of the whole header (offset 0, within one page) rather than two 4-byte
        # patches, so a reader never sees a RIFF size from one write and a data size from
        # another. pwrite leaves the append position of the descriptor alone.
        header = wav_header(self._sample_rate, self._channels, self._written_bytes)
        os.pwrite(self._fd, header, 0)
        if self._fsync:
            _datasync(self._fd)

    def close(self) -> int:
        """Write what is still buffered, sync, close; returns the frames in the file.

        Always syncs once, whatever `fsync` says: a finished recording is worth one fsync.
        Closing twice returns the same count.
        """
        if self._closed:
            return self.frames_written
        try:
            self.write(self.drain())
            os.fsync(self._fd)
        finally:
            self._closed = True
            os.close(self._fd)
        return self.frames_written

    def abandon(self) -> None:
        """Close without writing what is buffered (after a failed write: the file keeps the
        frames its header describes). Idempotent."""
        if not self._closed:
            self._closed = True
            self._chunks, self._buffered_bytes = [], 0
            os.close(self._fd)

    def __enter__(self) -> WavRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def repair_wav(path: Path) -> int:
    """Make a crashed recording's header match the whole frames on disk; returns the frames.

    For files written by `WavRecorder` (the data chunk runs to the end of the file): a torn
    last frame is truncated, the RIFF and data sizes are rewritten and the file is synced.
    Running it again changes nothing. Raises `RecordingError` when the file has no usable
    RIFF/WAVE header (e.g. the crash came before the header was written).
    """
    with open(path, "r+b") as f:
        riff = f.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise RecordingError(f"{path} is not a RIFF/WAVE file")
        block_align = 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise RecordingError(f"{path} has no data chunk")
            chunk_id, chunk_size = struct.unpack("<4sI", chunk)
            if chunk_id == b"data":
                break
            body = f.read(chunk_size + (chunk_size & 1))  # chunks are padded to even sizes
            if chunk_id == b"fmt " and len(body) >= 16:
                format_tag, _channels, _rate, _byte_rate, block_align = struct.unpack(
                    "<HHIIH", body[:14]
                )
                if format_tag not in (_PCM, _EXTENSIBLE):
                    raise RecordingError(f"{path} is not PCM (format tag {format_tag:#x})")
        if block_align <= 0:
            raise RecordingError(f"{path} has no usable fmt chunk before its data")
        data_start = f.tell()
        on_disk = os.fstat(f.fileno()).st_size - data_start
        frames = min(on_disk, MAX_DATA_BYTES) // block_align
        data_bytes = frames * block_align
        sizes = struct.pack("<I", data_start - 8 + data_bytes), struct.pack("<I", data_bytes)
        f.seek(4)
        stale_riff = f.read(4) != sizes[0]
        if data_bytes == on_disk and not stale_riff and chunk_size == data_bytes:
            return frames  # already consistent: leave the file (and its mtime) alone
        f.truncate(data_start + data_bytes)
        f.seek(4)
        f.write(sizes[0])
        f.seek(data_start - 4)
        f.write(sizes[1])
        f.flush()
        os.fsync(f.fileno())
    return frames


def _write_all(fd: int, data: bytes) -> None:
    # os.write may write less than asked (signals, quotas); loop until all bytes are out.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _datasync(fd: int) -> None:
    # fdatasync skips metadata such as mtime but still persists the file size; not on macOS.
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
