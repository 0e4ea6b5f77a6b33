"""A stored call as a vCon (IETF draft-ietf-vcon-vcon-core, JSON form, unsigned).

Mapping:
* `vcon` "0.4.0": the syntax version that draft-ietf-vcon-vcon-core-01 to -03 (July 2026, the
  current one) require. "0.0.2" was the syntax of the older individual draft
  (draft-petrie-vcon), the only one `pydantic-vcon` 0.0.2 accepts; from 0.0.2 to 0.4.0 only
  names we do not use changed (transfer_target, target_dialog, appended -> amended,
  must_support -> critical, session_id). `uuid` stable per call (UUID 5 of our call id, so
  exporting twice names the same conversation), `created_at` = call start, `subject`.
* `parties` - one per recorded party, in recording-channel order: the customer's `tel` is the
  caller number, the agent's `tel` the callee and `name` the agent id, `type` "person" (the
  draft's party type) and `role` customer/agent (an earlier draft's parameter, still read by
  the `vcon` library); then callwatch itself (`type` "bot", `role` "monitor"), the party the
  draft asks attachments to name as their provenance ("the organization that adds the
  attachment SHOULD be a Party Object").
* `dialog[0]` - the recording: type "recording", `start`, `duration` (s), `parties` as channel
  -> party index (a multi-channel recording), `mediatype` audio/x-wav (also as `mimetype`,
  the earlier name that the `vcon` library still reads), `filename`, and either an absolute
  `url` (the API's recording route under the public base URL) with `content_hash` (sha512 of
  the file as served, decrypted if sealed at rest, as the draft requires for externally
  referenced content), or, on request, the recording inline as `body` with `encoding`
  "base64url".
* `analysis` - the transcript (type "transcript", body = the segments as JSON, each with
  party index, media-time span, text, language and confidence); the quality and compliance
  results and the grade as type "report"; all with `vendor` "callwatch" and `dialog` 0.
* `attachments` - the call's switch metadata and the alerts, as JSON, tied to the dialog (they
  describe the whole call, not one caller), `party` = the callwatch party (the draft's MUST for
  provenance), `purpose` (the draft's name) and `type` (the same word: the `vcon` reference
  library requires it).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from storage.analysis import CallAnalysis
from storage.models import AlertInfo, CallDetail

VCON_VERSION = "0.4.0"
#: Role of the party that stands for callwatch itself (the attachments' provenance).
MONITOR_ROLE = "monitor"
_NAMESPACE = uuid.UUID("5f1d7a70-8f7e-4a43-9a55-6b2c0e3c1a11")


def vcon_uuid(call_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"callwatch:{call_id}"))


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def content_hash(content: Iterable[bytes] | None) -> str | None:
    if content is None:
        return None
    digest = hashlib.sha512()
    for chunk in content:
        digest.update(chunk)
    return "sha512-" + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def build(
    call: CallDetail,
    analysis: CallAnalysis,
    alerts: list[AlertInfo],
    *,
    recording: Iterable[bytes] | None,
    recording_url: str,
    inline: bool = False,
) -> dict[str, Any]:
    """The vCon of one call. `recording_url` must be absolute (a receiver has no base to
    resolve a path against); `inline` puts the recording's bytes in the document instead."""
    parties: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for p in call.parties:
        party: dict[str, Any] = {"type": "person", "role": p.party, "name": p.party}
        if p.party == "customer" and call.caller:
            party["tel"] = call.caller
        if p.party == "agent":
            if call.callee:
                party["tel"] = call.callee
            if call.agent_id:
                party["name"] = call.agent_id
        index[p.party] = len(parties)
        parties.append(party)
    monitor = len(parties)
    parties.append({"type": "bot", "role": MONITOR_ROLE, "name": "callwatch"})
    duration_ms = call.duration_ms
    if duration_ms is None and call.recording_frames and call.sample_rate:
        duration_ms = call.recording_frames * 1000 // call.sample_rate
    dialog: dict[str, Any] = {
        "type": "recording",
        "start": _time(call.started_at),
        "duration": round((duration_ms or 0) / 1000, 3),
        "parties": [index[p.party] for p in call.parties],
        "mediatype": "audio/x-wav",
        "mimetype": "audio/x-wav",
        "filename": Path(call.recording_path).name,
    }
    if inline and recording is not None:
        body = base64.urlsafe_b64encode(b"".join(recording)).decode().rstrip("=")
        dialog |= {"body": body, "encoding": "base64url"}
    else:
        dialog["url"] = recording_url
        if (digest := content_hash(recording)) is not None:
            dialog["content_hash"] = digest
    transcript = [
        {
            "party": index.get(s.party),
            "start_ms": s.start_ms,
            "end_ms": s.end_ms,
            "start": _time(call.started_at + timedelta(milliseconds=s.start_ms)),
            "text": s.text,
            "language": s.language,
            "confidence": s.confidence,
        }
        for s in call.segments
    ]
    out_analysis: list[dict[str, Any]] = [
        _analysis("transcript", {"segments": transcript}, "callwatch-transcript"),
    ]
    report = {
        "grade": call.grade,
        "score": call.score,
        "quality_score": call.quality_score,
        "compliance_score": call.compliance_score,
        "quality": analysis.result("quality"),
        "conversation": analysis.result("conversation"),
        "compliance": analysis.result("compliance"),
        "quality_by_party": analysis.results.get("quality_party", {}),
    }
    out_analysis.append(_analysis("report", report, "callwatch-quality-report"))
    attachments: list[dict[str, Any]] = [
        {
            "type": "metadata",
            "purpose": "metadata",
            "start": _time(call.started_at),
            "party": monitor,
            "dialog": 0,
            "mediatype": "application/json",
            "encoding": "json",
            "body": {
                "call_id": call.call_id,
                "external_id": call.external_id,
                "protocol": call.protocol,
                "status": call.status,
                "end_reason": call.end_reason,
                "queue": call.queue,
                "metadata": call.metadata,
            },
        }
    ]
    if alerts:
        attachments.append(
            {
                "type": "alerts",
                "purpose": "alerts",
                "start": _time(call.started_at),
                "party": monitor,
                "dialog": 0,
                "mediatype": "application/json",
                "encoding": "json",
                "body": [_alert(a) for a in alerts],
            }
        )
    return {
        "vcon": VCON_VERSION,
        "uuid": vcon_uuid(call.call_id),
        "created_at": _time(call.started_at),
        "subject": f"call {call.external_id} ({call.queue or 'no queue'})",
        "parties": parties,
        "dialog": [dialog],
        "analysis": out_analysis,
        "attachments": attachments,
    }


def _analysis(kind: str, body: Any, schema: str) -> dict[str, Any]:
    return {
        "type": kind,
        "dialog": 0,
        "vendor": "callwatch",
        "product": "callwatch",
        "schema": schema,
        "mediatype": "application/json",
        "encoding": "json",
        "body": body,
    }


def _alert(a: AlertInfo) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "rule": a.rule,
        "severity": a.severity,
        "state": a.state,
        "raised_at": _time(a.raised_at),
        "media_start_ms": a.media_start_ms,
        "media_end_ms": a.media_end_ms,
        "message": a.message,
        "evidence": a.evidence,
    }
