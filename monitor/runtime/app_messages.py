"""Mid-stream text frames of a call (DTMF and app events aside): hold and IVR prompt markers,
and capture pause/resume (PCI, docs/privacy.md; the API's pause goes through here too).

Each frame is parsed once into a typed marker (`monitor.core.markers.parse_marker`), applied
to the call's core (music on hold and prompts are not counted as dead air or talk) and traced.
A capture pause makes the call's recording get zeros (ASR and the measures hear nothing) and
is a hold for the conversation metrics, not dead air. Frames that are not markers go into
the trace as `app_message`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.core.markers import Marker, MarkerKind, parse_marker

if TYPE_CHECKING:
    from monitor.runtime.call import LiveCall

_CAPTURE = (MarkerKind.CAPTURE_PAUSED, MarkerKind.CAPTURE_RESUMED)


async def apply(call: LiveCall, payload: Any) -> None:
    """A mid-stream text frame: a marker is applied and traced; anything else is traced."""
    marker = parse_marker(payload, call.session.duration_ms)
    if marker is not None and marker.kind in _CAPTURE:
        by = str(payload.get("by") or "switch")[:64]
        paused = marker.kind is MarkerKind.CAPTURE_PAUSED
        await set_capture(call, paused=paused, by=by, how="switch")
    elif marker is None or call.analyzer is None:
        await call.trace("app_message", payload=payload)
    else:
        await _trace_marker(call, marker, payload)


async def _trace_marker(call: LiveCall, marker: Marker, payload: Any) -> None:
    if marker.kind is MarkerKind.INVALID:
        # Kept in the trace as it came: nothing is lost, the span is just not applied.
        await call.trace("app_message", payload=payload, problem=marker.problem)
        return
    call.core.apply(marker)
    if marker.has_span:
        await call.trace(marker.kind, event=marker.event, start_ms=marker.start_ms,
                         end_ms=marker.end_ms, **marker.extra)  # fmt: skip
    else:
        await call.trace(marker.kind, event=marker.event, **marker.extra)


async def set_capture(call: LiveCall, *, paused: bool, by: str, how: str) -> bool:
    """Pause capture (PCI): from now the recording gets zeros and ASR and the quality
    measures hear nothing; for the conversation metrics the pause is a hold, not dead air.
    Or resume it. False when it already was so."""
    if call.capture_paused == paused:
        return False
    call.capture_paused = paused
    kind = MarkerKind.CAPTURE_PAUSED if paused else MarkerKind.CAPTURE_RESUMED
    call.core.apply(Marker(kind, how))
    await call.trace(kind, by=by, how=how)
    return True
