"""An AudioSocket leg on a server whose event loop was starved of CPU for longer than the stall
timeout (RELIABILITY.md L1 at 40 calls on a busy box): the leg kept sending, its audio waited
in the socket, and the read's timeout and the audio fell due in the same loop turn. The call
must go on, whole, not end `stalled`.

The switch is a plain blocking socket in a thread, so it keeps sending while the test blocks
the server's loop (as a starved process would be) for 1.6 s against a 1 s stall timeout."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid

import numpy as np
import soundfile as sf

from monitor.runtime.audiosocket_server import AudioSocketServer
from monitor.wire.audiosocket import AudioSocketEncoder as Enc
from tests.runtime_support import Rig, rig_factory, until

__all__ = ["rig_factory"]  # the fixture

LEVEL, FRAMES = 300, 150  # 3 s of 20 ms frames


def _switch(port: int, leg: uuid.UUID, sent: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(Enc.uuid(leg))
        frame = Enc.audio(np.full(160, LEVEL, dtype="<i2").tobytes())
        start = time.monotonic()
        for n in range(FRAMES):
            time.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
            sock.sendall(frame)
            sent[0] += 1
        sock.sendall(Enc.hangup())
        time.sleep(0.2)


async def test_a_starved_loop_does_not_stall_a_leg_whose_audio_waited(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = await rig_factory()
    cfg = rig.settings.gateway.model_copy(update={"audiosocket_port": 0, "stall_timeout_s": 1.0})
    server = AudioSocketServer(rig.settings.model_copy(update={"gateway": cfg}), rig.gateway)
    await server.start()
    leg = uuid.UUID(uuid.uuid4().hex[:-1] + "0")
    sent = [0]
    switch = threading.Thread(target=_switch, args=(server.port, leg, sent), daemon=True)
    try:
        switch.start()
        await asyncio.sleep(0.8)
        time.sleep(1.6)  # noqa: ASYNC251 - the point: the loop starved, the switch sends on
        await asyncio.to_thread(switch.join, 10)
        assert await until(lambda: rig.finalised(str(leg)), 20) < 20
    finally:
        await server.stop()
    stored = await rig.call(str(leg))
    assert stored is not None and sent[0] == FRAMES
    assert (stored.status, stored.end_reason) == ("completed", "normal"), stored.trace
    assert not [t for t in stored.trace if t.kind == "stall"]
    rec, _ = sf.read(rig.settings.recordings_dir / stored.recording_path, dtype="int16",
                     always_2d=True)  # fmt: skip
    assert int((rec[:, 0] == LEVEL).sum()) == FRAMES * 160  # every frame, none lost
