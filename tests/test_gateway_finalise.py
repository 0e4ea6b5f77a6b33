"""Every call ends finalised (issue 17 item 4).

Metadata, `{"event":"unhold"}`, `{"event":"hold"}`, 50 ms of audio and a hang-up once raised
`IndexError` in the activity detector while the call was being finalised: the call stayed
`active` for ever and its `LiveCall` stayed in the gateway's registry. Hypothesis drives random
sequences of hold / IVR / pause markers, DTMF and audio chunks of any size through the real
in-process gateway and asserts that every call ends closed, with a `finalised` trace entry, and
leaves the registry; a failure injected into the end-of-call analysis still closes the call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from monitor.core.analysis import CallAnalyzer
from storage.models import CallDetail
from tests.gateway_support import InProcessGateway, in_process_gateway
from tests.wire_support import json_values

pytestmark = pytest.mark.slow
MARKERS = ["hold", "unhold", "hold_start", "off_hold", "resume", "on_hold", "paused", "resumed",
           "ivr_prompt_start", "ivr_prompt_end", "prompt_end", "queue", "transfer"]  # fmt: skip

markers = st.sampled_from(MARKERS).map(lambda e: json.dumps({"event": e}))
prompts = st.builds(
    lambda s, d: json.dumps({"event": "ivr_prompt", "start_ms": s, "duration_ms": d}),
    st.integers(-1000, 5000),
    st.integers(-100, 3000),
)
dtmf = st.sampled_from("0123456789*#").map(lambda d: json.dumps({"event": "dtmf", "digit": d}))
audio = st.builds(
    lambda n, level, seed: (
        np.random.default_rng(seed).normal(0, level, n).clip(-32768, 32767).astype("<i2").tobytes()
    ),
    st.integers(0, 6400),  # up to 400 ms of 8 kHz stereo, torn frames included
    st.sampled_from([0, 30, 3000, 20000]),
    st.integers(0, 2**16),
)
#: Any JSON under the discriminators (item 15: `{"event": {...}}` once closed the call 1011).
odd = st.dictionaries(st.sampled_from(["event", "type", "start_ms"]), json_values, max_size=3).map(
    json.dumps
)
sequences = st.lists(st.one_of(markers, prompts, dtmf, audio, odd), max_size=25)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, InProcessGateway]]:
    loop = asyncio.new_event_loop()
    cm = in_process_gateway(tmp_path_factory.mktemp("finalise"))
    gw = loop.run_until_complete(cm.__aenter__())
    yield loop, gw
    loop.run_until_complete(cm.__aexit__(None, None, None))
    loop.close()


async def run_call(gw: InProcessGateway, external_id: str, messages: list[str | bytes]) -> None:
    async with connect(gw.url + "/audiofork") as ws:
        await ws.send(json.dumps({"callSid": external_id, "sampleRate": 8000, "mixType": "stereo"}))
        for message in messages:
            await ws.send(message)
        await ws.send(b"")  # graceful shutdown, then the switch hangs up


async def closed_call(gw: InProcessGateway, external_id: str) -> CallDetail:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        call = await asyncio.to_thread(gw.repo.get_call, external_id)
        if call is not None and any(t.kind == "finalised" for t in call.trace):
            if not gw.gateway.calls:
                return call
        await asyncio.sleep(0.05)
    raise AssertionError(f"{external_id} not finalised; registry {list(gw.gateway.calls)}")


def test_reported_sequence_is_finalised(live: tuple[Any, InProcessGateway]) -> None:
    loop, gw = live
    messages: list[str | bytes] = [
        json.dumps({"event": "unhold"}),
        json.dumps({"event": "hold"}),
        bytes(2 * 2 * 400),  # 50 ms of stereo
    ]
    loop.run_until_complete(run_call(gw, "reported", messages))
    call = loop.run_until_complete(closed_call(gw, "reported"))
    assert call.status == "completed"
    assert not any(t.kind == "finalisation_error" for t in call.trace)


counter = iter(range(10**9))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=sequences)
def test_every_call_ends_finalised(
    live: tuple[Any, InProcessGateway], messages: list[str | bytes]
) -> None:
    loop, gw = live
    external_id = f"fuzz-{next(counter)}"
    loop.run_until_complete(run_call(gw, external_id, messages))
    call = loop.run_until_complete(closed_call(gw, external_id))
    assert call.status != "active" and call.ended_at is not None
    assert call.end_reason == "normal", call.end_reason  # no message closes the call 1011
    assert not any(t.kind == "finalisation_error" for t in call.trace), call.trace


def test_a_failing_analysis_still_closes_the_call(
    live: tuple[Any, InProcessGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the end-of-call verdict raises. The call is closed with what is known
    (status, recording), the failure is in its trace and the registry is empty."""

    def broken(self: CallAnalyzer) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(CallAnalyzer, "finish", broken)
    loop, gw = live
    loop.run_until_complete(run_call(gw, "broken", [bytes(2 * 2 * 8000)]))
    call = loop.run_until_complete(closed_call(gw, "broken"))
    assert (call.status, call.end_reason) == ("completed", "normal")
    assert call.recording_frames == 8000
    assert any(t.kind == "finalisation_error" for t in call.trace)
