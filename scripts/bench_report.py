"""scripts/bench, part 3: the figures (capacity, engine comparison) and the printed report."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench_engine import EngineRun
from bench_levels import DRAIN_LIMIT_S, POLL_S, SOAK_CALLS, LevelResult

from asr.engine import EngineConfig
from config.settings import Settings

LATENCY_SLO_S = 1.5
STRICT_SLO_S = 1.0


# -- 3. figures ---------------------------------------------------------------------------------
def call_load(levels: list[LevelResult]) -> tuple[float, float]:
    """(utterance audio s, utterances) that one call sends to ASR per call-second, over the
    scripts seen: each script's mean call counts once, as in the levels' rotation."""
    rows: dict[str, list[tuple[int, int, int]]] = {}
    for level in levels:
        for script, speech_ms, duration_ms, utts in level.per_call:
            rows.setdefault(script, []).append((speech_ms, duration_ms, utts))
    means = [[statistics.mean(col) for col in zip(*v, strict=True)] for v in rows.values()]
    duration = sum(m[1] for m in means)
    if not duration:
        return float("nan"), float("nan")
    return sum(m[0] for m in means) / duration, sum(m[2] for m in means) / duration * 1000


def capacity(levels: list[LevelResult], slo_s: float | None = None) -> int:
    """The largest level that passed; with `slo_s`, judged against that p95 bound instead."""
    if slo_s is None:
        return max((lv.n for lv in levels if lv.passed), default=0)
    return max(
        (
            lv.n
            for lv in levels
            if lv.p95_s <= slo_s and all(p.startswith("latency p95") for p in lv.problems)
        ),
        default=0,
    )


def compare(pool: EngineRun | None, levels: list[LevelResult]) -> dict[str, Any]:
    speech, utts = call_load(levels)
    out: dict[str, Any] = {
        "pipeline_capacity_calls": capacity(levels),
        "capacity_p95_1s": capacity(levels, STRICT_SLO_S),
        "capacity_p95_1_5s": capacity(levels, LATENCY_SLO_S),
        "speech_s_per_call_s": speech,
        "utterances_per_call_s": utts,
    }
    lone = next((lv for lv in levels if lv.n == 1), None)
    if lone is not None and not lone.passed:
        out["one_call"] = {
            "p50_s": lone.p50_s,
            "p95_s": lone.p95_s,
            "asr_p50_s": lone.asr_p50_s,
            "rest_p50_s": lone.rest_p50_s,
        }
    if pool is not None and speech > 0:
        engine_calls = pool.xrt / speech
        out["engine_limited_calls"] = engine_calls
        out["engine_limited_calls_by_utterance_count"] = pool.utterances_per_s / utts
        out["pipeline_vs_engine"] = capacity(levels) / engine_calls
    return out


def settings_figures(settings: Settings, config: EngineConfig) -> dict[str, Any]:
    a = settings.asr
    return {
        "model": a.model,
        "model_path": config.model,
        "device": config.device,
        "compute_type": config.compute_type,
        "workers": a.workers or os.cpu_count() or 1,
        "workers_setting": a.workers,
        "cpu_threads": a.cpu_threads,
        "beam_size": a.beam_size,
        "language": a.language,
        "batch_size": a.batch_size,
        "queue_size": a.queue_size,
        "vad_pad_ms": settings.vad.pad_ms,
        "vad_end_silence_ms": settings.vad.end_silence_ms,
        "storage_group_commit_s": settings.storage.group_commit_s,
    }


# -- output -------------------------------------------------------------------------------------
def _engine_lines(engine: dict[str, Any]) -> list[str]:
    lines = []
    for run in (engine.get("pool"), engine.get("single")):
        if run is None:
            continue
        lines += [
            f"  {run['mode']:6} {run['workers']} worker(s): {run['clips']} clips, "
            f"{run['audio_s']:.1f} s of audio in {run['wall_s']:.1f} s = {run['xrt']:.2f}x real "
            f"time ({run['xrt_per_worker']:.2f}x per worker), {run['utterances_per_s']:.2f} utt/s",
            f"         busy {run['busy']:.0%}, {run['cpu_s']:.1f} CPU-s = {run['xrt_cpu']:.2f} "
            f"audio-s per CPU-s; en WER {run['en_wer']:.3f}, zh CER {run['zh_cer']:.3f}",
        ]
    if "second_worker_gain" in engine:
        lines.append(f"  pool / single: {engine['second_worker_gain']:.2f}x")
    return lines


def _level_lines(levels: list[dict[str, Any]]) -> list[str]:
    lines = [
        "     N calls utts |  p50   p95   max | shed late defer  fb% | cpu% loop  thr (dns)  asr"
        " | RSS MB srv  wrk |  WER  (off)   CER  (off) | result",
    ]
    for lv in sorted(levels, key=lambda x: x["n"]):
        cpu = lv["cpu"]
        fb = 100 * lv["fallbacks"] / lv["transcribed"] if lv["transcribed"] else 0.0
        lines.append(
            f"  {lv['n']:4d} {lv['calls_ok']:2d}/{lv['n']:<2d} {lv['utterances']:4d} | "
            f"{lv['p50_s']:4.2f} {lv['p95_s']:5.2f} {lv['max_s']:5.2f} | "
            f"{lv['shed']:4d} {lv['late']:4d} {lv['deferred']:5d} {fb:4.1f} | "
            f"{cpu.get('loop', 0):8.0f} {cpu.get('threads', 0):4.0f} ({cpu.get('dnsmos', 0):3.0f}) "
            f"{cpu.get('asr', 0):4.0f} | "
            f"{lv['rss_server_mb']:10.0f} {lv['rss_workers_mb']:4.0f} | "
            f"{lv['wer']:5.1%} {lv['base_wer']:5.1%} {lv['cer']:5.1%} {lv['base_cer']:5.1%} | "
            f"{'pass' if lv['passed'] else 'FAIL'}"
        )
    return lines


def render_report(fig: dict[str, Any]) -> str:
    s, host = fig["settings"], fig["host"]
    lines = [
        f"== callwatch bench ({fig['mode']}) on {host['cores']} cores; load average "
        f"{host['load_start']} at start, {host['load_end']} at end ==",
        f"settings  model {s['model']} ({Path(s['model_path']).name}) {s['device']}/"
        f"{s['compute_type']}, {s['workers']} ASR workers x {s['cpu_threads']} thread, beam "
        f"{s['beam_size']}, language {s['language']}, batch {s['batch_size']}, queue "
        f"{s['queue_size']}; vad pad {s['vad_pad_ms']} ms, end silence "
        f"{s['vad_end_silence_ms']} ms; storage group commit {s['storage_group_commit_s']} s",
    ]
    if float(host["load_start"].split()[0]) > (host["cores"] or 1):
        lines.append(
            f"WARNING   load average above {host['cores']} at start: other processes "
            f"shared the CPU, wall-time figures are low (CPU-s figures less so)"
        )
    if fig.get("engine"):
        lines += ["engine    ASR alone on the corpus clips, all submitted at once"]
        lines += _engine_lines(fig["engine"])
    if fig.get("pipeline"):
        p = fig["pipeline"]
        lines += [
            f"pipeline  real-time calls, stagger {p['stagger_s']} s; latency (s) = end of speech"
            f" -> segment in the DB; pass = p95 <= {p['slo_s']:g} s, nothing shed, every call",
            f"          completed, last transcript <= {DRAIN_LIMIT_S:g} s after the streams "
            "end, live WER/CER <= offline + 1 point",
            "          late = caught up from the catch-up lane; defer = audio released to be "
            "re-read from the recording; fb = short-window decodes redone on 30 s;",
            "          cpu% of one core: loop = event-loop thread, thr = the server's other "
            "threads (DNSMOS, storage), dns = DNSMOS's part of thr, asr = ASR worker processes;"
            " RSS = peak;",
            "          off = faster-whisper offline full-window greedy on the same turns",
        ]
        lines += _level_lines(p["levels"])
        lines += _compare_lines(fig["comparison"])
    if "soak" in fig:
        k = fig["soak"]
        (s0, s1), (w0, w1) = k["rss_server_mb"], k["rss_workers_mb"]
        lines.append(
            f"soak      {SOAK_CALLS} calls x {k['rounds']} rounds over {k['minutes']:g} min: "
            f"RSS server {s0:.0f} -> {s1:.0f} MB ({s1 - s0:+.0f}), workers {w0:.0f} -> "
            f"{w1:.0f} MB ({w1 - w0:+.0f})"
        )
    lines.append(f"elapsed   {fig['elapsed_s'] / 60:.1f} min")
    return "\n".join(lines)


def _compare_lines(c: dict[str, Any]) -> list[str]:
    lines = [
        f"capacity  {c['capacity_p95_1_5s']} calls at p95 <= {LATENCY_SLO_S:g} s, "
        f"{c['capacity_p95_1s']} at p95 <= {STRICT_SLO_S:g} s (levels run; nothing shed, "
        f"accuracy kept); a call sends {c['speech_s_per_call_s']:.2f} s of utterance audio "
        f"({c['utterances_per_call_s']:.3f} utterances) to ASR per second"
    ]
    if "engine_limited_calls" in c:
        lines.append(
            f"          engine alone allows {c['engine_limited_calls']:.1f} calls by audio "
            f"({c['engine_limited_calls_by_utterance_count']:.1f} by utterance count); "
            f"pipeline / engine = {c['pipeline_vs_engine']:.0%} (goal >= 80 %)"
        )
    if "one_call" in c:
        one = c["one_call"]
        lines.append(
            f"          even one call misses the bound: latency p50 {one['p50_s']:.2f} s = ASR "
            f"{one['asr_p50_s']:.2f} s + rest {one['rest_p50_s']:.2f} s (VAD end silence, "
            f"storage batching, {POLL_S:g} s polling); --slo S judges against another bound"
        )
    return lines
