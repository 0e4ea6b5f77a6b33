"""An ASR worker process with a scripted transcriber, for the scale-out tests where the text is
not the point: `python -m tests.scripted_asr_worker NAME DELAY_S` (bus settings from the
environment, `CALLWATCH_BUS__...`). It serves through the product's `serve_asr`, prints
`transcribing <key>` when it takes an utterance (so a test knows which worker holds it) and
answers `"<NAME> heard <samples> samples"` after DELAY_S seconds."""

from __future__ import annotations

import asyncio
import signal
import sys

from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from config.settings import load_settings
from monitor.scale.asr_worker import connect_worker, serve_asr
from monitor.scale.connect import BusError


class ScriptedTranscriber:
    def __init__(self, name: str, delay_s: float) -> None:
        self.name, self.delay_s = name, delay_s

    @property
    def worker_count(self) -> int:
        return 1

    async def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult]:
        out = []
        for r in requests:
            print(f"transcribing {r.tag}", flush=True)
            await asyncio.sleep(self.delay_s)
            out.append(AsrResult(text=f"{self.name} heard {len(r.audio)} samples", language="en",
                                 confidence=0.9, audio_s=len(r.audio) / SAMPLE_RATE,
                                 compute_s=self.delay_s, tag=r.tag))  # fmt: skip
        return out


async def main(name: str, delay_s: float) -> None:
    settings = load_settings()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    nc = await connect_worker(settings, f"scripted-{name}")
    await serve_asr(settings, ScriptedTranscriber(name, delay_s), stop, nc)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], float(sys.argv[2])))
    except BusError as exc:
        print(f"asr-worker: {exc}", file=sys.stderr)
        sys.exit(1)
