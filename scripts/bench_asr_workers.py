"""Compare ways of running Whisper on this machine: audio seconds transcribed per wall second.

Modes (all with the same model, int8 on CPU, greedy, language auto-detected):

* `single`    - one process, one CPU thread, utterances one after another;
* `threads`   - one process, `WhisperModel(num_workers=2)`, two Python threads pulling work;
* `processes` - `AsrPool` with two worker processes of one CPU thread each;
* `proc2t`    - one process with two CPU threads (intra-op parallelism), one after another.

Each mode prints audio seconds per wall second and per CPU second of its own processes (the
second is less disturbed when other work shares the machine), and the load average. With
`--rounds N` the modes run N times, interleaved. With `--accuracy` it also transcribes every
English and Mandarin clip of the corpus once and prints corpus WER / CER.

    .venv/bin/python scripts/bench_asr_workers.py --corpus ../shared/data/speech -n 20
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import queue
import resource
import statistics
import threading
import time
from math import gcd
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy.signal import resample_poly

from asr.engine import EngineConfig, WhisperEngine
from asr.pool import AsrPool
from asr.settings import AsrSettings
from asr.types import SAMPLE_RATE, AsrRequest
from evaluation.scoring import corpus_cer, corpus_wer
from ivr_sim.harness import proc_stat

Clip = tuple[str, str, str, npt.NDArray[np.float32]]  # file, language, reference, audio


def load_clips(corpus: Path) -> list[Clip]:
    with (corpus / "MANIFEST.tsv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["language"] in ("en", "zh")]
    clips = []
    for row in rows:
        if not row["file"].startswith(("en/", "zh/")):
            continue
        audio, rate = sf.read(corpus / row["file"], dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        g = gcd(rate, SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            mono = resample_poly(mono, SAMPLE_RATE // g, rate // g)
        clips.append((row["file"], row["language"], row["transcript"], mono.astype(np.float32)))
    return clips


def pick(clips: list[Clip], n: int) -> list[Clip]:
    """Half English, half Mandarin, spread over each list (LJSpeech, Asterisk, AISHELL...)."""
    out: list[Clip] = []
    for lang in ("en", "zh"):
        same = [c for c in clips if c[1] == lang]
        step = max(1, len(same) // (n // 2))
        out.extend(same[::step][: n // 2])
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of this process and of `pids` (Linux /proc)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    for pid in pids:
        if (stat := proc_stat(pid)) is None:
            raise RuntimeError(f"ASR worker {pid} is gone: its CPU cannot be counted")
        total += stat[1]
    return total


def run_sequential(engine: WhisperEngine, clips: list[Clip]) -> tuple[float, float]:
    engine.transcribe_batch([AsrRequest(clips[0][3])])  # warm-up, not timed
    cpu, started = cpu_seconds([]), time.perf_counter()
    for clip in clips:
        engine.transcribe_batch([AsrRequest(clip[3])])
    return time.perf_counter() - started, cpu_seconds([]) - cpu


def run_threads(engine: WhisperEngine, clips: list[Clip], threads: int) -> tuple[float, float]:
    engine.transcribe_batch([AsrRequest(clips[0][3])])  # warm-up, not timed
    work: queue.SimpleQueue[Clip] = queue.SimpleQueue()
    for clip in clips:
        work.put(clip)

    def drain() -> None:
        while True:
            try:
                clip = work.get_nowait()
            except queue.Empty:
                return
            engine.transcribe_batch([AsrRequest(clip[3])])

    cpu, started = cpu_seconds([]), time.perf_counter()
    pool = [threading.Thread(target=drain) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started, cpu_seconds([]) - cpu


async def run_pool(settings: AsrSettings, cache: Path, clips: list[Clip]) -> tuple[float, float]:
    async with AsrPool(settings, cache) as pool:
        await pool.transcribe_batch([AsrRequest(clips[0][3])])  # warm both code paths
        work: asyncio.Queue[Clip] = asyncio.Queue()
        for clip in clips:
            work.put_nowait(clip)

        async def drain() -> None:
            while not work.empty():
                clip = work.get_nowait()
                await pool.transcribe_batch([AsrRequest(clip[3])])

        pids = pool.worker_pids
        cpu, started = cpu_seconds(pids), time.perf_counter()
        await asyncio.gather(*(drain() for _ in range(pool.worker_count)))
        return time.perf_counter() - started, cpu_seconds(pids) - cpu


def accuracy(engine: WhisperEngine, clips: list[Clip]) -> None:
    for lang, score, name in (("en", corpus_wer, "WER"), ("zh", corpus_cer, "CER")):
        chosen = [c for c in clips if c[1] == lang]
        hyps = [engine.transcribe_batch([AsrRequest(c[3])])[0].text for c in chosen]
        refs = [c[2] for c in chosen]
        print(f"{lang}: {len(chosen)} clips, corpus {name} {score(refs, hyps):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("tests/data/speech"))
    parser.add_argument("--model", default="base")
    parser.add_argument("--cache", type=Path, default=Path(".cache/models"))
    parser.add_argument("-n", type=int, default=20, help="utterances (half en, half zh)")
    parser.add_argument("--modes", default="single,threads,processes,proc2t")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--accuracy", action="store_true")
    args = parser.parse_args()

    settings = AsrSettings(model=args.model, workers=2, cpu_threads=1)
    config = EngineConfig.from_settings(settings, args.cache)
    all_clips = load_clips(args.corpus)
    clips = pick(all_clips, args.n)
    audio_s = sum(len(c[3]) for c in clips) / SAMPLE_RATE
    print(f"{len(clips)} utterances, {audio_s:.1f} s of audio, model {config.model}")
    modes = args.modes.split(",")
    walls: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            if mode == "single":
                wall, cpu = run_sequential(config.build(), clips)
            elif mode == "threads":
                engine = WhisperEngine(
                    config.model, config.device, config.compute_type, 1, num_workers=2
                )
                wall, cpu = run_threads(engine, clips, 2)
            elif mode == "processes":
                wall, cpu = asyncio.run(run_pool(settings, args.cache, clips))
            elif mode == "proc2t":
                wall, cpu = run_sequential(
                    WhisperEngine(config.model, config.device, config.compute_type, 2), clips
                )
            else:
                parser.error(f"unknown mode {mode!r}")
            walls[mode].append(wall)
            load = os.getloadavg()[0]
            print(
                f"{mode:10s} {wall:6.1f} s wall {audio_s / wall:5.2f} audio-s/wall-s  "
                f"{audio_s / cpu:5.2f} audio-s/cpu-s  load {load:.1f}",
                flush=True,
            )
    if args.rounds > 1:
        for mode, values in walls.items():
            print(f"median {mode:10s} {audio_s / statistics.median(values):5.2f} audio-s/wall-s")
    if args.accuracy:
        accuracy(config.build(), all_clips)


if __name__ == "__main__":
    main()
