"""The connection cap holds and costs bounded memory (RELIABILITY.md §10 N10).

The real gateway in this process (tests/gateway_support.py) with `gateway.max_calls = 20`:
30 switch connections open at once, each streaming a call. The 20 within the cap are served;
the 10 beyond it are refused with HTTP 503 before any audio; the process's resident memory
grows by no more than cap x (max_size x max_queue + 100 KiB), the most the websocket buffers
of the admitted connections may hold.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from monitor.runtime.load import rss_bytes
from tests.gateway_support import in_process_gateway

CAP, EXTRA = 20, 10
MAX_QUEUE = 16  # websockets' default high-water mark, which the gateway keeps


async def test_connections_beyond_the_cap_are_refused_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    async with in_process_gateway(tmp_path, max_calls=CAP) as gw:
        await asyncio.sleep(0.2)
        before = rss_bytes()
        assert before is not None
        opened: list[ClientConnection] = []
        refused: list[int] = []

        async def one() -> None:
            try:
                ws = await connect(gw.url, subprotocols=["audio.drachtio.org"])
            except InvalidStatus as exc:
                refused.append(exc.response.status_code)
                return
            opened.append(ws)
            await ws.send(json.dumps({"callid": f"cap-{uuid.uuid4()}", "sampleRate": 8000,
                                      "channels": 2}))  # fmt: skip
            for _ in range(50):  # 1 s of audio each
                await ws.send(b"\x01\x00" * 320)

        await asyncio.gather(*(one() for _ in range(CAP + EXTRA)))
        await asyncio.sleep(0.5)
        peak = rss_bytes()
        assert peak is not None
        try:
            assert len(opened) == CAP and refused == [503] * EXTRA
            assert len(gw.gateway.calls) == CAP
            bound = CAP * (gw.settings.gateway.max_message_bytes * MAX_QUEUE + 100 * 1024)
            assert peak - before <= bound, (peak - before, bound)
        finally:
            for ws in opened:
                await ws.close()
