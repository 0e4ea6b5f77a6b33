"""Recordings encrypted at rest: a chunked AES-256-GCM file format that still serves byte
ranges, sealing a finished WAV in place crash-safely, and reading it back.

Format (all integers big-endian):

    header  "CWAEAD01" | key id (8 bytes) | chunk size (u32) | plaintext size (u64)   28 bytes
    chunk i nonce (12 random bytes) | ciphertext (chunk size; the last one shorter) | tag (16)

The plaintext is the whole WAV file, header included, so a decrypted range is byte for byte
the range of the original file and the API's range requests work unchanged (a range maps to
the chunks that hold it; at 64 KiB chunks a seek decrypts at most two extra partial chunks).
Each chunk's associated data is the file header plus the chunk index: chunks cannot be
reordered, moved between files or re-keyed unnoticed, and the plaintext size in the header
makes truncation detectable. The key id (first 8 bytes of SHA-256 of the key) says which key
sealed a file, so old keys can still read after a rotation (docs/privacy.md).

Nonces are random per chunk and a chunk is encrypted once: sealing happens when the call is
finished (never on a growing file whose header is rewritten at every flush), so no nonce is
ever reused with different data. Why not encrypt while recording: the live recorder's crash
story (storage/recordings.py) relies on rewriting the WAV header in place and on
`repair_wav` reading the raw frames after `kill -9`; recovery repairs a plaintext file and
then seals it, which keeps that story intact. The price: a running call's audio is in clear
on disk (mode 0640) until the call ends.

Sealing writes `<name>.sealing`, fsyncs it, renames it over the recording and fsyncs the
directory: a crash leaves either the plaintext recording (and a stale `.sealing` file that
the next seal replaces) or the sealed one, never a half-written recording.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.errors import RecordingError

MAGIC = b"CWAEAD01"
_HEAD = struct.Struct(">8s8sIQ")
HEADER_SIZE = _HEAD.size  # 28
NONCE, TAG = 12, 16
CHUNK = 64 * 1024
SEALING_SUFFIX = ".sealing"


class DecryptionError(RecordingError):
    """A sealed recording could not be read: unknown key, or the file was altered."""


@dataclass(frozen=True, slots=True)
class RecordingKey:
    key: bytes

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.key).digest()[:8]

    @classmethod
    def parse(cls, value: bytes | str) -> RecordingKey:
        """A 32-byte key: raw bytes, or hex or base64 text (surrounding spaces ignored)."""
        raw = value.encode() if isinstance(value, str) else value
        if len(raw) == 32:
            return cls(raw)
        text = raw.strip()
        for decode in (binascii.unhexlify, base64.b64decode):
            try:
                key = decode(text)
            except (binascii.Error, ValueError):
                continue
            if len(key) == 32:
                return cls(key)
        raise ValueError("a recording key must be 32 bytes (raw, 64 hex digits or base64)")

    @classmethod
    def from_file(cls, path: Path) -> RecordingKey:
        return cls.parse(path.read_bytes())


@dataclass(frozen=True, slots=True)
class SealedHeader:
    key_id: bytes
    chunk_size: int
    plain_size: int

    def pack(self) -> bytes:
        return _HEAD.pack(MAGIC, self.key_id, self.chunk_size, self.plain_size)

    def chunk_offset(self, index: int) -> int:
        return HEADER_SIZE + index * (self.chunk_size + NONCE + TAG)

    def chunks(self) -> int:
        return -(-self.plain_size // self.chunk_size)


def read_header(path: Path) -> SealedHeader | None:
    """The header of a sealed recording, or None for a plain (WAV) file."""
    with path.open("rb") as f:
        head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE or not head.startswith(MAGIC):
        return None
    _, key_id, chunk_size, plain_size = _HEAD.unpack(head)
    if chunk_size <= 0:
        raise DecryptionError(f"{path.name}: corrupt header (chunk size 0)")
    return SealedHeader(key_id, chunk_size, plain_size)


def seal(path: Path, key: RecordingKey, *, chunk_size: int = CHUNK) -> bool:
    """Encrypt the plain recording at `path` in place; False if it was already sealed."""
    if read_header(path) is not None:
        return False
    with path.open("rb") as src:
        pieces = iter(lambda: src.read(chunk_size), b"")
        _replace_sealed(path, pieces, path.stat().st_size, key, chunk_size)
    return True


def rekey(path: Path, keys: Sequence[RecordingKey], new: RecordingKey) -> bool:
    """Re-encrypt a sealed recording with `new` (plaintext never touches the disk); False
    when it already uses `new`. A plain recording is sealed."""
    header = read_header(path)
    if header is None:
        return seal(path, new)
    if header.key_id == new.key_id:
        return False
    reader = SealedReader(path, keys)
    pieces = reader.read(0, reader.size)
    _replace_sealed(path, pieces, reader.size, new, header.chunk_size)
    return True


def _replace_sealed(
    path: Path, pieces: Iterator[bytes], plain_size: int, key: RecordingKey, chunk_size: int
) -> None:
    """Write `pieces` (each `chunk_size`, the last shorter) sealed to `<path>.sealing`, then
    atomically over `path` (see module doc)."""
    head = SealedHeader(key.key_id, chunk_size, plain_size).pack()
    aead = AESGCM(key.key)
    tmp = path.with_name(path.name + SEALING_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            for index, chunk in enumerate(pieces):
                nonce = os.urandom(NONCE)
                out.write(nonce + aead.encrypt(nonce, chunk, head + struct.pack(">Q", index)))
            out.flush()
            os.fsync(out.fileno())
        if not path.exists():  # erased or expired meanwhile: never bring the audio back
            raise FileNotFoundError(f"{path.name} was deleted while it was being sealed")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class SealedReader:
    """Reads plaintext byte ranges of a sealed recording with any of `keys`."""

    def __init__(self, path: Path, keys: Sequence[RecordingKey]) -> None:
        header = read_header(path)
        if header is None:
            raise DecryptionError(f"{path.name} is not a sealed recording")
        key = next((k for k in keys if k.key_id == header.key_id), None)
        if key is None:
            raise DecryptionError(
                f"{path.name} was sealed with key id {header.key_id.hex()}, which is not "
                "configured: add it to recording.old_key_files"
            )
        expected = HEADER_SIZE + header.plain_size + header.chunks() * (NONCE + TAG)
        if path.stat().st_size != expected:
            raise DecryptionError(f"{path.name} is truncated or extended: restore it from backup")
        self.path = path
        self.header = header
        self._aead = AESGCM(key.key)
        self._head = header.pack()

    @property
    def size(self) -> int:
        return self.header.plain_size

    def _chunk(self, f: BinaryIO, index: int) -> bytes:
        h = self.header
        length = min(h.chunk_size, h.plain_size - index * h.chunk_size)
        f.seek(h.chunk_offset(index))
        blob = f.read(NONCE + length + TAG)
        aad = self._head + struct.pack(">Q", index)
        try:
            return self._aead.decrypt(blob[:NONCE], blob[NONCE:], aad)
        except InvalidTag:
            raise DecryptionError(f"{self.path.name}: chunk {index} fails authentication") from None

    def read(self, start: int, length: int) -> Iterator[bytes]:
        """Plaintext bytes [start, start+length), chunk by chunk."""
        end = min(start + length, self.size)
        size = self.header.chunk_size
        with self.path.open("rb") as f:
            pos = start
            while pos < end:
                index = pos // size
                chunk = self._chunk(f, index)
                lo = pos - index * size
                piece = chunk[lo : lo + (end - pos)]
                yield piece
                pos += len(piece)


def unseal(path: Path, keys: Sequence[RecordingKey]) -> bytes:
    """The whole plaintext of a sealed recording (tests, rekeying small files)."""
    reader = SealedReader(path, keys)
    return b"".join(reader.read(0, reader.size))
