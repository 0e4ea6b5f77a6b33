"""The exceptions the `storage` package raises; callers catch `StorageError` for all of them.

The tree is deliberately small:

* `StorageError` - base class.
  * `StorageUnavailable` - the database could not be reached or stayed locked/busy after the
    retries (`OperationalError` underneath). Transient: the same batch may be retried later.
  * `BatchRejected` - a batch cannot be stored for what it contains: an invalid record (naive
    datetime, unknown close status) or one the database refuses (a segment for a call never
    opened, a `CallClosed` for an unknown call). Permanent: retrying the same batch fails the
    same way, so the writer must drop or split it.
    * `AlertNotFound` / `InvalidAlertTransition` - an alert state change names an unknown
      alert, or one whose state does not allow it (open -> acknowledged -> resolved).
  * `MigrationError` - `upgrade()` could not bring the schema to head (for example the database
    is at a revision this version of callwatch does not know).
  * `RecordingError` - a recording file cannot be written or repaired as a WAV (closed recorder,
    WAV size limit, a file without a RIFF/WAVE header).

Bad arguments (a naive `since`, an unknown status filter, a `limit` of 0, PCM that is not
whole frames) raise `ValueError` naming the parameter, as everywhere in callwatch. Plain
`OSError` from the file system is not wrapped: the caller can act on `errno` directly.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised on purpose by the `storage` package."""


class StorageUnavailable(StorageError):
    """The database failed transiently (unreachable, locked, busy) and retries ran out."""


class BatchRejected(StorageError):
    """The database refused the batch's content; retrying it unchanged cannot succeed."""


class MigrationError(StorageError):
    """The schema could not be migrated to the revision this code expects."""


class RecordingError(StorageError):
    """A recording cannot be written to or repaired as a PCM WAV file."""


class AlertNotFound(BatchRejected):
    """No alert has the given id."""


class InvalidAlertTransition(BatchRejected):
    """The alert's current state does not allow the requested change (e.g. resolved ->
    acknowledged)."""
