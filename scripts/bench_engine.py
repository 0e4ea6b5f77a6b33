"""scripts/bench, part 1: the ASR engine alone on the corpus clips (throughput, accuracy).

Every en/ and zh/ clip of tests/data/speech with a transcript goes through an `AsrPool` built
from the settings, all submitted at once, one utterance per batch; then through one
in-process `WhisperEngine`. Throughput is audio seconds per wall second (and per CPU second,
which other load on the machine distorts less); accuracy is corpus WER (English) and CER
(Mandarin). scripts/bench.py's docstring says how the parts fit together.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from asr.engine import EngineConfig
from asr.pool import AsrPool
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from config.settings import Settings
from evaluation.scoring import corpus_cer, corpus_wer
from ivr_sim.harness import REPO_ROOT, proc_stat, progress
from ivr_sim.script import load_clip

CORPUS = REPO_ROOT / "tests" / "data" / "speech"


def pids_cpu_s(pids: list[int]) -> float:
    return sum(stat[1] for pid in pids if (stat := proc_stat(pid)) is not None)


@dataclass(frozen=True, slots=True)
class Clip:
    file: str
    language: str
    reference: str
    audio: npt.NDArray[np.float32]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class EngineRun:
    mode: str
    workers: int
    clips: int
    audio_s: float
    wall_s: float
    xrt: float  # audio seconds per wall second
    xrt_per_worker: float
    utterances_per_s: float
    busy: float  # compute time reported by the engine / (wall x workers)
    cpu_s: float  # CPU time the engine process(es) used
    xrt_cpu: float  # audio seconds per CPU second: what an idle core would do
    en_wer: float
    zh_cer: float


def load_corpus(limit: int | None) -> list[Clip]:
    """en/ and zh/ clips with a transcript; `limit` picks that many, half per language."""
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh, delimiter="\t")
            if r["file"].startswith(("en/", "zh/")) and r["transcript"].strip()
        ]
    if limit is not None:
        picked = []
        for lang in ("en", "zh"):
            same = [r for r in rows if r["language"] == lang]
            step = max(1, len(same) // max(1, limit // 2))
            picked += same[::step][: limit // 2]
        rows = picked
    return [
        Clip(
            r["file"],
            r["language"],
            r["transcript"],
            load_clip(CORPUS / r["file"], SAMPLE_RATE).astype(np.float32) / 32768.0,
        )
        for r in rows
    ]


def summarise(
    mode: str,
    workers: int,
    clips: list[Clip],
    results: list[AsrResult],
    wall_s: float,
    cpu_s: float,
) -> EngineRun:
    audio_s = sum(c.seconds for c in clips)
    by_lang: dict[str, tuple[list[str], list[str]]] = {"en": ([], []), "zh": ([], [])}
    for clip, result in zip(clips, results, strict=True):
        by_lang[clip.language][0].append(clip.reference)
        by_lang[clip.language][1].append(result.text)
    return EngineRun(
        mode=mode,
        workers=workers,
        clips=len(clips),
        audio_s=audio_s,
        wall_s=wall_s,
        xrt=audio_s / wall_s,
        xrt_per_worker=audio_s / wall_s / workers,
        utterances_per_s=len(clips) / wall_s,
        busy=sum(r.compute_s for r in results) / (wall_s * workers),
        cpu_s=cpu_s,
        xrt_cpu=audio_s / cpu_s if cpu_s > 0 else float("nan"),
        en_wer=corpus_wer(*by_lang["en"]) if by_lang["en"][0] else float("nan"),
        zh_cer=corpus_cer(*by_lang["zh"]) if by_lang["zh"][0] else float("nan"),
    )


def _tick(label: str, total: int) -> Callable[[], None]:
    done = 0
    every = max(1, total // 5)

    def tick() -> None:
        nonlocal done
        done += 1
        if done % every == 0 or done == total:
            progress(f"[engine] {label} {done}/{total} clips")

    return tick


async def bench_pool(settings: Settings, clips: list[Clip]) -> EngineRun:
    """All clips submitted at once, one utterance per batch, so every worker stays busy."""
    async with AsrPool(settings.asr, settings.model_cache_dir) as pool:
        warm = [AsrRequest(clips[0].audio[: 2 * SAMPLE_RATE])]
        await asyncio.gather(*(pool.transcribe_batch(warm) for _ in range(pool.worker_count)))
        tick = _tick(f"pool ({pool.worker_count} workers)", len(clips))

        async def one(clip: Clip) -> AsrResult:
            result = (await pool.transcribe_batch([AsrRequest(clip.audio)]))[0]
            tick()
            return result

        cpu0, started = pids_cpu_s(pool.worker_pids), time.perf_counter()
        results = await asyncio.gather(*(one(c) for c in clips))
        wall, cpu = time.perf_counter() - started, pids_cpu_s(pool.worker_pids) - cpu0
        return summarise("pool", pool.worker_count, clips, list(results), wall, cpu)


def bench_single(config: EngineConfig, clips: list[Clip]) -> EngineRun:
    """One in-process engine, one utterance after another."""
    engine = config.build()
    engine.transcribe_batch([AsrRequest(clips[0].audio[: 2 * SAMPLE_RATE])])  # warm-up
    tick = _tick("single (1 in-process engine)", len(clips))
    results = []
    cpu0, started = time.process_time(), time.perf_counter()
    for clip in clips:
        results.append(engine.transcribe_batch([AsrRequest(clip.audio)])[0])
        tick()
    return summarise(
        "single", 1, clips, results, time.perf_counter() - started, time.process_time() - cpu0
    )
