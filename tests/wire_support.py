"""Shared pieces of the wire-codec property tests: random JSON values, and feeding a decoder
arbitrary frames, where the only allowed failure is a `ProtocolError` a switch can be told."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from hypothesis import strategies as st

from monitor.errors import ProtocolError

#: Any JSON value, nested a little: what a confused or hostile peer may put in a field.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


class Decoder(Protocol):
    def receive_text(self, text: str) -> Sequence[Any]: ...
    def receive_bytes(self, data: bytes) -> Sequence[Any]: ...


def feed_random(dec: Decoder, messages: list[str | bytes]) -> list[Any]:
    """Every event the decoder emits for `messages`. A message it refuses must raise a
    `ProtocolError` with a websocket close code for bad data and a reason that fits a close
    frame (123 bytes); the decoder then takes the next message as before."""
    events: list[Any] = []
    for message in messages:
        try:
            out = (
                dec.receive_text(message)
                if isinstance(message, str)
                else dec.receive_bytes(message)
            )
        except ProtocolError as exc:
            assert exc.close_code in (1003, 1007, 1008) and len(exc.reason.encode()) <= 123
            continue
        events.extend(out)
    return events
