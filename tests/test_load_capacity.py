"""Transport capacity, board fan-out and soak (RELIABILITY.md L1, L3, L4): `long` tests, run
with `scripts/test --long`.

A real `callwatch serve` with the transcriber stubbed (the scripted one answers at once, so
what is measured is the transport: websockets, decoding, the timeline, the recorder, the
audio-quality trackers, VAD, storage, the bus and the board), simulated switches streaming in
real time from this process (tests/load_support.py), and what the server measures about
itself: ingest latency per audio message, event-loop lag, RSS, open fds.

The declared level (`L1_CALLS`, 30 calls) is sized from CPU: the server needs about 1-2 % of
one core per real-time call with ASR stubbed (docs/benchmarks.md, "Transport load tests"), so
30 calls keep its event loop near half a core, with the switches' own CPU on the same 2 cores;
RELIABILITY.md proposes 50, which this box has not been shown to hold. Durations
are the RELIABILITY.md ones (ramp 2 min, hold 3 min) unless `CALLWATCH_L1_RAMP_S` /
`CALLWATCH_L1_HOLD_S` say otherwise; L4 soaks for `CALLWATCH_SOAK_S` (default 5 min here;
`CALLWATCH_SOAK_S=1800` is the nightly 30 minutes, which also holds the RSS slope to
< 1 MiB per 10 min; `scripts/bench --skip-engine --soak 30` is the same with the pipeline).
"""

from __future__ import annotations

import asyncio
import os
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.board_watchers import watch_boards
from tests.load_support import (
    CallRun,
    LoadServer,
    MiB,
    Reading,
    Stored,
    Window,
    audio_allowance_mib,
    board_token,
    clip,
    fleet,
    load_server,
    merged,
    runs,
    server_errors,
    stored,
    stream,
    stream_all,
)

#: Long, and serial: they measure loop lag and latency, which other tests running beside
#: them would distort (scripts/test runs the serial ones alone, after the parallel pass).
pytestmark = [pytest.mark.long, pytest.mark.serial]

#: The transport capacity declared for the 2-core box (calls in real time, ASR stubbed).
L1_CALLS = int(os.environ.get("CALLWATCH_L1_CALLS", "30"))
L1_START = 10
RAMP_S = float(os.environ.get("CALLWATCH_L1_RAMP_S", "120"))
HOLD_S = float(os.environ.get("CALLWATCH_L1_HOLD_S", "180"))
#: Per call, besides the audio it holds by design (`audio_allowance_mib`: from the settings).
OBJECTS_MIB = 2.0
SOAK_S = float(os.environ.get("CALLWATCH_SOAK_S", "300"))
FULL_SOAK_S = 1800.0  # RELIABILITY.md L4: 30 minutes, slope < 1 MiB per 10 min


async def _stored(srv: LoadServer, calls: list[CallRun]) -> list[Stored]:
    return [await asyncio.to_thread(stored, srv, r, 300.0) for r in calls]


def _lost(calls: list[CallRun], results: list[Stored]) -> list[str]:
    """Calls that did not end completed/normal with every frame sent in their recording."""
    return [
        f"{r.external_id}: {r.error or r.close_code} {s.status}/{s.reason} sent "
        f"{r.frames_sent} received {s.received_frames} recorded {s.recording_frames}"
        for r, s in zip(calls, results, strict=True)
        if r.error is not None
        or r.close_code != 1000
        or (s.status, s.reason) != ("completed", "normal")
        or not r.frames_sent == s.received_frames == s.recording_frames
        or s.filled_frames
    ]


def _cpu_pct(window: Window) -> float:
    return round(100 * window.cpu_s / window.seconds, 1)


async def test_l1_transport_capacity_with_asr_stubbed(tmp_path: Path) -> None:
    """10 calls at once, then more until `L1_CALLS` over `RAMP_S`, all held `HOLD_S`: ingest
    p99 <= 50 ms, loop lag p99 <= 20 ms (over the hold), zero frames lost, RSS per call
    <= 2 MiB + the audio it holds by design (from the settings), no errors."""
    n = L1_CALLS
    with load_server(tmp_path, CALLWATCH_GATEWAY__MAX_CALLS=str(n + 10)) as srv:
        idle = await srv.aread()
        # Every call ends at the end of the hold: the later it starts, the shorter it is.
        starts = [0.0] * L1_START + [RAMP_S * (i + 1) / (n - L1_START) for i in range(n - L1_START)]
        base = fleet(4, 1.0)
        calls = [CallRun(f"l1-{i:03d}", clip(base[i % 4], RAMP_S + HOLD_S - s))
                 for i, s in enumerate(starts)]  # fmt: skip
        t0 = time.monotonic()
        streaming = asyncio.ensure_future(
            asyncio.gather(*(stream(srv.url, r, s) for r, s in zip(calls, starts, strict=True)))
        )
        await asyncio.sleep(RAMP_S + 2.0)
        hold0 = await srv.aread()
        rss_peak = hold0.rss_bytes
        while time.monotonic() - t0 < RAMP_S + HOLD_S - 2.0:
            await asyncio.sleep(5.0)
            rss_peak = max(rss_peak, srv.rss_bytes())
        hold1 = await srv.aread()
        await streaming
        results = await _stored(srv, calls)
        errors = server_errors(srv)
        end = await srv.aread()

    hold = hold0.window(hold1)
    per_call_mib = (rss_peak - idle.rss_bytes) / n / MiB
    buffers_mib = audio_allowance_mib(srv, [r.call for r in calls])
    figures = {
        "calls": n,
        "live_at_hold": hold0.live_calls,
        "hold": hold.describe(),
        "ingest_p99_ms": hold.ingest.percentile(99),
        "ingest_p99_all_calls_ms": merged([s.ingest for s in results]).percentile(99),
        "loop_lag_p99_ms": hold.loop.percentile(99),
        # CPU per live call, which other load on the box distorts less than latency.
        "server_cpu_pct_per_call": round(100 * hold.cpu_s / hold.seconds / n, 2),
        "rss_idle_mib": round(idle.rss_bytes / MiB),
        "rss_peak_mib": round(rss_peak / MiB),
        "rss_per_call_mib": round(per_call_mib, 2),
        "rss_allowed_per_call_mib": round(OBJECTS_MIB + buffers_mib, 2),
        "fds": (idle.open_fds, hold1.open_fds, end.open_fds),
        "client_late_ms": round(max(r.client_late_ms() for r in calls)),
    }
    print(f"L1 {figures}")
    assert hold0.live_calls == n, figures
    assert not _lost(calls, results), _lost(calls, results)
    assert not errors, errors[:5]
    assert hold.ingest.percentile(99) <= 50.0, figures
    assert hold.loop.percentile(99) <= 20.0, figures
    assert per_call_mib <= OBJECTS_MIB + buffers_mib, figures


async def test_l3_board_fan_out_200_clients_on_a_20_call_floor(tmp_path: Path) -> None:
    """200 board clients watch 20 calls arrive: each call shows on every board within 1 s
    (p95 over all clients and calls); the calls' ingest p99 stays within 10 ms of the same
    20 calls with no board open (before and after, on the same server)."""
    n, clients, seconds = 20, 200, 30.0
    with load_server(tmp_path, CALLWATCH_API__MAX_CONNECTIONS="300") as srv:
        token = await asyncio.to_thread(board_token, srv)
        await stream_all(srv.url, runs(fleet(n, 2.0), "warm"), 0.5)
        before = runs(fleet(n, seconds), "l3-alone-a")
        alone0 = await srv.aread()
        await stream_all(srv.url, before, 2.0)
        alone1 = await srv.aread()

        watched = runs(fleet(n, seconds), "l3-watched")
        ids = [r.external_id for r in watched]
        # The 200 clients in a process of their own: in this one they would delay the
        # switches (sharing this event loop), and a late switch looks like a late server.
        async with watch_boards(srv.api, token, clients, ids) as watchers:
            before_watch = await srv.aread()
            await stream_all(srv.url, watched, 10.0)  # the calls arrive over 10 s
            during = await srv.aread()

        after = runs(fleet(n, seconds), "l3-alone-b")
        await stream_all(srv.url, after, 2.0)
        alone_r, watched_r = await _stored(srv, before + after), await _stored(srv, watched)
        errors = server_errors(srv)

    latencies = [
        w.first_seen[r.external_id] - r.sends[0]
        for w in watchers
        for r in watched
        if r.external_id in w.first_seen and r.sends
    ]
    missing = sum(len(w.pending) for w in watchers)
    late = {"alone": max(r.client_late_ms() for r in before + after),
            "watched": max(r.client_late_ms() for r in watched)}  # fmt: skip
    dropped = [w.error for w in watchers if w.error]
    print(
        f"L3 {len(latencies)} latencies, {missing} never shown, {len(dropped)} clients "
        f"dropped {dropped[:2]}, frames {[w.frames for w in watchers][:5]}"
    )
    assert latencies and not dropped, (missing, dropped[:3])
    alone, seen = merged([s.ingest for s in alone_r]), merged([s.ingest for s in watched_r])
    figures = {
        "board_update_p50_s": round(float(np.percentile(latencies, 50)), 3),
        "board_update_p95_s": round(float(np.percentile(latencies, 95)), 3),
        "board_update_max_s": round(max(latencies), 3),
        "never_shown": missing,
        "frames_per_client": round(sum(w.frames for w in watchers) / clients),
        # How late the switches (this process) sent: lateness here is not the server's.
        "client_late_ms": {k: round(v) for k, v in late.items()},
        "ingest_p99_ms": {"alone": alone.percentile(99), "watched": seen.percentile(99)},
        "loop_lag_p99_ms": before_watch.window(during).loop.percentile(99),
        # The server's CPU while the calls stream, alone and watched (% of a core): what
        # the fan-out costs, which a busy box distorts less than latency.
        "server_cpu_pct": {
            "alone": _cpu_pct(alone0.window(alone1)),
            "watched": _cpu_pct(before_watch.window(during)),
        },
    }
    print(f"L3 {figures}")
    assert not _lost(before + after, alone_r) and not _lost(watched, watched_r)
    assert not errors, errors[:5]
    assert missing == 0, figures
    assert np.percentile(latencies, 95) <= 1.0, figures
    assert seen.percentile(99) - alone.percentile(99) <= 10.0, figures


async def test_l4_soak_20_calls_looping(tmp_path: Path) -> None:
    """20 call slots, each streaming one call after another for `SOAK_S`: RSS flat after the
    first third (slope reported, growth bounded), open fds back to where they were, every
    recording finalised and decodable with exactly the frames sent."""
    slots, call_s = 20, 30.0
    with load_server(tmp_path) as srv:
        idle = await srv.aread()
        done: list[CallRun] = []
        samples: list[Reading] = []
        t0 = time.monotonic()
        scripts = fleet(4, call_s)

        async def slot(k: int) -> None:
            await asyncio.sleep(k * call_s / slots)  # spread: calls end and start all along
            i = 0
            while time.monotonic() - t0 < SOAK_S - call_s:
                call = scripts[(k + i) % len(scripts)]
                done.append(await stream(srv.url, CallRun(f"l4-{k:02d}-{i:03d}", call)))
                i += 1

        async def sample() -> None:
            while True:
                await asyncio.sleep(10.0)
                samples.append(await srv.aread())

        sampler = asyncio.ensure_future(sample())
        await asyncio.gather(*(slot(k) for k in range(slots)))
        sampler.cancel()
        results = await _stored(srv, done)
        await asyncio.sleep(2.0)  # the last calls' files closed
        end = await srv.aread()
        errors = server_errors(srv)
        recordings = srv.server.data_dir / "recordings"
        details = [await asyncio.to_thread(srv.server.repo.get_call, r.external_id) for r in done]

    warm = [s for s in samples if s.at - t0 >= SOAK_S / 3]
    minutes = np.array([(s.at - t0) / 60 for s in warm])
    rss = np.array([s.rss_bytes / MiB for s in warm])
    slope = float(np.polyfit(minutes, rss, 1)[0]) * 10 if len(warm) >= 3 else float("nan")
    figures = {
        "calls": len(done),
        "minutes": round((time.monotonic() - t0) / 60, 1),
        "rss_mib": (round(idle.rss_bytes / MiB), round(rss.min()), round(rss.max())),
        "rss_slope_mib_per_10min": round(slope, 2),
        "fds": (idle.open_fds, max(s.open_fds for s in samples), end.open_fds),
    }
    print(f"L4 {figures}")
    assert not _lost(done, results), _lost(done, results)[:5]
    assert not errors, errors[:5]
    for run, detail in zip(done, details, strict=True):
        assert detail is not None
        with wave.open(str(recordings / detail.recording_path), "rb") as w:
            assert w.getnframes() == run.frames_sent and w.getnchannels() == 2
            assert w.getframerate() == run.call.sample_rate
    # Flat after warm-up: what a shortened soak can bound. The slope criterion as written
    # (< 1 MiB per 10 min) needs the full 30 minutes (CALLWATCH_SOAK_S=1800): a 5-minute run's
    # fit is mostly the end of warm-up.
    assert rss.max() - rss.min() <= 8.0, figures
    if SOAK_S >= FULL_SOAK_S:
        assert slope < 1.0, figures
    assert abs(end.open_fds - idle.open_fds) <= 2, figures
