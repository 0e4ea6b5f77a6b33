"""Sealing finished recordings (encryption at rest, `recording.encrypt`): when each call is
finalised, and a sweep at start that also covers calls a crash left behind.

Why at finalisation and not while recording: see storage/encryption.py (the live recorder
rewrites its header in place and crash recovery repairs raw frames; a finished file is
encrypted once, chunk by chunk, with fresh nonces). The sealer listens on the event bus for
`CallFinalised` (the recorder is closed before that event is published) and seals the file in a
worker thread. The bus drops the oldest events of a listener that falls behind, so a drop
triggers a sweep; the sweep at start seals what recovery of a crash (`monitor.runtime.recovery`
marks such calls interrupted first) and any earlier run left in clear. Redaction of audio
(issue 18 item 2) must be finished before `CallFinalised`, as sealing is the last write; a
recording with a journal is never sealed, and one a crash left so is sealed by `seal` once
start-up has checked it (monitor.runtime.redaction_check).

`recording_keys` turns the settings into keys for the API and the CLI too.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy import Engine, Table, select

from config.settings import Settings
from monitor.events import CallFinalised, CallStarted
from monitor.runtime.bus import EventBus, Subscription
from storage.audio_redaction import journal_path
from storage.encryption import RecordingKey, read_header, rekey, seal
from storage.models import Call

log = logging.getLogger("callwatch.sealer")
_CALLS: Table = Call.__table__  # type: ignore[assignment]


def recording_keys(settings: Settings) -> tuple[RecordingKey | None, list[RecordingKey]]:
    """The key that seals new recordings (None when encryption is off) and every key that
    may read one (it and the old ones)."""
    r = settings.recording
    current = None
    if r.encryption_key is not None:
        current = RecordingKey.parse(r.encryption_key.get_secret_value())
    elif r.encryption_key_file is not None:
        current = RecordingKey.from_file(r.encryption_key_file)
    readers = [RecordingKey.from_file(p) for p in r.old_key_files]
    return (current if r.encrypt else None), ([current] if current else []) + readers


def sweep(engine: Engine, recordings_dir: Path, key: RecordingKey, *, rotate: bool,
          keys: list[RecordingKey] | None = None, node: str | None = None) -> int:  # fmt: skip
    """Seal every finished call's recording still in clear (and with `rotate`, re-encrypt
    those sealed with an older key); the count of files written. With `node` (scale-out),
    only that node's calls: on shared recording storage two nodes must never seal one file."""
    stmt = select(_CALLS.c.recording_path).where(_CALLS.c.status != "active")
    if node is not None:
        stmt = stmt.where(_CALLS.c.node == node)
    with engine.connect() as conn:
        rows = conn.execute(stmt)
        paths = [recordings_dir / r.recording_path for r in rows]
    done = 0
    for path in paths:
        if not path.is_file() or journal_path(path).exists():
            continue  # (a journal: audio redaction unfinished; the recovery check seals it)
        if rotate:
            done += rekey(path, keys or [key], key)
        elif read_header(path) is None:
            done += seal(path, key)
    return done


class RecordingSealer:
    """Seals each call's recording once it is finalised (see module doc)."""

    def __init__(
        self, settings: Settings, engine: Engine, bus: EventBus, *, node: str | None = None
    ) -> None:
        self._settings = settings
        #: Scale-out: this node's name; the sweeps then seal only its own calls (the bus
        #: carries only its own calls' events anyway).
        self._node = node
        self._engine = engine
        self._bus = bus
        self._key, _ = recording_keys(settings)
        self._task: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self.sealed = 0

    def start(self) -> None:
        if self._key is None:
            return
        self._sub = self._bus.subscribe(maxsize=10_000)
        self._task = asyncio.create_task(self._run(self._sub, self._key), name="sealer")

    async def stop(self, timeout_s: float = 60.0) -> None:
        """Seal the calls closed so far (the subscription drains), then stop."""
        if self._task is None or self._sub is None:
            return
        self._sub.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.warning("stopping before every recording was sealed; the next start does it")
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def seal(self, path: Path) -> bool:
        """Seal one recording now (a recovered one whose audio redaction was just finished:
        its `CallFinalised` came long before); False when sealing is off or not done."""
        if self._key is None:
            return False
        done = await asyncio.to_thread(_seal_quietly, path, self._key)
        self.sealed += done
        return done

    async def _run(self, sub: Subscription, key: RecordingKey) -> None:
        rec_dir = self._settings.recordings_dir
        paths: dict[str, str] = {}  # running calls' recordings, from CallStarted
        try:
            self.sealed += await asyncio.to_thread(
                sweep, self._engine, rec_dir, key, rotate=False, node=self._node
            )
            seen_drops = 0
            async for event in sub:
                if isinstance(event, CallStarted):
                    paths[event.call_id] = event.recording_path
                elif isinstance(event, CallFinalised) and event.call_id in paths:
                    path = rec_dir / paths.pop(event.call_id)
                    self.sealed += await asyncio.to_thread(_seal_quietly, path, key)
                if sub.dropped != seen_drops:  # missed a CallFinalised, perhaps: sweep
                    seen_drops = sub.dropped
                    self.sealed += await asyncio.to_thread(
                        sweep, self._engine, rec_dir, key, rotate=False, node=self._node
                    )
        finally:
            sub.close()


def _seal_quietly(path: Path, key: RecordingKey) -> bool:
    if journal_path(path).exists():  # audio redaction unfinished: the recovery check seals it
        log.error("not sealing a recording whose audio redaction did not finish")
        return False
    try:
        return path.is_file() and seal(path, key)
    except OSError as exc:  # left in clear; the next start's sweep retries
        log.error("could not seal a recording: %s (the next start retries)", exc)
        return False
