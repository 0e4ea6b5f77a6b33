"""AudioHook connection probes answered per the spec and never stored; customConfig's agent
and queue used; supportedLanguages answered (issue 19 items 4 and 5)."""

from __future__ import annotations

import asyncio
import json
import uuid

from websockets.asyncio.client import connect

from monitor.wire.audiohook import NULL_UUID, AudioHookDecoder, AudioHookEncoder
from monitor.wire.events import CallStarted, Reply, Stopped
from tests.inprocess_support import ThreadedServer


def reply(ev: object) -> dict:  # type: ignore[type-arg]
    assert isinstance(ev, Reply) and ev.text is not None
    return json.loads(ev.text)  # type: ignore[no-any-return]


def test_probe_is_answered_and_is_no_call() -> None:
    enc = AudioHookEncoder(session_id=str(uuid.uuid4()))
    dec = AudioHookDecoder()
    [opened] = dec.receive_text(enc.open(conversation_id=NULL_UUID, ani="", dnis=""))
    assert reply(opened)["type"] == "opened"  # what the client's probe checks
    assert reply(opened)["parameters"]["media"][0]["channels"] == ["external", "internal"]
    assert dec.probe and dec.receive_bytes(enc.audio(b"\x00" * 640)) == []  # ignored
    [pong] = dec.receive_text(enc.ping())
    assert reply(pong)["type"] == "pong"
    closed, stopped = dec.receive_text(enc.close())
    assert reply(closed)["type"] == "closed" and stopped == Stopped("probe")


def test_custom_config_names_agent_and_queue() -> None:
    enc = AudioHookEncoder(session_id=str(uuid.uuid4()))
    dec = AudioHookDecoder()
    text = enc.open(conversation_id=str(uuid.uuid4()), ani="+1415", dnis="+1800",
                    agent="2077", queue="cards", agentName="Emily Chen")  # fmt: skip
    started, opened = dec.receive_text(text)
    assert isinstance(started, CallStarted)
    meta = started.metadata
    assert (meta.agent_id, meta.queue) == ("2077", "cards")
    assert meta.extra["agentName"] == "Emily Chen"  # the greeting's own-name check uses it
    assert meta.extra["customConfig"] == {"agent": "2077", "queue": "cards",
                                          "agentName": "Emily Chen"}  # fmt: skip
    assert "supportedLanguages" not in reply(opened)["parameters"]  # not asked for


def test_supported_languages_are_answered_when_asked() -> None:
    msg = json.loads(AudioHookEncoder(session_id="s1").open(conversation_id="c1", ani="",
                                                            dnis=""))  # fmt: skip
    msg["parameters"]["supportedLanguages"] = True
    _, opened = AudioHookDecoder().receive_text(json.dumps(msg))
    assert reply(opened)["parameters"]["supportedLanguages"] == ["en-US", "zh-CN"]


def test_probe_over_the_gateway_stores_nothing(inprocess_server: ThreadedServer) -> None:
    server = inprocess_server  # the whole server in this process, ASR scripted
    session = str(uuid.uuid4())
    enc = AudioHookEncoder(session_id=session)

    async def probe() -> list[str]:
        async with connect(server.url + "/audiohook") as ws:
            await ws.send(enc.open(conversation_id=NULL_UUID, ani="", dnis=""))
            got = [json.loads(await ws.recv())["type"]]
            await ws.send(enc.ping())
            got.append(json.loads(await ws.recv())["type"])
            await ws.send(enc.close())
            got.append(json.loads(await ws.recv())["type"])
            await ws.wait_closed()
            assert ws.close_code == 1000
            return got

    assert asyncio.run(probe()) == ["opened", "pong", "closed"]
    # A real session right after it is stored with its customConfig agent and queue.
    conv = str(uuid.uuid4())
    enc2 = AudioHookEncoder(session_id=str(uuid.uuid4()))

    async def real() -> None:
        async with connect(server.url + "/audiohook") as ws:
            await ws.send(enc2.open(conversation_id=conv, ani="+1415", dnis="+1800",
                                    agent="2077", queue="cards"))  # fmt: skip
            await ws.recv()
            await ws.send(enc2.audio(b"\x01\x00\x02\x00" * 800))
            await ws.send(enc2.close())
            await ws.recv()
            await ws.wait_closed()

    asyncio.run(real())
    call = server.wait_call(conv)
    assert (call.agent_id, call.queue) == ("2077", "cards")
    assert server.repo.get_call(NULL_UUID) is None
    assert server.repo.get_call(session) is None
    assert [c.call_id for c in server.repo.list_calls(limit=100)] == [call.call_id]
    assert "AudioHook connection probe answered" in server.log()
