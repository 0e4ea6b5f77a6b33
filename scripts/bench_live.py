"""scripts/bench helpers: what a level costs and how accurate its live transcripts were.

This module owns the per-level measurements that `scripts/bench.py` adds to latency:

* `ServerMeter` - CPU per component of a `callwatch serve` process tree (Linux /proc): the
  event loop (the server's main thread), the server's other threads (DNSMOS scoring in
  onnxruntime, storage and recording I/O), the ASR worker processes; and the peak RSS of the
  server and of the workers while the level ran.
* `live_accuracy` / `OfflineBaseline` - corpus WER (English calls) and CER (Mandarin calls)
  of the transcripts the server stored for a level's calls, next to faster-whisper's offline
  full-window greedy decode of each scripted turn as the call carries it (same audio, same
  model, one turn at a time, 30 s window, no fallback needed).
* `asr_counters` - the ASR service's counters (live, late, deferred, fallbacks) from the
  last "asr counters:" line in the server log, to take differences per level.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import time
import urllib.request
from math import gcd
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from asr.engine import EngineConfig
from asr.types import SAMPLE_RATE, AsrRequest
from evaluation.scoring import corpus_cer, corpus_wer
from ivr_sim.harness import session_cpu_s
from ivr_sim.script import RenderedCall
from monitor.runtime.load import rss_bytes

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_CHANNEL = {"customer": 0, "agent": 1}


def _thread_cpu_s(pid: int) -> float:
    """CPU seconds of a process's main thread (the event loop), 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _rss_mb(pid: int) -> float:
    return (rss_bytes(pid) or 0) / 1e6


class ServerMeter:
    """CPU (% of one core) per component since creation; `sample()` tracks peak RSS."""

    def __init__(self, server_pid: int) -> None:
        self._pid = server_pid
        self._t0 = time.monotonic()
        self._start = self._read()
        self.rss_server_mb = 0.0
        self.rss_workers_mb = 0.0

    def _read(self) -> dict[str, float]:
        workers = session_cpu_s(self._pid)  # the server and its ASR workers, one /proc scan
        whole = workers.pop(self._pid, 0.0)
        loop = _thread_cpu_s(self._pid)
        return {"loop": loop, "threads": max(0.0, whole - loop), "asr": sum(workers.values())}

    def sample(self) -> None:
        self.rss_server_mb = max(self.rss_server_mb, _rss_mb(self._pid))
        workers = sum(_rss_mb(p) for p in session_cpu_s(self._pid) if p != self._pid)
        self.rss_workers_mb = max(self.rss_workers_mb, workers)

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._t0

    def read(self) -> dict[str, float]:
        wall = self.wall_s
        now = self._read()
        # Workers restarted meanwhile would make a difference negative: clamp at 0.
        return {k: round(max(0.0, 100 * (now[k] - self._start[k]) / wall), 1) for k in now}


def dnsmos_cpu_s(log_path: Path) -> float:
    """CPU seconds DNSMOS has used in the server so far (its /api/health), 0 if unknown."""
    found = re.findall(r"api listening on (http://\S+)", log_path.read_text(errors="replace"))
    if not found:
        return 0.0
    try:
        with urllib.request.urlopen(f"{found[-1]}/api/health", timeout=5) as r:
            health = json.load(r)
    except (OSError, ValueError):
        return 0.0
    return float((health.get("dnsmos") or {}).get("cpu_s") or 0.0)


def asr_counters(log_text: str) -> dict[str, float]:
    """The last "asr counters: k=v ..." line of a server log, as numbers ({} if none)."""
    found = re.findall(r"asr counters: ([^\n]*)", log_text)
    if not found:
        return {}
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", found[-1])}


def _language(call: RenderedCall) -> str:
    return "zh" if call.script.name.startswith("zh") else "en"


def score(pairs: list[tuple[RenderedCall, str, str]]) -> tuple[float, float]:
    """(WER of English calls, CER of Mandarin calls) over (call, party, hypothesis) pairs."""
    refs: dict[str, list[str]] = {"en": [], "zh": []}
    hyps: dict[str, list[str]] = {"en": [], "zh": []}
    for call, party, text in pairs:
        refs[_language(call)].append(call.reference(party))
        hyps[_language(call)].append(text)
    wer = corpus_wer(refs["en"], hyps["en"]) if refs["en"] else float("nan")
    cer = corpus_cer(refs["zh"], hyps["zh"]) if refs["zh"] else float("nan")
    return wer, cer


def live_accuracy(
    db: Path, calls: dict[str, RenderedCall]
) -> tuple[list[tuple[RenderedCall, str, str]], tuple[float, float]]:
    """The stored transcript of each (call id -> rendered call) and party, and its score."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        pairs = []
        for call_id, call in calls.items():
            for party in ("customer", "agent"):
                rows = conn.execute(
                    "SELECT text FROM segments WHERE call_id = ? AND party = ? ORDER BY start_ms",
                    (call_id, party),
                ).fetchall()
                joiner = "" if _language(call) == "zh" else " "
                pairs.append((call, party, joiner.join(r[0] for r in rows)))
    finally:
        conn.close()
    return pairs, score(pairs)


def _turn_audio(
    call: RenderedCall, start_s: float, end_s: float, party: str
) -> npt.NDArray[np.float32]:
    rate = call.sample_rate
    pcm = call.audio[int(start_s * rate) : int(end_s * rate), _CHANNEL[party]]
    g = gcd(rate, SAMPLE_RATE)
    up = resample_poly(pcm.astype(np.float32) / 32768.0, SAMPLE_RATE // g, rate // g)
    return np.ascontiguousarray(up, dtype=np.float32)


class OfflineBaseline:
    """faster-whisper's full-window greedy decode of every scripted turn, once per script."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = dataclasses.replace(
            config, window_margin_s=0.0, fallback=False, boost_dbfs=None
        )
        self._texts: dict[tuple[str, str], str] = {}

    def prepare(self, calls: list[RenderedCall]) -> None:
        engine = self._config.build()
        for call in calls:
            joiner = "" if _language(call) == "zh" else " "
            for party in ("customer", "agent"):
                turns = [t for t in call.turns if t.party == party]
                texts = [
                    engine.transcribe_batch(
                        [AsrRequest(_turn_audio(call, t.start_s, t.end_s, party))]
                    )[0].text
                    for t in turns
                ]
                self._texts[(call.script.name, party)] = joiner.join(x for x in texts if x)

    def score_like(self, pairs: list[tuple[RenderedCall, str, str]]) -> tuple[float, float]:
        """The baseline on the same (call, party) multiset as a live run."""
        return score([(c, p, self._texts[(c.script.name, p)]) for c, p, _ in pairs])
