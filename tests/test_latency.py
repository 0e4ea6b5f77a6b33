"""The server's own latency measures (monitor/runtime/latency.py): the histogram, a call's
ingest lateness against its media clock, and the event-loop lag probe."""

from __future__ import annotations

import asyncio
import time

from monitor.runtime.latency import LatencyHistogram, LoopLagProbe, MediaLateness


def test_histogram_percentiles_windows_and_round_trip() -> None:
    h = LatencyHistogram()
    for ms in [0.2] * 90 + [5.5] * 9 + [250.0]:
        h.add(ms)
    assert h.total == 100 and h.percentile(50) == 1.0 and h.percentile(99) == 6.0
    assert h.percentile(100) == 260.0 and h.max_ms == 250.0  # bins answer their upper edge
    before = h.copy()
    h.add(42.0)
    h.add(20_000.0)  # the overflow bin answers the largest value seen
    window = h.since(before)
    assert window.total == 2 and window.percentile(50) == 43.0
    assert h.percentile(100) == 20_000.0
    again = LatencyHistogram.from_doc(h.to_doc())
    assert again.counts == h.counts and again.max_ms == h.max_ms
    doc = h.to_doc()
    assert doc["count"] == 102 and doc["bins"]["0"] == 90 and doc["bins"]["250"] == 1
    both = LatencyHistogram()
    both.merge(h)
    both.merge(window)
    assert both.total == 104


def test_media_lateness_is_the_wait_beyond_the_best_transit() -> None:
    shared = LatencyHistogram()
    m = MediaLateness(shared)
    t0 = 1000.0
    # A real-time stream taken on time, then one message held 30 ms, then on time again.
    assert m.observe(t0 + 0.020, 0.020) == 0.0
    assert abs(m.observe(t0 + 0.040, 0.040)) < 1e-6
    assert round(m.observe(t0 + 0.090, 0.060)) == 30
    assert abs(m.observe(t0 + 0.080, 0.080)) < 1e-6
    # A client ahead of real time sets a new minimum with every message: never late.
    fast = MediaLateness(shared)
    assert all(fast.observe(t0 + i * 0.004, i * 0.020) == 0.0 for i in range(1, 50))
    assert m.hist.total == 4 and shared.total == 53 and m.hist.percentile(99) == 31.0


async def test_loop_lag_probe_sees_a_blocked_loop() -> None:
    probe = LoopLagProbe(interval_s=0.01)
    probe.start()
    await asyncio.sleep(0.1)
    time.sleep(0.15)  # noqa: ASYNC251 - the loop is blocked: the probe wakes ~150 ms late
    await asyncio.sleep(0.05)
    await probe.close()
    assert probe.hist.total >= 5
    assert 140 <= probe.hist.max_ms < 400 and probe.hist.percentile(50) < 20
