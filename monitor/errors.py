"""The monitor's exception tree. Wire violations carry the websocket close code to send."""

from __future__ import annotations


class MonitorError(Exception):
    """Base of everything the live side raises on purpose."""


class ProtocolError(MonitorError):
    """The switch broke the wire contract. `close_code` is the RFC 6455 code to answer with;
    `reason` is safe to send back and to log (it never contains audio or credentials)."""

    # RFC 6455 §7.4.1 codes used by the gateway.
    UNSUPPORTED_DATA = 1003  # wrong codec, sample rate or channel layout
    INVALID_PAYLOAD = 1007  # metadata that is not the JSON we need
    POLICY_VIOLATION = 1008  # audio before metadata, wrong message order
    MESSAGE_TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013  # too many concurrent calls

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {close_code})")
        self.close_code = close_code
        # Close reasons must fit in a control frame (123 bytes of UTF-8).
        self.reason = reason.encode()[:120].decode(errors="ignore")
