"""`callwatch asr-worker`: the shared ASR tier, serving utterances from NATS.

This module owns the worker side of remote ASR. `AsrWorkerServer` subscribes to
`<prefix>.asr.transcribe` in the queue group `asr-workers` (NATS gives each request to one
member, so any number of workers on any machines share the load) and answers each request
with the result from a local transcriber: the same `AsrPool` of model processes that a
single box uses, loaded once at start (`run_asr_worker`).

Bounded: at most `capacity` utterances are taken at once (the pool's workers, plus as many
waiting); past that a request is answered "busy" at once, so the node re-sends it and NATS
can give it to a less busy worker, instead of this one queueing without bound. A message
that fails the envelope's checks is answered "error" without touching the model. On SIGTERM
the worker leaves the queue group first, finishes what it took, then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from config.settings import Settings
from monitor.runtime.asr_service import BatchTranscriber
from monitor.scale.asr_remote import QUEUE_GROUP, asr_subject
from monitor.scale.connect import connect_bus
from monitor.scale.envelope import EnvelopeError, UtteranceKey, decode_request, encode_reply

log = logging.getLogger("callwatch.asr.worker")


class AsrWorkerServer:
    """Create, `await start()`, `await close()`; counters `served`, `busy`, `bad`."""

    def __init__(
        self,
        nc: Client,
        transcriber: BatchTranscriber,
        *,
        subject: str,
        max_bytes: int,
        capacity: int,
        queue: str = QUEUE_GROUP,
    ) -> None:
        self._nc = nc
        self._transcriber = transcriber
        self._subject = subject
        self._queue = queue
        self._max_bytes = max_bytes
        self._capacity = capacity
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.served = 0
        self.busy = 0
        self.bad = 0

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._subject, queue=self._queue, cb=self._on_msg)
        await self._nc.flush()  # the subscription is known to the server before "ready"

    async def _on_msg(self, msg: Msg) -> None:
        # Runs on the subscription's task: only decide here, transcribe in a task of its own.
        if len(self._tasks) >= self._capacity:
            self.busy += 1
            with contextlib.suppress(EnvelopeError):
                key, _ = decode_request(msg.data, self._max_bytes)
                await msg.respond(encode_reply(key, "busy"))
            return
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        key: UtteranceKey = ("", "", 0)
        try:
            key, request = decode_request(msg.data, self._max_bytes)
        except EnvelopeError as exc:
            self.bad += 1
            log.warning("rejected an ASR request: %s", exc)
            await msg.respond(encode_reply(key, "error", error=f"bad request: {exc}"))
            return
        try:
            [result] = await self._transcriber.transcribe_batch([request])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the model failed on this audio: say so, keep serving
            log.error("transcription failed: %s: %s", type(exc).__name__, exc)
            await msg.respond(encode_reply(key, "error", error=type(exc).__name__))
            return
        self.served += 1
        await msg.respond(encode_reply(key, "ok", result))

    async def close(self, timeout_s: float = 30.0) -> None:
        """Leave the queue group (no new work), then let taken work finish."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()


async def serve_asr(
    settings: Settings,
    transcriber: BatchTranscriber,
    stop: asyncio.Event,
    nc: Client,
) -> AsrWorkerServer:
    """Serve `transcriber` on `nc` until `stop` is set (used by the CLI and the tests)."""
    server = AsrWorkerServer(
        nc,
        transcriber,
        subject=asr_subject(settings.bus.prefix),
        max_bytes=settings.bus.max_message_bytes,
        capacity=2 * max(1, transcriber.worker_count),
    )
    try:
        await server.start()
        # Tests and operators wait for this line.
        log.info(
            "asr worker ready: %d model worker(s), subject %s, queue group %s",
            transcriber.worker_count,
            asr_subject(settings.bus.prefix),
            QUEUE_GROUP,
        )
        print(f"asr-worker ready ({transcriber.worker_count} model workers)", flush=True)
        await stop.wait()
    finally:
        await server.close()
        # Its subscription is closed and its replies sent: flush and close (`drain()` can
        # wait out its timeout on the client's internal subscriptions).
        with contextlib.suppress(Exception):
            await nc.flush(timeout=5)
        await nc.close()
    return server


async def connect_worker(settings: Settings, name: str | None = None) -> Client:
    return await connect_bus(
        settings.bus, name or f"callwatch-asr-worker-{settings.node.resolved_name}"
    )


def run_asr_worker(settings: Settings) -> int:
    """`callwatch asr-worker`: load the model once, serve until SIGINT/SIGTERM."""
    from asr.pool import AsrPool

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Log in before loading the model: wrong credentials fail in a second, not after it.
        nc = await connect_worker(settings)
        async with AsrPool(settings.asr, settings.model_cache_dir) as pool:
            await serve_asr(settings, pool, stop, nc)

    asyncio.run(main())
    return 0
