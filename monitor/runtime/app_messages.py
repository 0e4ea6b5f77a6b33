"""Mid-stream text frames of a call (DTMF and app events aside): hold and IVR prompt markers,
and capture pause/resume (PCI, docs/privacy.md; the API's pause goes through here too).

Every frame goes into the call's trace; hold markers and IVR prompts also tell the call's
conversation tracker, so music on hold and prompts are not counted as dead air (or talk).
A capture pause makes the call's recording get zeros (ASR and the measures hear nothing) and
is a hold for the conversation metrics, not dead air.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.runtime.call import LiveCall

#: Text-frame `event` (or `type`) values that mark the customer being put on / taken off hold.
HOLD_STARTED = frozenset({"hold", "hold_start", "hold_started", "on_hold"})
HOLD_ENDED = frozenset({"unhold", "hold_end", "hold_ended", "off_hold", "resume"})
#: Text-frame events that pause / resume capture (docs/privacy.md; also the API).
CAPTURE_PAUSE = frozenset({"pause_recording", "recording_pause", "pause_capture"})
CAPTURE_RESUME = frozenset({"resume_recording", "recording_resume", "resume_capture"})
#: IVR prompts: a start/end pair, or one `{"event":"ivr_prompt","start_ms":..,"end_ms":..}`
#: (media ms of this call; or `duration_ms` from now). Prompts are not talk or dead air.
IVR_STARTED = frozenset({"ivr_prompt_start", "ivr_prompt_started", "prompt_start"})
IVR_ENDED = frozenset({"ivr_prompt_end", "ivr_prompt_ended", "prompt_end"})
#: Keys of an `ivr_prompt` text frame that the trace entry has as its own.
_IVR_OWN = frozenset(
    {"event", "type", "start_ms", "end_ms", "duration_ms", "kind", "party", "media_ms"}
)


async def apply(call: LiveCall, payload: Any) -> None:
    """A mid-stream text frame (DTMF, app events) goes into the trace; hold markers and
    IVR prompts also tell the conversation tracker, so music on hold and prompts are not
    counted as dead air (or talk)."""
    event = payload.get("event") or payload.get("type") if isinstance(payload, dict) else None
    if event in CAPTURE_PAUSE | CAPTURE_RESUME:
        by = str(payload.get("by") or "switch")[:64]
        await set_capture(call, paused=event in CAPTURE_PAUSE, by=by, how="switch")
    elif call.analyzer is not None and event in HOLD_STARTED:
        call.analyzer.hold_started(call.session.duration_ms)
        await call.trace("hold_started", event=event)
    elif call.analyzer is not None and event in HOLD_ENDED:
        call.analyzer.hold_ended(call.session.duration_ms)
        await call.trace("hold_ended", event=event)
    elif call.analyzer is not None and event in IVR_STARTED | IVR_ENDED | {"ivr_prompt"}:
        await _on_ivr_prompt(call, event, payload)
    else:
        await call.trace("app_message", payload=payload)


async def set_capture(call: LiveCall, *, paused: bool, by: str, how: str) -> bool:
    """Pause capture (PCI): from now the recording gets zeros and ASR and the quality
    measures hear nothing; for the conversation metrics the pause is a hold, not dead air.
    Or resume it. False when it already was so."""
    if call.capture_paused == paused:
        return False
    call.capture_paused = paused
    if call.analyzer is not None:  # a hold, and no DNSMOS window over the pause
        mark = call.analyzer.capture_paused if paused else call.analyzer.capture_resumed
        mark(call.session.duration_ms)
    await call.trace("capture_paused" if paused else "capture_resumed", by=by, how=how)
    return True


async def _on_ivr_prompt(call: LiveCall, event: str, payload: dict[str, Any]) -> None:
    assert call.analyzer is not None
    analyzer, now = call.analyzer, call.session.duration_ms
    if event in IVR_STARTED:
        analyzer.ivr_prompt_started(now)
        await call.trace("ivr_prompt_started", event=event)
    elif event in IVR_ENDED:
        analyzer.ivr_prompt_ended(now)
        await call.trace("ivr_prompt_ended", event=event)
    else:
        extra = {k: v for k, v in payload.items() if k not in _IVR_OWN}
        if "end_ms" not in payload and "duration_ms" not in payload:
            # A bare marker (e.g. {"event":"ivr_prompt","prompt":"menu"}): traced, but with
            # no span there is nothing to leave out of talk time and dead air.
            await call.trace("ivr_prompt", event=event, **extra)
            return
        try:
            start = int(payload.get("start_ms", now))
            end = (
                int(payload["end_ms"])
                if "end_ms" in payload
                else start + int(payload["duration_ms"])
            )
            analyzer.ivr_prompt(start, end)
        except (TypeError, ValueError) as exc:
            # Kept in the trace as it came: nothing is lost, the span is just not applied.
            await call.trace("app_message", payload=payload, problem=f"ivr_prompt: {exc}")
            return
        await call.trace("ivr_prompt", event=event, start_ms=start, end_ms=end, **extra)
