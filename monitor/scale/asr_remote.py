"""The gateway node's side of remote ASR: `RemoteTranscriber`, a drop-in for the local pool.

It has the pool's interface (`worker_count`, `transcribe_batch(requests) -> results`), so
`AsrService` keeps its lanes, deadlines and catch-up path unchanged (`asr.remote = true`).
Each utterance of a batch is one NATS request on `<prefix>.asr.transcribe`, served by the
queue group `asr-workers`: NATS hands it to one worker of the group, so the batch's
utterances spread over every worker there is.

Deadline and retry: an attempt not answered within `asr.remote_timeout_s` is sent again, and
the queue group gives it to a worker (the one that died is no longer a member). The earlier
attempt stays open until the overall deadline (`timeout × attempts`): whichever answer comes
first is used, and the request is then closed, so a later answer is never delivered. A
worker that is full answers "busy" at once; that attempt is re-sent after a short pause
without waiting for the deadline. No answer in time raises `AsrWorkerError`, which
`AsrService` treats like a local worker that died (retried once in the catch-up lane); when
no attempt even reached a worker (the bus is away, or no worker serves the subject) it raises
`AsrUnavailable` instead, and the service keeps the utterance until workers are back
(`AsrService`: the catch-up lane, or the recording past its bound), never shedding it.

The idempotency key (call id, party, utterance sequence) travels with the request as the
request's `tag` (AsrService sets it from `AsrJob.key`); a reply whose key is not the
request's is rejected, and results are applied idempotently by that key where they are
applied (the call's `CallTranscripts`, and storage's unique segment key).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from asr.errors import AsrError, AsrUnavailable, AsrWorkerError
from asr.types import AsrRequest, AsrResult
from config.settings import Settings
from monitor.runtime.asr_service import BatchTranscriber
from monitor.scale.envelope import (
    EnvelopeError,
    UtteranceKey,
    decode_reply,
    encode_request,
)

log = logging.getLogger("callwatch.asr.remote")

QUEUE_GROUP = "asr-workers"
#: Pause before re-sending an attempt a worker answered "busy" (or nobody served).
BUSY_PAUSE_S = 0.05
#: Outcomes that took no worker's time: re-sent until the deadline without using an attempt.
_FREE = ("busy", "no_responders")
#: Outcomes where no worker was reached at all.
_UNREACHED = frozenset({"no_responders", "unavailable"})


def asr_subject(prefix: str) -> str:
    return f"{prefix}.asr.transcribe"


class RemoteTranscriber:
    """`transcribe_batch` over NATS request/reply; counters: `requests`, `retries`, `busy`,
    `failed`, and `overhead_ms` (wall time minus the worker's compute time of
    the last replies, for the bus-overhead figures)."""

    def __init__(
        self,
        nc: Client,
        *,
        subject: str,
        timeout_s: float,
        attempts: int,
        max_bytes: int,
        concurrency: int,
    ) -> None:
        self._nc = nc
        self._subject = subject
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._max_bytes = max_bytes
        self._concurrency = concurrency
        self._anon = itertools.count()
        self.requests = 0
        self.retries = 0
        self.busy = 0
        self.failed = 0
        self.unavailable = 0  # of `failed`: no worker reachable (AsrUnavailable)
        #: Recent (wall - worker compute) per utterance, milliseconds; bounded.
        self.overhead_ms: list[float] = []

    @classmethod
    def from_settings(cls, nc: Client, settings: Settings) -> RemoteTranscriber:
        a = settings.asr
        return cls(
            nc,
            subject=asr_subject(settings.bus.prefix),
            timeout_s=a.remote_timeout_s,
            attempts=a.remote_attempts,
            max_bytes=settings.bus.max_message_bytes,
            # Utterances in flight at once from this node (AsrService runs one consumer per
            # "worker"); the workers' own bound answers "busy" beyond their capacity.
            concurrency=a.workers or 8,
        )

    @property
    def worker_count(self) -> int:
        return self._concurrency

    @property
    def reachable(self) -> bool:
        """Whether the bus is up now (the workers may still be busy or absent)."""
        return bool(self._nc.is_connected)

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    def _key(self, request: AsrRequest) -> UtteranceKey:
        tag = request.tag
        if (
            isinstance(tag, tuple)
            and len(tag) == 3
            and isinstance(tag[0], str)
            and isinstance(tag[1], str)
            and isinstance(tag[2], int)
        ):
            return tag[0], tag[1], tag[2]
        return ("", "anonymous", next(self._anon))  # no key given: still one reply per request

    async def _one(self, request: AsrRequest) -> AsrResult:
        key = self._key(request)
        data = encode_request(key, request)
        if len(data) > self._max_bytes:
            raise AsrError(
                f"utterance of {len(data)} bytes exceeds bus.max_message_bytes "
                f"({self._max_bytes}): raise it (and the server's max_payload) or lower "
                "vad.max_utterance_s"
            )
        self.requests += 1
        started = time.monotonic()
        deadline = started + self._timeout_s * self._attempts
        attempts: set[asyncio.Task[AsrResult | str]] = set()
        sent = 0
        reached = False  # a worker took (or refused) some attempt
        try:
            while (left := deadline - time.monotonic()) > 0:
                if not attempts:
                    # Nothing in flight (the first, or the last answer was "busy" / unusable).
                    if sent >= self._attempts:
                        break
                    self.retries += sent > 0
                    attempts.add(asyncio.create_task(self._attempt(key, data, left)))
                    sent += 1
                done, _ = await asyncio.wait(
                    attempts,
                    timeout=min(self._timeout_s, left),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                again = False
                for task in done:
                    attempts.discard(task)
                    outcome = task.result()
                    reached = reached or outcome not in _UNREACHED
                    if isinstance(outcome, AsrResult):
                        self._note_overhead(started, outcome)
                        return outcome
                    if outcome in _FREE:
                        sent -= 1  # no worker spent time on it: does not use up an attempt
                        again = True
                if (left := deadline - time.monotonic()) <= 0:
                    break
                if again and attempts:
                    # Busy, while an earlier attempt is still open: send again now, not only
                    # once that one gave up (an empty set is re-sent at the top of the loop).
                    attempts.add(asyncio.create_task(self._attempt(key, data, left)))
                    sent += 1
                elif not done and sent < self._attempts:
                    # This attempt's deadline passed: send it again (the queue group gives it
                    # to a live worker) while the earlier one stays open: a slow worker's
                    # answer still counts, and only the first answer is used.
                    self.retries += 1
                    attempts.add(asyncio.create_task(self._attempt(key, data, left)))
                    sent += 1
        finally:
            for task in attempts:
                task.cancel()
            for task in attempts:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.failed += 1
        # Unreachable: the bus is away now, or every answer was "no responders" / "not sent"
        # and none is still open (an open one may be with a worker).
        if not self._nc.is_connected or (not reached and not attempts):
            self.unavailable += 1
            raise AsrUnavailable(
                f"no ASR worker reachable for utterance {key[1]}#{key[2]} (bus "
                f"{'connected' if self._nc.is_connected else 'disconnected'}); kept for later"
            )
        raise AsrWorkerError(
            f"no ASR worker answered utterance {key[1]}#{key[2]} in {sent} attempt(s) of "
            f"{self._timeout_s:.1f} s: are `callwatch asr-worker`s running on this bus?"
        )

    async def _attempt(self, key: UtteranceKey, data: bytes, timeout_s: float) -> AsrResult | str:
        """One request: its result, or why it should be sent again ("busy", "no_responders",
        "timeout", "bad_reply", "unavailable")."""
        try:
            msg = await self._nc.request(self._subject, data, timeout=max(0.01, timeout_s))
        except NoRespondersError:
            await asyncio.sleep(BUSY_PAUSE_S)
            return "no_responders"
        except NatsTimeoutError:
            # Sent into the client's reconnect buffer while the bus was away: no worker had it.
            return "timeout" if self._nc.is_connected else "unavailable"
        except (NatsError, OSError) as exc:  # disconnected, outbound buffer full: wait a bit
            log.debug("ASR request not sent: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(min(1.0, timeout_s))
            return "unavailable"
        try:
            reply = decode_reply(msg.data, self._max_bytes)
        except EnvelopeError as exc:
            log.error("bad reply from an ASR worker: %s", exc)
            return "bad_reply"
        if reply.key != key:
            log.error("ASR worker replied for another utterance; ignored")
            return "bad_reply"
        if reply.status == "busy":
            self.busy += 1
            await asyncio.sleep(BUSY_PAUSE_S)
            return "busy"
        if reply.status == "error" or reply.result is None:
            # The worker could not transcribe this audio (e.g. malformed): retrying elsewhere
            # would fail the same way.
            raise AsrError(f"ASR worker failed: {reply.error or 'no result'}")
        return reply.result

    def _note_overhead(self, started: float, result: AsrResult) -> None:
        self.overhead_ms.append((time.monotonic() - started - result.compute_s) * 1000.0)
        if len(self.overhead_ms) > 10_000:
            del self.overhead_ms[:5_000]


class FallbackTranscriber:
    """`asr.local_fallback`: the remote workers first; an utterance no remote worker can be
    reached for (`AsrUnavailable`, or the bus known to be away) is transcribed by this
    node's own pool instead. Other failures are the remote tier's (retried as usual)."""

    def __init__(self, remote: RemoteTranscriber, local: BatchTranscriber) -> None:
        self.remote = remote
        self.local = local
        #: Utterances transcribed locally because the remote tier was unreachable.
        self.fell_back = 0

    @property
    def worker_count(self) -> int:
        return self.remote.worker_count

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, request: AsrRequest) -> AsrResult:
        if self.remote.reachable:
            try:
                [result] = await self.remote.transcribe_batch([request])
                return result
            except AsrUnavailable:
                pass
        if not self.fell_back:
            log.warning("remote ASR unreachable: transcribing on this node's own workers")
        self.fell_back += 1
        [result] = await self.local.transcribe_batch([request])
        return result
