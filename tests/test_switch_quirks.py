"""What real audio-fork switches send (issue 19 item 7): jambonz's `call_sid` names the call,
not the SIP `call_id`; drachtio's DTMF shape `{"dtmf":…,"duration":…}` is DTMF; a close 1000
without the zero-length frame ends the call `completed`, as the README says."""

from __future__ import annotations

import asyncio
import json
import uuid

from websockets.asyncio.client import connect

from monitor.core.metadata import parse_metadata
from monitor.wire.audiofork import AudioForkDecoder
from monitor.wire.events import Dtmf
from tests.inprocess_support import ThreadedServer

JAMBONZ = {"call_sid": "b7d0c9e2-jz", "call_id": "a84b4c76e66710@10.0.0.5",
           "from": "+1415", "to": "+1800", "sampleRate": 8000, "mixType": "stereo"}  # fmt: skip


def test_jambonz_call_sid_wins_over_the_sip_call_id() -> None:
    meta = parse_metadata(json.dumps(JAMBONZ))
    assert meta.external_id == "b7d0c9e2-jz"
    assert meta.extra["call_id"] == "a84b4c76e66710@10.0.0.5"  # kept with the call
    camel = {"callSid": "CS1", "callId": "sip-1", "sampleRate": 8000}
    assert parse_metadata(json.dumps(camel)).external_id == "CS1"
    assert parse_metadata('{"callid":"fs-uuid"}').external_id == "fs-uuid"  # drachtio


def test_drachtio_dtmf_shape_is_dtmf() -> None:
    dec = AudioForkDecoder()
    dec.receive_text('{"callid":"x"}')
    assert dec.receive_text('{"dtmf":"7","duration":"1600","source":"rfc2833"}') == [
        Dtmf("7", None, 200)
    ]
    assert dec.receive_text('{"event":"dtmf","dtmf":"2","duration":"800"}') == [
        Dtmf("2", None, 100)
    ]


def test_switch_quirks_end_to_end(inprocess_server: ThreadedServer) -> None:
    server = inprocess_server  # the whole server in this process, ASR scripted
    sid = f"jz-{uuid.uuid4()}"
    meta = JAMBONZ | {"call_sid": sid}

    async def go() -> None:
        async with connect(server.url + "/audiofork", subprotocols=["audio.jambonz.org"]) as ws:
            await ws.send(json.dumps(meta))
            await ws.send(b"\x01\x00\x02\x00" * 1600)  # 200 ms
            await ws.send('{"dtmf":"5","duration":"1600"}')
            await ws.send(b"\x01\x00\x02\x00" * 1600)
        # `async with` ends with a close 1000, no zero-length frame before it

    asyncio.run(go())
    call = server.wait_call(sid)
    assert call.external_id == sid
    assert (call.status, call.end_reason) == ("completed", "normal")
    [dtmf] = [t for t in call.trace if t.kind == "dtmf"]
    assert dtmf.data["duration_ms"] == 200  # (the digit itself may be masked in the trace)
    assert not [t for t in call.trace if t.kind == "app_message"]
