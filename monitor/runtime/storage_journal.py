"""The storage writer's on-disk journal: what a database outage would otherwise lose
(RELIABILITY.md S2, "the DB never returns").

While the database is down (or a write has waited past `degraded_after_s`), the storage writer
(`monitor.runtime.storage_sink`) copies every row it holds, and every row it is handed after,
into this journal: one JSON-lines file per call, `<journal_dir>/<call_id>.jsonl` (the call's
local manifest: its opening row with the recording path, its segments, its end), created 0600
in a 0700 directory, appended and flushed row by row so a crash or a stop during the outage
keeps it. Once the database has taken everything the writer held, the journal is cleared.
Whatever is left at the next start is imported (`import_journal`) before crash recovery runs:
the repository's inserts are idempotent (on conflict, nothing), so rows the database did take
before it went away are not duplicated, and a call the journal shows open is then recovered
like any crashed call.

The journal is bounded by `max_bytes`. Rows that may be shed (`Policy.SHED`: readings, trace
detail, i.e. metrics) are only admitted while the journal is under half its cap, so metrics go
first and leave the other half to the call's index (open, end, segments, findings, alerts).
Kept rows are admitted up to the cap and never beyond it; a kept row that no longer fits is
still held in memory by the writer (written when the database returns), counted in
`overflow` and logged once: the cap is sized so the index of every call an outage can span
fits (a call's index is a few kilobytes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from monitor.runtime.logs import fields
from monitor.runtime.storage_rows import Policy, Row, policy_of
from storage import records as rec
from storage.repository import Repository

log = logging.getLogger("callwatch.storage")

_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (rec.CallOpened, rec.SegmentAdded, rec.TraceAdded, rec.CallClosed,
                rec.CallEnded, rec.ReadingAdded, rec.FindingAdded, rec.ResultSaved,
                rec.CallScored, rec.AlertRaised, rec.AlertChanged)
}  # fmt: skip
_DATETIMES = frozenset({"started_at", "at", "ended_at", "raised_at"})
_TUPLES = frozenset({"parties", "webhooks"})
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}")
#: Metrics are admitted while the journal is under this share of its cap.
METRICS_SHARE = 0.5


def encode(row: Row) -> str:
    """One JSON line (with its newline) holding `row`."""
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}
    for name in _DATETIMES & values.keys():
        values[name] = values[name].isoformat()
    doc = {"row": type(row).__name__, "v": values}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def decode(line: str) -> Row:
    """The row `encode` wrote; `ValueError` for anything else."""
    doc = json.loads(line)
    cls = _CLASSES.get(str(doc.get("row"))) if isinstance(doc, dict) else None
    if cls is None or not isinstance(doc.get("v"), dict):
        raise ValueError("not a journal row")
    values = dict(doc["v"])
    for name in _DATETIMES & values.keys():
        values[name] = datetime.fromisoformat(values[name])
    for name in _TUPLES & values.keys():
        values[name] = _tuples(values[name])
    row: Row = cls(**values)
    return row


def _file_name(call_id: str) -> str:
    # Call ids are ours (time-sortable, safe); anything else is hashed, never a path.
    if _SAFE_NAME.fullmatch(call_id):
        return f"{call_id}.jsonl"
    return f"call-{hashlib.sha256(call_id.encode()).hexdigest()[:32]}.jsonl"


class StorageJournal:
    """Per-call JSON-lines files under `directory`, at most `max_bytes` in all."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = directory
        self.max_bytes = max_bytes
        self._files: dict[str, IO[str]] = {}
        #: Bytes in the journal now (what an earlier run left counts too).
        self.size = sum(p.stat().st_size for p in self._paths())
        #: Rows not journaled because it was full, by row class: metrics first.
        self.shed: Counter[str] = Counter()
        #: Kept rows that did not fit (held in memory only); logged once.
        self.overflow = 0

    def _paths(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl")) if self.directory.is_dir() else []

    def append(self, rows: Iterable[Row]) -> None:
        """Journal `rows` in order, as far as the cap allows (metrics shed first)."""
        touched: set[IO[str]] = set()
        for row in rows:
            line = encode(row)
            n = len(line.encode())
            limit = self.max_bytes
            if policy_of(row) is Policy.SHED:
                limit = int(self.max_bytes * METRICS_SHARE)
            if self.size + n > limit:
                if limit < self.max_bytes:
                    self.shed[type(row).__name__] += 1
                else:
                    if not self.overflow:
                        log.error("storage journal full (%d bytes): kept rows held in memory "
                                  "only until the database is back", self.max_bytes)  # fmt: skip
                    self.overflow += 1
                continue
            f = self._open(row.call_id)
            f.write(line)
            touched.add(f)
            self.size += n
        for f in touched:  # on disk (the OS's) before the writer goes on: a crash keeps it
            f.flush()

    def _open(self, call_id: str) -> IO[str]:
        f = self._files.get(call_id)
        if f is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.directory / _file_name(call_id)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            f = self._files[call_id] = os.fdopen(fd, "a", encoding="utf-8")
        return f

    def clear(self) -> None:
        """Everything journaled is in the database: remove the files."""
        self.close()
        for path in self._paths():
            path.unlink(missing_ok=True)
        self.size = 0

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                return  # torn by a crash mid-write: the rest never reached the disk
            try:
                yield decode(line)
            except (ValueError, TypeError, KeyError) as exc:
                why = fields(file=path.name, line=n, error=type(exc).__name__)
                log.error("storage journal: unreadable row skipped", extra=why)


def _batches(rows: Iterator[Row], size: int) -> Iterator[Sequence[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_journal(repo: Repository, directory: Path, batch_size: int = 500) -> int:
    """Write what an earlier run journaled into the database (idempotent), then remove each
    file once it is stored. Returns the rows imported. Run at start-up, before recovery."""
    if not directory.is_dir():
        return 0
    total = 0
    for path in sorted(directory.glob("*.jsonl")):
        n = 0
        for batch in _batches(_rows(path), batch_size):
            repo.apply(batch)  # StorageUnavailable propagates: the start fails, the file stays
            n += len(batch)
        path.unlink()
        total += n
        log.warning("imported a call's rows from the storage journal",
                    extra=fields(file=path.name, rows=n))  # fmt: skip
    return total
