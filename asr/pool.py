"""A pool of ASR worker processes, each holding one Whisper model shared by all calls.

This module owns running `WhisperEngine` off the event loop: `AsrPool` starts `workers`
processes (forkserver, or spawn where forkserver is missing; never fork, which would copy
the parent's threads and locks), each of which loads the model once and then transcribes
batches sent over its own pipe. The asyncio side awaits a free worker, hands the blocking
send/receive to a thread via `loop.run_in_executor`, and gets the results back; the loop never
blocks on ASR. The bounded queue in front of the pool belongs to the monitor runtime.

Why processes and not threads: measured on this 2-core machine with `base`, 20 utterances
of the shared corpus, language auto (scripts/bench_asr_workers.py, medians of 3 runs while
other jobs shared the machine), one process with one thread transcribed 2.7 audio seconds
per wall second, two single-threaded worker processes 5.3 (2.0x), one process with
`WhisperModel(num_workers=2)` driven from two threads 3.1 (1.2x), and one process with two
intra-op threads 3.3. Processes also keep a crash in native code to one worker.

A worker that dies mid-batch fails that batch with `AsrWorkerError` and is restarted before
its next batch; a batch whose caller gives up (cancels: `asr.utterance_timeout_s`, a hung
decode) kills its worker, which is then restarted the same way; a model that cannot load
fails `start()` with the worker's own `ModelLoadError` / `ModelNotFoundError`. The model is
resolved (the bundled `base` joined) once in the parent, before any worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType

from asr.engine import EngineConfig
from asr.errors import AsrError, AsrWorkerError, ModelLoadError
from asr.models import pick_device
from asr.settings import AsrSettings
from asr.types import AsrRequest, AsrResult

log = logging.getLogger(__name__)

#: Seconds a worker may take to import faster-whisper and load the model.
READY_TIMEOUT_S = 120.0


def _worker_main(conn: Connection, config: EngineConfig) -> None:
    """Body of a worker process: load the model once, then answer batches until told to stop."""
    # Ctrl-C goes to the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        engine = config.build()
    except AsrError as exc:
        conn.send(("error", exc))
        return
    except Exception as exc:  # crossing a process boundary: re-typed, not swallowed
        conn.send(("error", ModelLoadError(f"worker could not load the model: {exc!r}")))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            batch = conn.recv()
        except EOFError:  # the parent is gone
            return
        if batch is None:
            return
        try:
            reply: tuple[str, object] = ("ok", engine.transcribe_batch(batch))
        except Exception as exc:  # e.g. ValueError for bad audio: the caller's
            reply = ("error", exc)
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send(("error", AsrError(f"the batch's results could not be pickled: {exc}")))


class _Worker:
    """One worker process and the parent's end of its pipe; used by one thread at a time."""

    def __init__(self, ctx: BaseContext, config: EngineConfig, index: int) -> None:
        self._ctx = ctx
        self._config = config
        self._name = f"callwatch-asr-{index}"
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        self.closing = False
        self.killed = False  # set by kill(): the batch's end is expected, not an error

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child_end, self._config), name=self._name, daemon=True
        )
        process.start()
        child_end.close()  # so the parent sees EOF when the worker dies
        self._conn, self._process = parent_end, process

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        conn, process = self._conn, self._process
        if conn is None or process is None:
            raise AsrWorkerError(f"{self._name} was never started")
        if not conn.poll(timeout_s):
            raise ModelLoadError(f"{self._name} did not load the model within {timeout_s:.0f} s")
        try:
            kind, payload = conn.recv()
        except EOFError:
            process.join(5)
            raise ModelLoadError(
                f"{self._name} exited with code {process.exitcode} while loading the model"
            ) from None
        if kind == "error":
            raise payload
        log.info("%s ready (pid %s, model %s)", self._name, payload, self._config.model)

    def run(self, requests: list[AsrRequest]) -> list[AsrResult]:
        if self._process is None or not self._process.is_alive():
            self._restart()
        conn = self._conn
        if conn is None:
            raise AsrWorkerError(f"{self._name} is stopped")
        try:
            conn.send(requests)
            kind, payload = conn.recv()
        except (EOFError, OSError):
            code = None
            if self._process is not None:
                self._process.join(1.0)
                code = self._process.exitcode
            # Restarted lazily by the next batch: this caller gains nothing by waiting for it.
            if self.killed:  # we ended it (its caller gave up): said once, in kill()
                self.killed = False
            else:
                log.error("%s died (exit code %s) during a batch", self._name, code)
            raise AsrWorkerError(
                f"{self._name} died (exit code {code}) while transcribing "
                f"{len(requests)} utterance(s); the batch is lost"
            ) from None
        if kind == "error":
            raise payload
        results: list[AsrResult] = payload
        return results

    def _restart(self) -> None:
        if self.closing:
            raise AsrWorkerError("the ASR pool is closed")
        self.stop(timeout_s=1.0)
        self.start()
        self.wait_ready()

    def kill(self) -> None:
        """End a worker stuck in a batch (from any thread): the thread waiting on its pipe
        gets EOF, fails the batch and frees the worker, which is restarted before its next."""
        process = self._process
        if process is not None and process.is_alive():
            log.warning(
                "%s stopped: its batch was given up (asr.utterance_timeout_s, or shutdown); "
                "restarted before its next batch",
                self._name,
            )
            self.killed = True
            process.kill()

    def stop(self, timeout_s: float) -> None:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        if process is not None:
            process.join(timeout_s)
            if process.is_alive():
                process.kill()
                process.join(timeout_s)


class AsrPool:
    """Worker processes sharing out ASR batches; create, `await start()`, use, `await close()`.

    `transcribe_batch` may be awaited from many tasks at once: each waits for a free worker
    (the pool itself holds no queue of work; the runtime's bounded queue feeds it).
    """

    def __init__(self, settings: AsrSettings, cache_dir: Path) -> None:
        self._settings = settings
        self._cache_dir = cache_dir
        self._count = settings.workers or _default_workers(settings)
        self._workers: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def worker_count(self) -> int:
        """Batches this pool runs at once (`asr.workers`; when 0, one per CPU core on CPU and
        one on a GPU)."""
        return self._count

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [pid for w in self._workers if (pid := w.pid) is not None]

    async def start(self) -> None:
        """Resolve the model, start every worker and wait until each has loaded it."""
        if self._executor is not None:
            raise AsrWorkerError("AsrPool.start() was already called")
        loop = asyncio.get_running_loop()
        # One thread per worker: a thread blocks on its worker's pipe for a whole batch.
        self._executor = ThreadPoolExecutor(self._count, thread_name_prefix="asr-pool")
        config = await loop.run_in_executor(
            self._executor, EngineConfig.from_settings, self._settings, self._cache_dir
        )
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        workers = [_Worker(ctx, config, i) for i in range(self._count)]
        try:
            for worker in workers:
                worker.start()
            await asyncio.gather(
                *(loop.run_in_executor(self._executor, w.wait_ready) for w in workers)
            )
        except BaseException:
            await loop.run_in_executor(self._executor, _stop_all, workers, 2.0)
            self._executor.shutdown(wait=False)
            self._closed = True
            raise
        self._workers = workers
        self._idle = asyncio.Queue()
        for worker in workers:
            self._idle.put_nowait(worker)

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        """Transcribe `requests` in one worker; results in request order."""
        if not requests:
            return []
        if self._idle is None or self._executor is None or self._closed:
            raise AsrWorkerError("AsrPool is not started or already closed")
        worker = await self._idle.get()
        if self._closed:
            self._idle.put_nowait(worker)
            raise AsrWorkerError("AsrPool is closed")
        loop = asyncio.get_running_loop()
        idle = self._idle

        def job() -> list[AsrResult]:
            try:
                return worker.run(requests)
            finally:
                # Released only when the worker is really free, even if the awaiting task
                # was cancelled meanwhile; a closed loop means nobody is waiting any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(idle.put_nowait, worker)

        running = loop.run_in_executor(self._executor, job)
        try:
            return await running
        except asyncio.CancelledError:
            # The caller gave up (the service's per-utterance timeout, or shutdown): a decode
            # that may never end must not hold the worker, nor its thread.
            if not running.done() or running.cancelled():
                worker.kill()
            raise

    async def close(self, timeout_s: float = 10.0) -> None:
        """Let running batches finish (up to `timeout_s`), then stop every worker."""
        if self._closed:
            return
        self._closed = True
        if self._idle is None or self._executor is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for _ in self._workers:
                    await self._idle.get()
        for worker in self._workers:
            worker.closing = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _stop_all, self._workers, 2.0)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsrPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _default_workers(settings: AsrSettings) -> int:
    """One worker per CPU core; on a GPU one worker, which parallelises within a batch."""
    device, _ = pick_device(settings.device, settings.compute_type)
    return 1 if device == "cuda" else os.cpu_count() or 1


def _stop_all(workers: list[_Worker], timeout_s: float) -> None:
    for worker in workers:
        worker.closing = True
        worker.stop(timeout_s)
