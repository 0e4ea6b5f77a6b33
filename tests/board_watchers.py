"""Board websocket clients for the load tests (RELIABILITY.md B1, L3): `BoardWatcher`, one
client that reads everything, and `watch_boards`, many of them in a process of their own
(`python -m tests.board_watchers API TOKEN N ID,ID,...`): 200 clients reading every frame in
the test's own process would delay the simulated switches sharing its event loop, and a switch
that sends late looks, to the server's ingest measure, like a server that reads late.

The process connects N `BoardWatcher`s 20 ms apart, prints `ready` once all are connected,
then reads until its stdin closes, and prints one JSON line: per client, when each awaited id
first showed (`time.monotonic()`, the same clock as the test's on Linux), what never showed,
the frames received and any error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed

from ivr_sim.harness import REPO_ROOT


class BoardWatcher:
    """A board client that reads everything, noting when each awaited call first shows."""

    def __init__(self, api: str, token: str, awaited: Sequence[str] = ()) -> None:
        self.url = api.replace("http", "ws", 1) + "/board/ws"
        self.headers = {"Cookie": f"cw_token={token}"}
        self.pending = set(awaited)
        self.first_seen: dict[str, float] = {}
        self.messages = 0  # frames received (a frame holds one tick's messages)
        self.ready = asyncio.Event()
        self.error: str | None = None

    def expect(self, ids: Sequence[str]) -> None:
        self.pending.update(ids)

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        try:
            async with connect(self.url, additional_headers=self.headers, max_size=None,
                               open_timeout=60) as ws:  # fmt: skip
                self.ready.set()
                async for text in ws:
                    now = time.monotonic()
                    self.messages += 1
                    if self.pending:
                        seen = [i for i in self.pending if i in text]  # a substring: cheap
                        for i in seen:
                            self.first_seen[i] = now
                            self.pending.discard(i)
                self.error = f"closed {ws.close_code} {ws.close_reason}"
        except (OSError, ConnectionClosed, TimeoutError) as exc:
            self.error = repr(exc)
            self.ready.set()


@dataclass(frozen=True)
class Watched:
    """What one board client of `watch_boards` saw."""

    first_seen: dict[str, float]
    pending: list[str]
    frames: int
    error: str | None


@contextlib.asynccontextmanager
async def watch_boards(
    api: str, token: str, n: int, ids: Sequence[str]
) -> AsyncIterator[list[Watched]]:
    """`n` board clients awaiting `ids`, in a process of their own (tests/board_watchers.py),
    connected when this enters; what each saw fills the list when it exits."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.board_watchers", api, token, str(n), ",".join(ids),
        cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    seen: list[Watched] = []
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 180)
        if line.strip() != b"ready":
            raise RuntimeError(f"board watchers did not start: {line!r}")
        yield seen
        proc.stdin.close()
        out = await asyncio.wait_for(proc.stdout.read(), 60)
        seen.extend(Watched(**d) for d in json.loads(out.decode().splitlines()[-1]))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


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
