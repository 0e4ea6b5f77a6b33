"""Calls with more than two legs (issue 19 item 13): two sides, one channel each; further legs
of a side (a transfer, a supervisor's barge-in, a conference) join that side's channel
(monitor/wire/legmix.py), and who joined and left when is in the trace.

`SideMixer` alone, then a real gateway with the real AudioSocket server: a customer leg, an
agent leg that hangs up, a second agent on the same UUID (a transfer), a supervisor on a UUID
mapped to the call (a barge-in). Each leg sends a constant level, so the recording shows
exactly which legs were summed into the agent's channel, whatever the network timing."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
import soundfile as sf

from monitor.runtime.audiosocket_server import MAX_LEGS_PER_SIDE, AudioSocketServer
from monitor.wire.audiosocket import AudioSocketEncoder as Enc
from monitor.wire.legmix import SideMixer
from tests.runtime_support import Rig, rig_factory, until

__all__ = ["rig_factory"]  # the fixture


def pcm(value: int, n: int) -> bytes:
    return np.full(n, value, dtype="<i2").tobytes()


def samples(data: bytes) -> list[int]:
    return np.frombuffer(data, dtype="<i2").tolist()


def test_side_mixer_passes_one_leg_through_and_sums_legs_at_once() -> None:
    mix = SideMixer(max_lag=4)
    mix.join("a")
    chunk = pcm(100, 3)
    assert mix.push("a", chunk) is chunk  # alone: untouched, nothing held
    mix.join("b")
    assert mix.push("a", pcm(100, 3)) == b""  # waits for b
    assert samples(mix.push("b", pcm(32700, 2))) == [32767, 32767]  # summed, saturated
    assert samples(mix.push("b", pcm(-5, 1))) == [95]
    # b stalls: a runs max_lag ahead, then b's part is silence so a is not held back.
    assert mix.push("a", pcm(100, 4)) == b""
    assert samples(mix.push("a", pcm(100, 2))) == [100, 100]
    assert samples(mix.leave("b")) == [100] * 4  # what a still held, b padded with silence
    assert mix.legs == 1 and mix.push("a", chunk) is chunk
    with pytest.raises(ValueError, match="twice"):
        mix.join("a")
    with pytest.raises(KeyError):
        mix.push("b", chunk)


def _server(rig: Rig, legs: dict[str, str]) -> AudioSocketServer:
    cfg = rig.settings.gateway.model_copy(update={"audiosocket_port": 0, "audiosocket_legs": legs})
    return AudioSocketServer(rig.settings.model_copy(update={"gateway": cfg}), rig.gateway)


async def _leg(port: int, leg: uuid.UUID) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(Enc.uuid(leg))
    await writer.drain()
    return reader, writer


async def _talk(writers: dict[str, asyncio.StreamWriter], levels: dict[str, int], s: float) -> None:
    """Every leg sends its level, 20 ms a message, in lock-step at 4x real time."""
    for _ in range(round(s * 50)):
        for name, w in writers.items():
            w.write(Enc.audio(pcm(levels[name], 160)))
        await asyncio.gather(*(w.drain() for w in writers.values()))
        await asyncio.sleep(0.005)


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    writer.write(Enc.hangup())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_transfer_and_barge_in_join_the_agent_side(rig_factory) -> None:  # type: ignore[no-untyped-def]
    key = uuid.uuid4().hex[:-1]
    customer, agent = uuid.UUID(key + "0"), uuid.UUID(key + "1")
    supervisor = uuid.uuid4()
    rig: Rig = await rig_factory()
    server = _server(rig, {str(supervisor): f"{uuid.UUID(key + '0')}:agent"})
    await server.start()
    try:
        legs = {"customer": await _leg(server.port, customer),
                "agent1": await _leg(server.port, agent)}  # fmt: skip
        w = {k: v[1] for k, v in legs.items()}
        levels = {"customer": 200, "agent1": 500, "agent2": 1000, "supervisor": 300}
        await _talk(w, levels, 2.0)
        await _hang_up(w.pop("agent1"))  # the first agent transfers the call ...
        await _talk(w, levels, 0.5)
        w["agent2"] = (await _leg(server.port, agent))[1]  # ... to a second agent
        await _talk(w, levels, 2.0)
        w["supervisor"] = (await _leg(server.port, supervisor))[1]  # who is barged in on
        await _talk(w, levels, 2.0)
        await _hang_up(w.pop("supervisor"))
        await _talk(w, levels, 1.0)
        await _hang_up(w.pop("agent2"))
        await _hang_up(w.pop("customer"))
        ext = str(customer)
        assert await until(lambda: rig.finalised(ext), 30) < 30
    finally:
        await server.stop()
    stored = await rig.call(ext)
    assert stored is not None
    assert (stored.status, stored.end_reason, stored.channels) == ("completed", "normal", 2)
    assert {p.party: p.channel for p in stored.parties} == {"customer": 0, "agent": 1}
    rec, _ = sf.read(rig.settings.recordings_dir / stored.recording_path, dtype="int16",
                     always_2d=True)  # fmt: skip
    agent_ch = rec[:, 1]
    seconds = {v: int((agent_ch == v).sum()) / 8000 for v in (500, 1000, 1300)}
    # agent 1 alone, agent 2 alone (before and after the barge-in), agent 2 + supervisor.
    assert seconds[500] == pytest.approx(2.0, abs=0.1), seconds
    assert seconds[1000] == pytest.approx(3.0, abs=0.15), seconds
    assert seconds[1300] == pytest.approx(2.0, abs=0.15), seconds
    assert set(np.unique(agent_ch)) <= {0, 300, 500, 1000, 1300}
    assert set(np.unique(rec[:, 0])) <= {0, 200}
    joined = [t for t in stored.trace if t.kind == "participant_joined"]
    assert [(j.party, j.data["mode"], j.data["uuid"]) for j in joined] == [
        ("agent", "transfer", str(agent)), ("agent", "conference", str(supervisor))]  # fmt: skip
    ended = [(t.party, t.data["reason"]) for t in stored.trace if t.kind == "leg_ended"]
    assert ended == [("agent", "normal")] * 3 + [("customer", "normal")]
    media = [t.media_ms for t in stored.trace if t.kind == "participant_joined"]
    assert media[0] is not None and media[1] is not None and media[0] < media[1]


async def test_a_side_takes_a_bounded_number_of_legs(rig_factory) -> None:  # type: ignore[no-untyped-def]
    key = uuid.uuid4().hex[:-1]
    rig: Rig = await rig_factory()
    server = _server(rig, {})
    await server.start()
    try:
        legs = [await _leg(server.port, uuid.UUID(key + "1")) for _ in range(MAX_LEGS_PER_SIDE)]
        legs.append(await _leg(server.port, uuid.UUID(key + "0")))
        for _, w in legs:
            w.write(Enc.audio(pcm(100, 160)))
            await w.drain()
        reader, writer = await _leg(server.port, uuid.UUID(key + "1"))
        # The extra leg is refused (AudioSocket's terminate message, then the socket closes).
        assert await asyncio.wait_for(reader.read(), 5) == Enc.terminate()
        writer.close()
        for _, w in legs:
            await _hang_up(w)

        async def ended() -> bool:
            call = await rig.call(str(uuid.UUID(key + "0")))
            return call is not None and call.status == "completed"

        assert await until(ended, 10) < 10
    finally:
        await server.stop()


async def test_a_leg_that_joins_late_starts_where_the_trace_says(rig_factory) -> None:  # type: ignore[no-untyped-def]
    # The customer talks 2 s alone; the agent's leg then joins. Its audio starts at the call's
    # time then (silence before), and the trace's `leg_joined` says at which sample, exactly.
    key = uuid.uuid4().hex[:-1]
    customer, agent = uuid.UUID(key + "0"), uuid.UUID(key + "1")
    rig: Rig = await rig_factory()
    server = _server(rig, {})
    await server.start()
    try:
        w = {"customer": (await _leg(server.port, customer))[1]}
        levels = {"customer": 200, "agent": 500}
        await _talk(w, levels, 2.0)
        w["agent"] = (await _leg(server.port, agent))[1]
        await _talk(w, levels, 1.0)
        await _hang_up(w.pop("agent"))
        await _hang_up(w.pop("customer"))
        assert await until(lambda: rig.finalised(str(customer)), 30) < 30
    finally:
        await server.stop()
    stored = await rig.call(str(customer))
    assert stored is not None
    rec, _ = sf.read(rig.settings.recordings_dir / stored.recording_path, dtype="int16",
                     always_2d=True)  # fmt: skip
    at = {t.party: t.data["at_sample"] for t in stored.trace if t.kind == "leg_joined"}
    assert at["customer"] == 0
    # The agent joined after some of the customer's 2 s (how much the server had read by then)
    assert 0 < at["agent"] <= 2 * 8000
    agent_ch = rec[:, 1]
    assert int(np.flatnonzero(agent_ch)[0]) == at["agent"]
    assert int((agent_ch == 500).sum()) == 8000  # all of its 1 s, none lost or doubled
    assert int((rec[:, 0] == 200).sum()) == 3 * 8000
