"""Overload: the state machine, what the operator is told (/api/health, the log), what gives
way first (DNSMOS), and the 503 past a declared capacity or while overloaded."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from audio_quality.dnsmos import WINDOW_SAMPLES, DnsmosScorer, DnsmosWindow
from config.settings import LoadSettings
from ivr_sim import stream_call
from ivr_sim.stream import call_metadata
from monitor.runtime.dnsmos_service import DnsmosService
from monitor.runtime.load import LoadMonitor, LoadWatch, rss_bytes
from monitor.web.api.app import create_app
from monitor.web.api.context import ApiContext
from tests.runtime_support import Rig, rig_factory, script, until

__all__ = ["rig_factory"]  # the fixture
S = LoadSettings(overload_lag_s=4.0, recover_s=10.0)


def test_overloaded_on_lag_or_deferral_and_back_only_after_a_calm_spell() -> None:
    w = LoadWatch(S)
    assert w.observe(0.0, 3.9, 0) is None and not w.overloaded
    up = w.observe(1.0, 4.0, 0)
    assert up is not None and up.overloaded and up.reason == "asr_lag"
    assert w.observe(2.0, 9.0, 0) is None  # told once per transition
    assert w.observe(3.0, 1.9, 0) is None  # calm starts ...
    assert w.observe(12.0, 2.5, 0) is None  # ... and is broken (over half the threshold)
    assert w.observe(13.0, 0.0, 0) is None
    assert w.observe(22.9, 0.0, 0) is None and w.overloaded
    down = w.observe(23.0, 0.0, 0)
    assert down is not None and not down.overloaded and down.reason == "recovered"
    again = w.observe(24.0, 0.0, 1)  # no lag, but ASR deferred an utterance
    assert again is not None and again.overloaded and again.reason == "asr_deferred"
    assert w.observe(30.0, 0.0, 2) is None and w.observe(39.9, 0.0, 0) is None
    assert w.overloaded  # a deferral restarts the calm spell
    assert w.observe(40.0, 0.0, 0, busy=True) is None  # ASR behind: no calm yet
    assert w.observe(50.5, 0.0, 0) is None and w.overloaded
    busy = LoadWatch(S).observe(0.0, 0.0, 0, busy=True)
    assert busy is not None and busy.reason == "asr_backlog"


def test_rss_of_this_process_is_read() -> None:
    rss = rss_bytes()
    assert rss is not None and rss > 10_000_000
    assert rss_bytes(2**22 + 12345) is None  # no such process


async def test_overload_is_told_in_health_and_log_dnsmos_gives_way_and_new_calls_get_503(
    rig_factory,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig: Rig = await rig_factory(open_gate=False, load={"refuse_when_overloaded": True,
                                                        "overload_lag_s": 1.0})  # fmt: skip
    dnsmos = DnsmosService(await asyncio.to_thread(DnsmosScorer), max_batch=2)
    dnsmos.start()
    monitor = LoadMonitor(rig.settings.load, gateway=rig.gateway, asr=rig.asr, dnsmos=dnsmos,
                          dnsmos_sample_every_s=45.0, storage=rig.storage)  # fmt: skip
    app = create_app(ApiContext.for_repo(rig.settings, rig.repo, health=monitor.health))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    try:
        h = (await http.get("/api/health")).json()
        assert h["status"] == "ok" and h["overloaded"] is False and h["degraded"] == []
        assert h["memory"]["server_rss_bytes"] > 0 and h["dnsmos"]["cpu_s"] == 0
        assert set(h["asr"]) >= {"lag_s", "backlog", "deferred"} and h["calls"]["live"] == 0
        assert h["storage"] == {"backlog": 0, "written": 0, "rejected": 0, "shed": {},
                                "shed_total": 0, "status": "ok", "since": None,
                                "waiting_s": 0.0, "failing": False, "queued": 0}  # fmt: skip

        # A call whose transcripts cannot come (ASR is held): its lag passes 1 s.
        call = script("en_billing_8k.toml")
        meta = call_metadata(call)
        streaming = asyncio.create_task(stream_call(rig.gateway.url, call, pace=4.0,
                                                    metadata=meta))  # fmt: skip

        async def lagging() -> bool:
            return monitor.step(time.monotonic()) is not None

        caplog.set_level(logging.INFO, logger="callwatch.load")
        await until(lagging, 15.0)
        h = (await http.get("/api/health")).json()
        assert h["status"] == "overloaded" and h["reason"] == "asr_lag" and h["since"]
        assert h["degraded"] == ["dnsmos"] and h["asr"]["lag_s"] >= 1.0
        assert h["calls"]["live"] == 1 and h["asr"]["backlog"] + h["asr"]["in_flight"] >= 1
        assert dnsmos.paused and rig.gateway.overloaded
        assert monitor.step(time.monotonic()) is None  # still overloaded: nothing new to say
        [record] = [r for r in caplog.records if r.name == "callwatch.load"]
        assert record.levelno == logging.WARNING
        assert record.fields["overloaded"] is True and record.fields["reason"] == "asr_lag"

        # DNSMOS gives way first: live windows are skipped, end-of-call ones still scored.
        answers: list[object] = []
        window = _window()
        dnsmos.submit(window, answers.append)
        assert answers == [None] and dnsmos.skipped == 1
        dnsmos.submit(window, answers.append, final=True)
        await until(lambda: _done(answers, 2), 30.0)
        assert answers[1] is not None and dnsmos.cpu_s > 0

        # New calls are refused with 503 while overloaded (refuse_when_overloaded).
        with pytest.raises(InvalidStatus) as refused:
            async with connect(rig.gateway.url + "/audiofork"):
                pass
        assert refused.value.response.status_code == 503
        assert b"overloaded" in refused.value.response.body

        # ASR catches up: back to normal after the calm spell, said once in the log.
        rig.transcriber.gate.set()
        await streaming
        await until(lambda: _caught_up(rig), 30.0)
        # The utterances ASR deferred while it was held count once, at the next observation
        # (in service, the tick after they happened): take it, so the calm spell starts at t0.
        assert monitor.step(time.monotonic()) is None
        t0 = time.monotonic()
        assert monitor.step(t0) is None and monitor.watch.overloaded  # the calm spell starts
        assert monitor.step(t0 + 9.0) is None  # recover_s = 10 s
        assert monitor.step(t0 + 10.5) is not None and not monitor.watch.overloaded
        assert not dnsmos.paused and not rig.gateway.overloaded
        assert [r.fields["overloaded"] for r in caplog.records
                if r.name == "callwatch.load"] == [True, False]  # fmt: skip
        assert (await http.get("/api/health")).json()["status"] == "ok"
    finally:
        await http.aclose()
        await dnsmos.close()


async def test_calls_past_the_declared_capacity_get_503(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = await rig_factory(load={"capacity_calls": 1})
    async with connect(rig.gateway.url + "/audiofork"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(rig.gateway.url + "/audiofork"):
                pass
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "5"
    assert b"limit 1" in refused.value.response.body


async def _caught_up(rig: Rig) -> bool:
    # Every call finalised, and the ASR service holding nothing (on a loaded box an utterance
    # can still wait in the catch-up lane then, which keeps the monitor from calming down).
    return not rig.gateway.calls and not rig.asr.overloaded and rig.asr.backlog == 0


async def _done(answers: list[object], n: int) -> bool:
    return len(answers) >= n


def _window() -> DnsmosWindow:
    rng = np.random.default_rng(0)
    samples = (0.05 * rng.standard_normal(WINDOW_SAMPLES)).astype(np.float32)
    return DnsmosWindow("customer", 0, 0, 9010, 1.0, 16000, "l16", samples)


async def test_dnsmos_scores_in_a_low_priority_thread_of_its_own() -> None:
    """DNSMOS gives way to ASR under CPU contention: its scoring thread is niced, and it is not
    the loop's default executor (which the recorder's writes use)."""
    seen: list[tuple[str, int]] = []

    class Probe(DnsmosScorer):
        def score_batch(self, windows):  # type: ignore[no-untyped-def]
            tid = threading.get_native_id()
            seen.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, tid)))
            return super().score_batch(windows)

    dnsmos = DnsmosService(await asyncio.to_thread(Probe), max_batch=1)
    dnsmos.start()
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    dnsmos.submit(_window(), done.set_result)
    try:
        assert await asyncio.wait_for(done, 60) is not None
    finally:
        await dnsmos.close()
    [(name, nice)] = seen
    assert name.startswith("dnsmos") and nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
