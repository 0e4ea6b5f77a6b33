"""Remote ASR over NATS: the envelope's checks, request/reply through the queue group, a worker
killed mid-utterance (the other transcribes it; stored once), results applied idempotently,
and wrong bus credentials refused for both a worker and a node."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from asr.scripted import ScriptedTranscriber
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from config.settings import BusSettings
from monitor.core.events import Party, UtteranceEnded
from monitor.runtime.asr_service import AsrJob, AsrService
from monitor.scale.asr_remote import FallbackTranscriber, RemoteTranscriber, asr_subject
from monitor.scale.asr_worker import AsrWorkerServer
from monitor.scale.connect import connect_bus
from monitor.scale.envelope import (
    EnvelopeError,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from storage.records import CallOpened, SegmentAdded
from storage.repository import Repository
from tests.fixtures_nats import NatsEndpoint, PrivateNats
from tests.scale_support import Proc, bus_env, scripted_worker

MAX = 1024 * 1024


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


# -- the envelope (sans-I/O) -------------------------------------------------------------------
def test_envelope_round_trip_is_lossless_for_pcm16() -> None:
    pcm = (np.arange(-4000, 4000, 7, dtype=np.int16)).astype(np.float32) / 32768.0
    data = encode_request(("c1", "agent", 4800), AsrRequest(pcm, "zh", locked_language=None))
    assert len(data) < 2 * len(pcm) + 200  # PCM16 on the wire, not float32
    key, req = decode_request(data, MAX)
    assert key == ("c1", "agent", 4800) and req.tag == key and req.language == "zh"
    assert np.array_equal(req.audio, pcm)
    result = AsrResult("你好", "zh", 0.8, 1.0, 0.2, language_p=0.97, fallback="repeat")
    reply = decode_reply(encode_reply(key, "ok", result), MAX)
    assert reply.status == "ok" and reply.result is not None
    assert (reply.result.text, reply.result.language_p, reply.result.fallback) == (
        "你好", 0.97, "repeat")  # fmt: skip


def test_envelope_checks_everything_on_receive() -> None:
    good = encode_request(("c1", "agent", 1), AsrRequest(_tone(1.0)))
    with pytest.raises(EnvelopeError, match="exceeds the bound"):
        decode_request(good, max_bytes=1000)
    with pytest.raises(EnvelopeError, match="version 9"):
        decode_request(good[:3] + b"\x09" + good[4:], MAX)
    with pytest.raises(EnvelopeError, match="does not hold"):
        decode_request(good[:-2], MAX)  # the header claims more samples than sent
    with pytest.raises(EnvelopeError, match="not a callwatch"):
        decode_request(b"GET / HTTP/1.1\r\n\r\n", MAX)
    bad_header = b"CWA\x01" + (5).to_bytes(4, "big") + b"[1,2]"
    with pytest.raises(EnvelopeError, match="not a JSON object"):
        decode_request(bad_header, MAX)
    with pytest.raises(EnvelopeError, match="exceeds"):
        encode_request(("c", "agent", 0), AsrRequest(_tone(31.0)))


# -- request/reply through the queue group ----------------------------------------------------
class _Scripted:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.seen: list[object] = []
        self.took = asyncio.Event()

    @property
    def worker_count(self) -> int:
        return 1

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        self.seen.extend(r.tag for r in requests)
        self.took.set()
        await asyncio.sleep(self.delay_s)
        return [AsrResult(f"{len(r.audio)} samples", "en", 0.9, 1.0, self.delay_s, tag=r.tag)
                for r in requests]  # fmt: skip


def _bus(ep: NatsEndpoint, prefix: str) -> BusSettings:
    return BusSettings(**ep.settings(prefix=prefix))  # type: ignore[arg-type]


@pytest.mark.scaleout
async def test_remote_batch_in_order_and_a_full_worker_says_busy(nats_server: NatsEndpoint) -> None:
    bus = _bus(nats_server, f"t{time.monotonic_ns()}")
    subject = asr_subject(bus.prefix)
    worker_nc, node_nc = await connect_bus(bus, "w"), await connect_bus(bus, "n")
    scripted = _Scripted(delay_s=0.3)
    server = AsrWorkerServer(worker_nc, scripted, subject=subject, max_bytes=MAX, capacity=1)
    await server.start()
    remote = RemoteTranscriber(node_nc, subject=subject, timeout_s=5, attempts=2,
                               max_bytes=MAX, concurrency=4)  # fmt: skip
    try:
        reqs = [AsrRequest(_tone(s), tag=("c1", "customer", i)) for i, s in enumerate((0.5, 1, 2))]
        results = await remote.transcribe_batch(reqs)
        # In request order, whatever order the worker finished them in.
        assert [r.text for r in results] == ["8000 samples", "16000 samples", "32000 samples"]
        assert [r.tag for r in results] == [r.tag for r in reqs]
        # Capacity 1: the other two were answered "busy" and re-sent, never queued unbounded.
        assert server.busy >= 2 and remote.busy >= 2 and server.served == 3
        assert sorted(scripted.seen, key=str) == sorted((r.tag for r in reqs), key=str)
    finally:
        await server.close()
        await worker_nc.close()
        await node_nc.close()


@pytest.mark.scaleout
async def test_a_slow_worker_is_overtaken_and_its_late_answer_unused(
    nats_server: NatsEndpoint,
) -> None:
    """Past the deadline the request goes again; the fast worker's answer is used and the slow
    one's, arriving later, is not delivered a second time."""
    bus = _bus(nats_server, f"t{time.monotonic_ns()}")
    subject = asr_subject(bus.prefix)
    ncs = [await connect_bus(bus, n) for n in ("slow", "fast", "node")]
    slow, fast = _Scripted(delay_s=2.0), _Scripted(delay_s=0.0)
    slow_srv = AsrWorkerServer(ncs[0], slow, subject=subject, max_bytes=MAX, capacity=1)
    fast_srv = AsrWorkerServer(ncs[1], fast, subject=subject, max_bytes=MAX, capacity=1)
    remote = RemoteTranscriber(ncs[2], subject=subject, timeout_s=0.5, attempts=3,
                               max_bytes=MAX, concurrency=1)  # fmt: skip
    await slow_srv.start()
    try:
        request = AsrRequest(_tone(1.0), tag=("c2", "agent", 8000))
        pending = asyncio.create_task(remote.transcribe_batch([request]))
        await slow.took.wait()  # only the slow worker is there: it takes the first attempt
        await fast_srv.start()
        [result] = await pending
        assert result.tag == ("c2", "agent", 8000) and fast.seen == [("c2", "agent", 8000)]
        assert remote.retries >= 1
        await asyncio.sleep(2.0)  # the slow worker answers now: nobody is listening
        assert slow_srv.served == 1 and remote.requests == 1
    finally:
        for srv in (slow_srv, fast_srv):
            await srv.close()
        for nc in ncs:
            await nc.close()


@pytest.mark.scaleout
async def test_kill_9_of_a_worker_mid_utterance(
    nats_server: NatsEndpoint, pg_database_url: str
) -> None:
    """The utterance is transcribed by the other worker, and stored exactly once."""
    bus = BusSettings(**nats_server.settings())  # type: ignore[arg-type]
    nc = await connect_bus(bus, "node-a")
    remote = RemoteTranscriber(nc, subject=asr_subject(bus.prefix), timeout_s=2.0, attempts=3,
                               max_bytes=MAX, concurrency=2)  # fmt: skip
    service = AsrService(remote, queue_size=8, batch_size=1)
    service.start()
    done: list[tuple[AsrResult | None, str | None]] = []
    with scripted_worker(nats_server, "A", 1.0) as a, scripted_worker(nats_server, "B", 1.0) as b:
        pcm = (_tone(1.0) * 32767).astype(np.int16)
        utterance = UtteranceEnded(Party.CUSTOMER, 4800, 4800 + len(pcm), pcm, 900, False)
        job = AsrJob(utterance, None, lambda j, r, p: done.append((r, p)),
                     key=("call-kill", "customer", 4800))  # fmt: skip
        service.submit(job)
        deadline = time.monotonic() + 10
        while not (a.saw("transcribing") or b.saw("transcribing")):
            assert time.monotonic() < deadline, a.output() + b.output()
            await asyncio.sleep(0.01)
        victim, survivor = (a, b) if a.saw("transcribing") else (b, a)
        victim.kill9()  # mid-utterance: it took the request and will never answer
        deadline = time.monotonic() + 15
        while not done:
            assert time.monotonic() < deadline, "no result after the worker died"
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)  # room for any late duplicate to arrive (none may)
        assert survivor.saw("('call-kill', 'customer', 4800)")
    await service.close()
    await nc.close()
    assert len(done) == 1
    result, problem = done[0]
    assert problem is None and result is not None
    survivor_name = "B" if victim is a else "A"
    assert result.text == f"{survivor_name} heard 16000 samples"
    assert remote.retries >= 1

    # Stored exactly once, even when at-least-once delivery applies the same segment twice.
    repo = Repository.from_url(pg_database_url)
    try:
        repo.upgrade()
        repo.apply([CallOpened("call-kill", "ext", datetime.now(UTC), "audiofork", 8000, 2,
                               "r.wav", (("customer", 0), ("agent", 1)))])  # fmt: skip
        seg = SegmentAdded("call-kill", "customer", utterance.start_ms, utterance.end_ms,
                           result.text, result.language, result.confidence)  # fmt: skip
        repo.apply([seg])
        repo.apply([seg])
        detail = repo.get_call("call-kill")
        assert detail is not None and [s.text for s in detail.segments] == [result.text]
    finally:
        repo.close()


# -- bus authentication --------------------------------------------------------------------------
@pytest.mark.scaleout
def test_wrong_credentials_refuse_a_worker_and_a_node(
    nats_server: NatsEndpoint, pg_database_url: str, tmp_path: Path
) -> None:
    worker = Proc([sys.executable, "-m", "monitor.cli", "asr-worker"],
                  bus_env(nats_server, password="not-the-password"))  # fmt: skip
    assert worker.popen.wait(60) == 1
    worker.stop()
    out = worker.output()
    assert "refused the credentials" in out and "Authorization Violation" in out
    assert "not-the-password" not in out

    env = bus_env(nats_server, password="not-the-password")
    env.update(CALLWATCH_STORAGE__URL=pg_database_url, CALLWATCH_ASR__REMOTE="true",
               CALLWATCH_API__ENABLED="false")  # fmt: skip
    node = Proc([sys.executable, "-m", "monitor.cli", "serve", "--data-dir", str(tmp_path),
                 "--port", "0"], env)  # fmt: skip
    assert node.popen.wait(60) == 1
    node.stop()
    out = node.output()
    assert "callwatch serve: NATS at" in out and "refused the credentials" in out
    assert "not-the-password" not in out and "Traceback" not in out


# -- idempotent apply, where results are applied ------------------------------------------------
class _Room:
    """The storage writer's back-pressure seam: always room (storage is not under test)."""

    async def room(self) -> None:
        return None


async def test_a_duplicate_result_is_applied_once() -> None:
    """Two results for one utterance key (a retried remote request answered twice, or a live
    and a catch-up job both transcribed): the call applies the first, drops and counts the
    second; no second segment is published."""
    from config.settings import load_settings
    from monitor.events import CallEvent, CallSequencer, Marked, SegmentTranscribed
    from monitor.runtime.transcripts import CallTranscripts

    published: list[CallEvent] = []

    class Call(CallTranscripts):
        def __init__(self) -> None:
            self.call_id = "c-dup"
            self.settings = load_settings(env={}, privacy={"redact_transcripts": False,
                                                           "redact_audio": False})  # fmt: skip
            self.analyzer = None
            self._storage = _Room()  # type: ignore[assignment]
            self._analysis_done = False
            self._log_fields = {}
            self._tasks = set()
            self._audio_redactor = None
            self.events = CallSequencer(self.call_id)
            self._trace = lambda kind, media_ms=None, **data: self.events.make(  # type: ignore[method-assign]
                Marked, media_ms=media_ms, kind=kind, data=data)  # fmt: skip
            self.publish = published.extend  # type: ignore[method-assign]
            self._init_transcripts()

    call = Call()
    pcm = np.zeros(16000, dtype=np.int16)
    utterance = UtteranceEnded(Party.AGENT, 16000, 32000, pcm, 800, False)
    result = AsrResult("thank you for calling", "en", 0.9, 1.0, 0.1)
    first = AsrJob(utterance, None, call._on_asr, key=("c-dup", "agent", 16000))
    again = AsrJob(utterance, None, call._on_asr, key=("c-dup", "agent", 16000))
    call._pending.update({first, again})
    await call._store_result(first, result, None)
    await call._store_result(again, result, None)
    segments = [e for e in published if isinstance(e, SegmentTranscribed)]
    assert [s.text for s in segments] == ["thank you for calling"]
    assert call.duplicates == 1 and call.segments == 1 and call.asr_outstanding == 0


# -- the real model behind `callwatch asr-worker` -------------------------------------------------
@pytest.mark.slow
@pytest.mark.scaleout
async def test_callwatch_asr_worker_transcribes_with_the_real_model(
    nats_server: NatsEndpoint,
) -> None:
    """The product command, the bundled Whisper `base`, a real clip: the text through the bus
    equals the reference words (normalised), and the bus overhead is small."""
    import jiwer

    from tests.fixtures_asr import load_clip, reference

    prefix = f"real{time.monotonic_ns()}"
    env = bus_env(nats_server)
    env.update(CALLWATCH_ASR__WORKERS="1", CALLWATCH_BUS__PREFIX=prefix)
    worker = Proc([sys.executable, "-m", "monitor.cli", "asr-worker"], env)
    try:
        worker.wait_for("asr-worker ready", timeout_s=180)
        bus = BusSettings(**nats_server.settings(prefix=prefix))  # type: ignore[arg-type]
        nc = await connect_bus(bus, "node")
        remote = RemoteTranscriber(nc, subject=asr_subject(prefix), timeout_s=60, attempts=1,
                                   max_bytes=MAX, concurrency=1)  # fmt: skip
        clip = "en/ljspeech_LJ001-0004.flac"
        [result] = await remote.transcribe_batch(
            [AsrRequest(load_clip(clip), "en", tag=("c", "agent", 0))]
        )
        await nc.close()
    finally:
        worker.stop()
    norm = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.Strip(),
                          jiwer.RemoveMultipleSpaces()])  # fmt: skip
    assert jiwer.wer(norm(reference(clip)), norm(result.text)) < 0.15, result.text
    assert result.language == "en" and result.compute_s > 0
    assert remote.overhead_ms and remote.overhead_ms[0] < 500


# -- the bus away longer than the remote deadline -----------------------------------------------
@pytest.mark.scaleout
async def test_a_bus_outage_longer_than_the_deadline_delays_an_utterance_never_sheds_it(
    private_nats: PrivateNats,
) -> None:
    """NATS is away for 8x the remote deadline (0.5 s x 2 attempts): the utterance is not
    given up (`asr_shed`) but waits in the catch-up lane, and the worker transcribes it once
    NATS is back (late)."""
    prefix = f"out{time.monotonic_ns()}"
    bus = BusSettings(**private_nats.endpoint.settings(prefix=prefix))  # type: ignore[arg-type]
    with scripted_worker(private_nats.endpoint, "W", 0.02, prefix=prefix):
        nc = await connect_bus(bus, "node-out")
        remote = RemoteTranscriber(nc, subject=asr_subject(prefix), timeout_s=0.5, attempts=2,
                                   max_bytes=MAX, concurrency=2)  # fmt: skip
        service = AsrService(remote, queue_size=8, batch_size=1)
        service.start()
        done: list[tuple[AsrJob, AsrResult | None, str | None]] = []
        try:
            private_nats.stop()
            deadline = time.monotonic() + 10
            while nc.is_connected:
                assert time.monotonic() < deadline, "the client did not see NATS go"
                await asyncio.sleep(0.05)
            service.submit(_job("call-out", done))
            await asyncio.sleep(8 * 0.5 * 2)
            assert done == [], "given up during the outage"
            assert service.waited_for_workers >= 2 and remote.unavailable >= 2
            private_nats.start()
            deadline = time.monotonic() + 20
            while not done:
                assert time.monotonic() < deadline, "not transcribed after NATS came back"
                await asyncio.sleep(0.05)
        finally:
            await service.close()
            await nc.close()
    [(job, result, problem)] = done
    assert problem is None and result is not None and result.text == "W heard 16000 samples"
    assert job.late and service.failed == 0


@pytest.mark.scaleout
async def test_with_local_fallback_an_unreachable_bus_is_transcribed_on_the_node(
    private_nats: PrivateNats,
) -> None:
    """`asr.local_fallback`: with the bus away the node's own pool transcribes at once; with
    the bus back the remote workers do again."""
    prefix = f"fb{time.monotonic_ns()}"
    bus = BusSettings(**private_nats.endpoint.settings(prefix=prefix))  # type: ignore[arg-type]
    local = ScriptedTranscriber(["said on the node"], "en")
    await local.start()
    with scripted_worker(private_nats.endpoint, "W", 0.02, prefix=prefix):
        nc = await connect_bus(bus, "node-fb")
        remote = RemoteTranscriber(nc, subject=asr_subject(prefix), timeout_s=0.5, attempts=2,
                                   max_bytes=MAX, concurrency=2)  # fmt: skip
        both = FallbackTranscriber(remote, local)
        try:
            [far] = await both.transcribe_batch([AsrRequest(_tone(1.0), "en", tag=("c", "a", 1))])
            private_nats.stop()
            deadline = time.monotonic() + 10
            while nc.is_connected:
                assert time.monotonic() < deadline, "the client did not see NATS go"
                await asyncio.sleep(0.05)
            started = time.monotonic()
            [near] = await both.transcribe_batch([AsrRequest(_tone(1.0), "en", tag=("c", "a", 2))])
            assert time.monotonic() - started < 1.0  # not after the remote deadline
        finally:
            await nc.close()
            await local.close()
    assert (far.text, near.text) == ("W heard 16000 samples", "said on the node")
    assert both.fell_back == 1


def _job(call_id: str, done: list[tuple[AsrJob, AsrResult | None, str | None]]) -> AsrJob:
    pcm = (_tone(1.0) * 32767).astype(np.int16)
    utterance = UtteranceEnded(Party.CUSTOMER, 4800, 4800 + len(pcm), pcm, 900, False)
    return AsrJob(utterance, None, lambda j, r, p: done.append((j, r, p)),
                  key=(call_id, "customer", 4800))  # fmt: skip
