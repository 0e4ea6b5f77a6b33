"""The storage package's settings: which database, and how the live writer batches.

`config.settings.Settings` embeds them as `storage`; this package owns them, like `asr` and
`audio_quality` own theirs, so the lower packages depend on nothing above them. Where
recordings live is the node's (`[node] recordings_dir`, `data_dir`), not storage's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSettings(_Section):
    """The SQL database and the live writer's group commit."""

    #: SQLAlchemy URL; default: SQLite file `<data_dir>/callwatch.db`.
    url: str | None = None
    #: SQLite `synchronous` pragma under WAL (FULL survives power loss too).
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    #: Group commit: one transaction takes everything waiting, up to this many records ...
    batch_size: int = Field(default=200, ge=1)
    #: ... and the writer pauses this long after a commit so a burst shares the next one.
    group_commit_s: float = Field(default=0.02, ge=0, le=1.0)
    #: Events waiting for the writer; audio never goes through this queue.
    queue_size: int = Field(default=10_000, ge=10)
    #: The on-disk journal of what a database outage holds back (`<data_dir>/journal`, one
    #: file per call, imported at the next start): its cap. Metrics are shed from it first
    #: (at half the cap); the calls' index (open, end, segments) has the rest.
    journal_max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    #: How long a stop waits for a database that does not answer before leaving what is
    #: held in the journal.
    close_timeout_s: float = Field(default=10.0, gt=0, le=300)
