"""A simulated switch/IVR: call scripts as data, rendered from real recordings, streamed over
the same wire format the gateway accepts, at real time or accelerated."""

from ivr_sim.script import CallScript, RenderedCall, Turn, builtin_scripts, load_script, render
from ivr_sim.stream import StreamReport, call_metadata, stream_call

__all__ = [
    "CallScript",
    "RenderedCall",
    "StreamReport",
    "Turn",
    "builtin_scripts",
    "call_metadata",
    "load_script",
    "render",
    "stream_call",
]
