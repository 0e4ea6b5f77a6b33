"""Crash recovery at start-up: calls a crash left `active` are closed as interrupted (reason
`server_crash`) with their recordings repaired to the audio that reached the disk, and calls
that hung up but never got their verdict get their trace ended (`finalised`, verdict lost).

Runs once from the composition root (`monitor.app.Callwatch.start`) before any call is
accepted, writing straight to the repository (the bus and the storage writer are not running
yet). With several nodes on one database, a node recovers only its own calls; a lost node's
calls are closed by the survivors' heartbeat (`monitor.scale.heartbeat`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from config.settings import Settings
from monitor.events import CallEvent, CallFinalised, CallSequencer, Marked, TraceKind
from monitor.runtime.logs import fields
from monitor.runtime.redaction_check import unchecked_ms
from monitor.runtime.storage_rows import rows_for
from storage.recordings import repair_wav
from storage.repository import Repository

log = logging.getLogger("callwatch.app")  # the name it always logged under
#: How far back start-up looks for calls that ended without their verdict (a crash between
#: hang-up and the last transcript; bounded so a large database is not scanned).
UNFINALISED_LOOKBACK = timedelta(days=2)


def store(repo: Repository, *events: CallEvent) -> None:
    """Write events straight to the database (start-up, before the bus runs)."""
    repo.apply([row for event in events for row in rows_for(event)])


def recover_interrupted(repo: Repository, settings: Settings) -> list[str]:
    """Close calls left `active` by a crash: repair each recording's header to the audio that
    reached the disk, and mark the call interrupted (reason `server_crash`); and end the trace
    of calls that had hung up but not got their verdict. Idempotent."""
    recovered = []
    # Several nodes on one database: only this node's calls are ours to recover.
    node = settings.node.resolved_name if settings.bus.enabled else None
    for call in repo.active_calls(node):
        path = settings.recordings_dir / call.recording_path
        frames = repair_wav(path) if path.exists() else 0
        # [hook: audio redaction] what its journal does not confirm checked is checked after
        # start (monitor.runtime.redaction_check); withheld until then
        redaction = unchecked_ms(path, call.sample_rate, frames)
        duration_ms = frames * 1000 // call.sample_rate if call.sample_rate else 0
        now = datetime.now(UTC)
        seq = CallSequencer(call.call_id, start=repo.next_trace_seq(call.call_id))
        store(
            repo,
            seq.make(Marked, media_ms=duration_ms, at=now, kind=TraceKind.FINALISED,
                     data={"status": "interrupted", "recovered": True, "frames": frames,
                           **redaction}),
            seq.make(CallFinalised, media_ms=duration_ms, at=now, ended_at=now,
                     status="interrupted", end_reason="server_crash", duration_ms=duration_ms,
                     recording_frames=frames),
        )  # fmt: skip
        log.warning(
            "recovered call left open by a crash",
            extra=fields(call_id=call.call_id, frames=frames),
        )
        recovered.append(call.call_id)
    # Hung up but cut off before the verdict: the call itself is stored; say the verdict is
    # lost, so the trace ends (`finalised`) and nothing waits for it.
    for call in repo.unfinalised_calls(datetime.now(UTC) - UNFINALISED_LOOKBACK, node):
        path = settings.recordings_dir / call.recording_path
        frames = repair_wav(path) if path.exists() else 0
        redaction = unchecked_ms(path, call.sample_rate, frames)  # [hook: audio redaction]
        seq = CallSequencer(call.call_id, start=repo.next_trace_seq(call.call_id))
        store(
            repo,
            seq.make(Marked, media_ms=call.duration_ms, kind=TraceKind.FINALISED,
                     data={"status": call.status, "recovered": True, "verdict": "lost",
                           **redaction}),
        )  # fmt: skip
        log.warning(
            "call ended before a crash without its verdict; marked finalised",
            extra=fields(call_id=call.call_id),
        )
        recovered.append(call.call_id)
    return recovered
