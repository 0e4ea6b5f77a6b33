"""Audio-quality benchmark: what the measures cost, and (with --validate) how accurate they are.

    .venv/bin/python scripts/bench_quality.py              # cost only (~1 min)
    .venv/bin/python scripts/bench_quality.py --validate   # + validation tables (~6 min)
    .venv/bin/python scripts/bench_quality.py --json out.json
    .venv/bin/python scripts/bench_quality.py --snr-only --seeds 6 --track-seconds 120

Cost (CPU time of this process, so other load on the machine distorts it less than wall time):
1. `PartyQualityTracker` without DNSMOS (level, noise, SNR, clipping, dropouts, metric VAD,
   readings), fed 20 ms chunks as they arrive from a switch: real-time factor per core, at
   8 kHz μ-law and 16 kHz L16.
2. `ConversationTracker` on the two parties' activity.
3. DNSMOS (`DnsmosScorer`, one onnxruntime thread) on 9.01 s windows in batches of 1, 4 and
   8: CPU seconds per window and per audio-second of one party (one window per 9.01 s).

Validation (the same signals as tests/test_quality_*.py, more seeds): blind SNR error per path
and noise type over 0–30 dB; DNSMOS BAK/OVRL per SNR; clipping at 0.1–5 %; constructed
two-party calls: dead-air and overtalk precision/recall and boundary errors, talk-time error;
dropouts: precision/recall of 20–200 ms cuts inside speech and false dropouts on tracks whose
pauses are digital silence (`--dropouts-only` for just that table).

Figures go to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio_quality.conversation import ConversationTracker  # noqa: E402
from audio_quality.dnsmos import WINDOW_SAMPLES, DnsmosScorer  # noqa: E402
from audio_quality.g711 import round_trip  # noqa: E402
from audio_quality.impair import hard_clip_to_ratio, to_int16  # noqa: E402
from audio_quality.party import PartyQualityTracker  # noqa: E402
from audio_quality.records import DeadAirDetected, OvertalkDetected  # noqa: E402
from audio_quality.settings import QualitySettings  # noqa: E402
from tests.dropout_support import cut_track, score_dropouts  # noqa: E402
from tests.quality_support import (  # noqa: E402
    NOISES,
    PATHS,
    SNRS_DB,
    SPEECH_DIR,
    match_events,
    mix_at_snr,
    path_files,
    run_call,
    snr_errors,
    speech_track,
    summarise,
)

NO_DNSMOS = QualitySettings(dnsmos={"enabled": False})


def bench_trackers(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, (rate, codec) in PATHS.items():
        speech = speech_track(path_files(path), rate, 0, seconds, (0.8, 3.0))
        audio = mix_at_snr(speech, "dishes", 15, rate, codec).audio
        step = rate // 50
        best = 0.0
        for _ in range(3):  # best of three: the least disturbed by other load
            tr = PartyQualityTracker("agent", rate, codec, NO_DNSMOS)
            spans = []
            t0 = time.process_time()
            for i in range(0, audio.size, step):
                tr.feed(audio[i : i + step])
                spans += tr.take_activity()
            tr.flush()
            spans += tr.take_activity()
            tr.finish()
            best = max(best, seconds / (time.process_time() - t0))
        conv = ConversationTracker(NO_DNSMOS)
        other = [type(s)("customer", s.start_ms, s.end_ms, not s.speech) for s in spans]
        t0 = time.process_time()
        for a, b in zip(spans, other, strict=True):
            conv.add_activity([a, b])
        conv.flush()
        conv.finish()
        conv_rtf = seconds / max(time.process_time() - t0, 1e-9)
        out[path] = {"tracker_x_realtime": round(best), "conversation_x_realtime": round(conv_rtf)}
        print(
            f"  {path:8s} party tracker (all but DNSMOS), 20 ms chunks: {best:6.0f}x real time "
            f"per core; conversation tracker: {conv_rtf:8.0f}x"
        )
    return out


def bench_dnsmos() -> dict[str, Any]:
    scorer = DnsmosScorer(intra_op_threads=1)
    rng = np.random.default_rng(0)
    speech = speech_track(path_files("16k"), 16000, 0, 9.01 * 8 + 1, (0.3, 0.6))
    windows = [
        (speech[i * WINDOW_SAMPLES : (i + 1) * WINDOW_SAMPLES] / 32768.0).astype(np.float32)
        + rng.normal(0, 1e-3, WINDOW_SAMPLES).astype(np.float32)
        for i in range(8)
    ]
    scorer.score_raw(np.stack(windows[:1]))  # warm-up
    out: dict[str, Any] = {}
    for batch in (1, 4, 8):
        t0 = time.process_time()
        for i in range(0, 8, batch):
            scorer.score_raw(np.stack(windows[i : i + batch]))
        per_window = (time.process_time() - t0) / 8
        out[f"batch_{batch}"] = {
            "cpu_s_per_window": round(per_window, 3),
            "cpu_s_per_audio_s_per_party": round(per_window / 9.01, 4),
        }
        print(
            f"  DNSMOS batch {batch}: {per_window:.3f} CPU s per 9.01 s window = "
            f"{per_window / 9.01:.4f} CPU s per audio second per party"
        )
    return out


def validate_snr(seeds: int, seconds: float = 24.0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(
        f"  blind SNR: estimate - truth (dB), call summary, {seeds} tracks x {seconds:g} s per cell"
    )
    print("  path     noise      " + " ".join(f"{s:>5d}" for s in SNRS_DB) + "    p95   max")
    for path in PATHS:
        pooled: list[float] = []
        for noise in NOISES:
            errs = snr_errors(path, noise, range(seeds), NO_DNSMOS, seconds=seconds)
            by_snr = {s: [e for t, e in errs if t == s] for s in SNRS_DB}
            mean = [float(np.nanmean(by_snr[s])) for s in SNRS_DB]
            # No reading at all (the VAD heard no speech) counts as a miss of 50 dB.
            absd = np.nan_to_num(np.abs([e for _, e in errs]), nan=50.0)
            pooled += absd.tolist()
            p95, mx = float(np.percentile(absd, 95)), float(absd.max())
            out[f"{path}/{noise}"] = {
                "p95_abs_error_db": round(p95, 2),
                "max_abs_error_db": round(mx, 2),
                "mean_error_by_snr_db": [round(m, 2) for m in mean],
                "no_reading": int(np.isnan([e for _, e in errs]).sum()),
            }
            print(
                f"  {path:8s} {noise:10s} "
                + " ".join(f"{m:+5.1f}" for m in mean)
                + f"  {p95:5.2f} {mx:5.2f}"
            )
        p95 = float(np.percentile(pooled, 95))
        out[f"{path}/pooled"] = {"p95_abs_error_db": round(p95, 2)}
        print(f"  {path:8s} all four noises pooled: p95 {p95:.2f} dB")
    for path, (rate, codec) in PATHS.items():
        clean = []
        for seed in range(max(seeds, 10)):
            speech = speech_track(path_files(path), rate, seed, 24.0, (0.8, 3.0))
            s = summarise(round_trip(to_int16(speech), codec), rate, codec, NO_DNSMOS)
            clean.append(None if s.snr_db is None else round(s.snr_db, 1))
        out[f"{path}/clean"] = clean
        print(f"  {path:8s} clean speech (no noise added) reads: {clean} dB")
        # Two-minute tracks: a call's few noise frames (pauses muted) against its loud sounds.
        long = []
        for seed in range(6):
            speech = speech_track(path_files(path), rate, seed, 120.0, (0.8, 3.0))
            s = summarise(round_trip(to_int16(speech), codec), rate, codec, NO_DNSMOS)
            long.append(None if s.snr_db is None else round(s.snr_db, 1))
        out[f"{path}/clean_120s"] = long
        print(f"  {path:8s} clean speech, 120 s tracks, reads: {long} dB")
    return out


def validate_dnsmos() -> dict[str, Any]:
    scorer = DnsmosScorer()
    settings = QualitySettings(dnsmos={"min_speech_ratio": 0.0})
    out: dict[str, Any] = {}
    for path, (rate, codec) in PATHS.items():
        speech = speech_track(path_files(path), rate, 3, 9.1, (0.3, 0.6))
        rows = []
        for noise in NOISES:
            wins = []
            for snr in SNRS_DB:
                tr = PartyQualityTracker("agent", rate, codec, settings)
                tr.feed(mix_at_snr(speech, noise, snr, rate, codec).audio)
                tr.flush()
                wins += tr.take_dnsmos_windows()
            scores = scorer.score_batch(wins)
            rows.append([(s.bak_mos, s.ovrl_mos) for s in scores])
            print(
                f"  DNSMOS {path:8s} {noise:10s} BAK "
                + " ".join(f"{s.bak_mos:4.2f}" for s in scores)
                + "  OVRL "
                + " ".join(f"{s.ovrl_mos:4.2f}" for s in scores)
            )
        arr = np.array(rows)  # (noise, snr, 2)
        bak, ovrl = arr[:, :, 0].mean(axis=0), arr[:, :, 1].mean(axis=0)
        ordered = bool(np.all(np.diff(bak) > 0) and np.all(np.diff(ovrl) > 0))
        out[path] = {
            "bak_mean_by_snr": bak.round(2).tolist(),
            "ovrl_mean_by_snr": ovrl.round(2).tolist(),
            "strictly_ordered": ordered,
        }
        print(
            f"  DNSMOS {path:8s} mean over noises: BAK {bak.round(2).tolist()} OVRL "
            f"{ovrl.round(2).tolist()} at SNR {list(SNRS_DB)}; strictly ordered: {ordered}"
        )
    return out


def validate_clipping() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, (rate, codec) in PATHS.items():
        speech = speech_track(path_files(path), rate, 4, 15.0, (0.5, 1.0))
        clean = summarise(round_trip(to_int16(speech), codec), rate, codec, NO_DNSMOS)
        row = {"clean": clean.clip_ratio}
        for ratio in (0.0005, 0.001, 0.005, 0.01, 0.05):
            clipped = round_trip(to_int16(hard_clip_to_ratio(speech, ratio, 32767.0)), codec)
            row[str(ratio)] = summarise(clipped, rate, codec, NO_DNSMOS).clip_ratio
        out[path] = row
        print(
            f"  clipping {path:8s} measured ratio: "
            + ", ".join(
                f"{k if k == 'clean' else f'{float(k):.2%}'} -> {v:.3%}" for k, v in row.items()
            )
        )
    return out


def validate_calls(seeds: int, variants: int) -> dict[str, Any]:
    conditions = [
        (16000, "L16", None, 0.0),
        (8000, "PCMU", None, 0.0),
        (16000, "L16", "bike", 30.0),
        (8000, "PCMU", "bike", 20.0),
        (16000, "L16", "bike", 10.0),
        (16000, "L16", "babble", 20.0),
        (8000, "PCMU", "babble", 20.0),
        (16000, "L16", "dishes", 30.0),
        (8000, "PCMU", "dishes", 20.0),
        (16000, "L16", "dishes", 15.0),
    ]
    out: dict[str, Any] = {}
    print(
        f"  constructed calls: {seeds} seeds x {variants} clip variants per condition; "
        "3 dead airs, 3 overtalks, one 20 s hold each"
    )
    for rate, codec, noise, snr in conditions:
        tally = {k: [0, 0, 0, []] for k in ("dead_air", "overtalk")}
        talk_err: list[float] = []
        in_hold = 0
        for seed in range(1, seeds + 1):
            for variant in range(variants):
                res = run_call(rate, codec, noise, snr, seed, NO_DNSMOS, variant)
                for key, kind in (("dead_air", DeadAirDetected), ("overtalk", OvertalkDetected)):
                    m = match_events(res.truth_events, res.events, kind)
                    tally[key][0] += m.truth
                    tally[key][1] += m.measured
                    tally[key][2] += m.hits
                    tally[key][3] += m.boundary_errors_ms
                t, s = res.truth, res.measured
                talk_err += [
                    s.agent_talk_ms / t.agent_talk_ms - 1,
                    s.customer_talk_ms / t.customer_talk_ms - 1,
                ]
                ((h0, h1),) = res.holds_ms
                in_hold += sum(
                    1
                    for e in res.events
                    if isinstance(e, DeadAirDetected) and e.start_ms < h1 and e.end_ms > h0
                )
        name = f"{rate // 1000}k-{codec}-{noise or 'clean'}-{int(snr)}dB"
        row: dict[str, Any] = {
            "talk_time_error_pct": [round(100 * min(talk_err), 1), round(100 * max(talk_err), 1)],
            "dead_air_in_hold": in_hold,
        }
        parts = []
        for key, (n_true, n_meas, hits, errs) in tally.items():
            p = hits / n_meas if n_meas else 1.0
            r = hits / n_true if n_true else 1.0
            b = np.abs(errs) if errs else np.zeros(1)
            row[key] = {
                "precision": round(p, 3),
                "recall": round(r, 3),
                "boundary_p95_ms": float(np.percentile(b, 95)),
                "boundary_max_ms": float(b.max()),
            }
            parts.append(
                f"{key} P {p:.2f} R {r:.2f} bound p95 {np.percentile(b, 95):.0f} "
                f"max {b.max():.0f} ms"
            )
        out[name] = row
        print(
            f"  {name:24s} "
            + " | ".join(parts)
            + f" | talk err {100 * min(talk_err):+.1f}..{100 * max(talk_err):+.1f} %"
            + f" | dead air in hold {in_hold}"
        )
    return out


def validate_dropouts(seeds: int) -> dict[str, Any]:
    zh = sorted(f"zh/{p.name}" for p in (SPEECH_DIR / "zh").glob("*.flac"))
    voices = {"lj": path_files("16k"), "telephone": path_files("8k-ulaw"), "zh": zh}
    out: dict[str, Any] = {}
    print(f"  dropouts: {seeds} tracks x 30 s per cell, pauses 0.3-2 s of digital silence")
    for voice, files in voices.items():
        for rate, codec in PATHS.values():
            truth = measured = hits = false = 0
            for seed in range(seeds):
                clean = cut_track(files, rate, codec, seed, 30.0, 0)
                false += score_dropouts(clean, NO_DNSMOS).measured
                s = score_dropouts(cut_track(files, rate, codec, seed, 30.0, 8), NO_DNSMOS)
                truth, measured, hits = truth + s.truth, measured + s.measured, hits + s.hits
            p, r = hits / measured if measured else 1.0, hits / truth if truth else 1.0
            out[f"{voice}/{codec}"] = {"precision": round(p, 3), "recall": round(r, 3),
                                       "false_on_clean_tracks": false}  # fmt: skip
            print(f"  dropouts {voice:9s} {rate // 1000:2d}k {codec:4s}: cuts {truth}, P {p:.2f} "
                  f"R {r:.2f}; clean tracks (pauses only): {false} false dropouts")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--validate", action="store_true", help="also print validation tables")
    ap.add_argument("--seconds", type=float, default=120.0, help="audio per cost run")
    ap.add_argument("--seeds", type=int, default=3, help="tracks / calls per validation cell")
    ap.add_argument(
        "--track-seconds", type=float, default=24.0,
        help="length of each blind-SNR validation track (a call's party channel)",
    )  # fmt: skip
    ap.add_argument("--snr-only", action="store_true", help="only the blind-SNR validation")
    ap.add_argument("--dropouts-only", action="store_true", help="only the dropout validation")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    figures: dict[str, Any] = {}
    if args.snr_only:
        figures["snr"] = validate_snr(args.seeds, args.track_seconds)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return
    if args.dropouts_only:
        figures["dropouts"] = validate_dropouts(args.seeds)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return
    print("cost")
    figures["trackers"] = bench_trackers(args.seconds)
    figures["dnsmos"] = bench_dnsmos()
    if args.validate:
        print("validation")
        figures["snr"] = validate_snr(args.seeds, args.track_seconds)
        figures["clipping"] = validate_clipping()
        figures["dnsmos_ordering"] = validate_dnsmos()
        figures["calls"] = validate_calls(args.seeds, 3)
        figures["dropouts"] = validate_dropouts(args.seeds)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
