"""Board websocket clients in a process of their own (`python -m tests.board_watchers API
TOKEN N ID,ID,...`), for the L3 load test: 200 clients reading every frame in the test's own
process would delay the simulated switches sharing its event loop, and a switch that sends
late looks, to the server's ingest measure, like a server that reads late.

Connects N `BoardWatcher`s 20 ms apart, prints `ready` once all are connected, then reads
until its stdin closes, and prints one JSON line: per client, when each awaited id first
showed (`time.monotonic()`, the same clock as the test's on Linux), what never showed, the
frames received and any error.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tests.load_support import BoardWatcher


async def main(api: str, token: str, n: int, ids: list[str]) -> None:
    watchers = [BoardWatcher(api, token, ids) for _ in range(n)]
    tasks = []
    for w in watchers:  # a few at a time, as browsers would connect
        tasks.append(asyncio.ensure_future(w.run()))
        await asyncio.sleep(0.02)
    await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in watchers)), 120)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    doc = [{"first_seen": w.first_seen, "pending": sorted(w.pending), "frames": w.messages,
            "error": w.error} for w in watchers]  # fmt: skip
    print(json.dumps(doc), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")))
