"""`GET /api/health`: is callwatch keeping up? For load balancers, operators, the board's
"overloaded" badge and `scripts/bench` (which polls it for CPU and memory figures).

Unauthenticated, like most health checks: it holds counters and sizes only, never call data.
Answers 200 whether or not the server is overloaded (`status` says which); the document is
built by `monitor.runtime.load.LoadMonitor.health`:

- `status` "ok" | "overloaded" | "degraded" (storage: the database is not taking writes;
  takes precedence), `overloaded`, `since` (UTC, last load transition), `reason`
  ("asr_lag", "asr_deferred", "recovered"), `degraded` (live work given up, in order);
- `storage`: `status` "ok" | "degraded" (a database write waiting over 2 s, or failing),
  `since`, `waiting_s`, `failing`, `queued` (records waiting to be written); null without a
  live writer;
- `calls`: `live` (connected), `transcripts_pending` (hung up, transcripts still coming),
  `capacity` (declared `[load] capacity_calls`, or null);
- `asr`: `lag_s` (oldest live utterance's wait), `backlog`, `in_flight`, `submitted`,
  `deferred` (taken off the live path: transcribed later, stored late), `failed`,
  `timed_out` (given up after `asr.utterance_timeout_s`: a hung model; never transcribed);
- `dnsmos`: `paused`, `sample_every_s`, `scored`, `skipped`, `dropped`, `failed`, `backlog`,
  `cpu_s` (CPU seconds of the scoring thread), `audio_s` (audio seconds scored); null if off;
- `storage`: `backlog` (rows waiting for the database), `written`, `rejected` (bad rows
  dropped, each logged), `shed` ({row class: count} of readings and trace rows dropped
  under pressure), `shed_total`; `journal` (the on-disk journal of a database outage,
  RELIABILITY.md S2): `active` (rows are being journaled), `bytes`, `max_bytes`, `shed`
  (metrics not journaled because it was over half full), `overflow` (kept rows that did not
  fit, held in memory only);
- `ingest`: how late the server took the calls' audio messages, all calls since start
  (`monitor.runtime.latency.MediaLateness`): `count`, `p50_ms`, `p99_ms`, `max_ms`, `bins`
  ({lower edge ms: count}, cumulative: a window is the difference of two readings);
- `loop`: the event loop's lag, sampled every `interval_ms`: `lag` (the same shape);
- `memory`: `server_rss_bytes`, `workers_rss_bytes` ({pid: bytes} of the ASR workers),
  `total_rss_bytes`; `process`: `open_fds`, `cpu_s` (server process user+system), `uptime_s`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    if ctx.health is None:  # an API over a repository alone: nothing live to report
        return {"status": "ok", "overloaded": False, "live": False}
    doc: dict[str, Any] = ctx.health()
    return doc
