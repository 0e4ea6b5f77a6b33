"""Endpointing and encoder-window measurements on the built-in calls (docs/benchmarks.md).

    PYTHONPATH=. python scripts/bench_endpointing.py            # the default grid
    PYTHONPATH=. python scripts/bench_endpointing.py --end-silence 300,500 --cap 15

What it owns: replaying each built-in call's two channels through the real segmenter
(`UtteranceSegmenter`, with the 8 kHz upsampler the call session uses) under several VAD
settings, decoding every utterance with the real engine in each window mode, and printing per
setting: utterances, mid-phrase splits (a turn of the script cut into more than one
utterance), the median time from end of speech to the utterance being cut (the end silence
the segmenter waits for), WER (en) / CER (zh) against the scripts' references, the engine's
CPU seconds and how often the short window fell back. The baseline line is faster-whisper's
offline full-window greedy decode of each turn as the call carries it.

No server, no scheduling: this isolates what endpointing and the window do to accuracy and
cost. Decodes of identical utterances are cached across settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from math import gcd
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from asr.engine import EngineConfig, WhisperEngine
from asr.settings import AsrSettings, VadSettings
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from audio_quality.resample import Upsampler2x
from evaluation.scoring import corpus_cer, corpus_wer
from ivr_sim.script import RenderedCall, builtin_scripts, load_script, render
from monitor.core.events import Party, UtteranceEnded
from monitor.core.segmenter import UtteranceSegmenter

REPO = Path(__file__).resolve().parent.parent
CHANNELS = {Party.CUSTOMER: 0, Party.AGENT: 1}


def to16k(samples: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.float32]:
    g = gcd(rate, SAMPLE_RATE)
    up = resample_poly(samples.astype(np.float32) / 32768.0, SAMPLE_RATE // g, rate // g)
    return np.ascontiguousarray(up, dtype=np.float32)


def segment(call: RenderedCall, vad: VadSettings) -> list[UtteranceEnded]:
    """Both channels through the live segmenter, fed in 20 ms chunks as a switch sends them."""
    out = []
    chunk = call.sample_rate // 50
    for party, channel in CHANNELS.items():
        seg = UtteranceSegmenter(party, vad)
        up = Upsampler2x() if call.sample_rate == 8000 else None
        samples = np.ascontiguousarray(call.audio[:, channel])
        for i in range(0, len(samples), chunk):
            part = samples[i : i + chunk]
            out += seg.feed(up.process(part) if up is not None else part)
        out += seg.finish()
    return out


def splits(call: RenderedCall, utts: list[UtteranceEnded]) -> int:
    """Turns cut into more than one utterance (one count per extra cut)."""
    extra = 0
    for turn in call.turns:
        inside = [
            u
            for u in utts
            if u.party.value == turn.party
            and u.start_ms / 1000 < turn.end_s
            and u.end_ms / 1000 > turn.start_s
        ]
        extra += max(0, len(inside) - 1)
    return extra


class Decoder:
    """One engine per window mode; results cached by (mode, utterance)."""

    def __init__(self, config: EngineConfig, modes: dict[str, float]) -> None:
        self.engines: dict[str, WhisperEngine] = {
            name: dataclasses.replace(config, window_margin_s=m).build()
            for name, m in modes.items()
        }
        self._cache: dict[tuple[str, str, int, int, str], AsrResult] = {}
        self.cpu: dict[str, float] = dict.fromkeys(modes, 0.0)

    def text(self, mode: str, call: str, u: UtteranceEnded) -> tuple[AsrResult, float]:
        key = (mode, call, u.start_sample, u.end_sample, u.party.value)
        if key not in self._cache:
            t0 = time.process_time()
            audio = u.audio.astype(np.float32) / 32768.0
            self._cache[key] = self.engines[mode].transcribe_batch([AsrRequest(audio)])[0]
            self.cpu[mode] += time.process_time() - t0
        return self._cache[key], 0.0


def score(calls: list[RenderedCall], texts: dict[tuple[str, str], str]) -> tuple[float, float]:
    refs: dict[str, list[str]] = {"en": [], "zh": []}
    hyps: dict[str, list[str]] = {"en": [], "zh": []}
    for call in calls:
        lang = "zh" if call.script.name.startswith("zh") else "en"
        for party in ("customer", "agent"):
            refs[lang].append(call.reference(party))
            hyps[lang].append(texts.get((call.script.name, party), ""))
    return corpus_wer(refs["en"], hyps["en"]), corpus_cer(refs["zh"], hyps["zh"])


def baseline(calls: list[RenderedCall], engine: WhisperEngine) -> tuple[float, float]:
    """Each turn as the call carries it, decoded alone on the full window."""
    texts: dict[tuple[str, str], list[str]] = {}
    for call in calls:
        for turn in call.turns:
            ch = CHANNELS[Party(turn.party)]
            a, b = int(turn.start_s * call.sample_rate), int(turn.end_s * call.sample_rate)
            audio = to16k(call.audio[a:b, ch], call.sample_rate)
            res = engine.transcribe_batch([AsrRequest(audio)])[0]
            texts.setdefault((call.script.name, turn.party), []).append(res.text)
    joined = {k: " ".join(v) for k, v in texts.items()}
    return score(calls, joined)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--end-silence", default="300,400,500,700", help="ms, comma-separated")
    p.add_argument("--cap", default="15", help="max_utterance_s values, comma-separated")
    p.add_argument("--margins", default="0,3", help="window margins (s); 0 = full window")
    args = p.parse_args()
    calls = [render(load_script(path)) for path in builtin_scripts()]
    asr = AsrSettings(model="base", cache_dir=REPO / ".cache" / "models", offline=True)
    config = EngineConfig.from_settings(asr, REPO / ".cache" / "models")
    modes = {f"margin {m}": float(m) for m in args.margins.split(",")}
    decoder = Decoder(config, modes)
    full = dataclasses.replace(config, window_margin_s=0.0, fallback=False, boost_dbfs=None).build()
    wer, cer = baseline(calls, full)
    print(f"offline full-window greedy per turn: WER {wer:.1%} CER {cer:.1%}")
    print("end_silence cap | utts splits | mode      | WER    CER   | CPU-s  fallbacks")
    for cap in (float(c) for c in args.cap.split(",")):
        for silence in (int(s) for s in args.end_silence.split(",")):
            vad = VadSettings(end_silence_ms=silence, max_utterance_s=cap)
            utts = {c.script.name: segment(c, vad) for c in calls}
            n = sum(len(v) for v in utts.values())
            cut = sum(splits(c, utts[c.script.name]) for c in calls)
            for mode in modes:
                cpu0 = decoder.cpu[mode]
                texts: dict[tuple[str, str], list[str]] = {}
                fallbacks = 0
                for name, found in utts.items():
                    for u in sorted(found, key=lambda u: u.start_sample):
                        res, _ = decoder.text(mode, name, u)
                        fallbacks += res.fallback is not None
                        if res.text:
                            texts.setdefault((name, u.party.value), []).append(res.text)
                wer, cer = score(calls, {k: " ".join(v) for k, v in texts.items()})
                print(
                    f"{silence:8d} ms {cap:4.0f} | {n:4d} {cut:6d} | {mode:9} | {wer:5.1%} "
                    f"{cer:5.1%} | {decoder.cpu[mode] - cpu0:5.1f}  {fallbacks}/{n}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
