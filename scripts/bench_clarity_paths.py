"""Same audio, different paths: what moves a party's DNSMOS clarity (issue 19 item 3).

    .venv/bin/python scripts/bench_clarity_paths.py     # ~1.5 min on 2 cores

One ~28 s track per speaker group (AISHELL-1 speakers, FunASR's Mandarin example, LJ Speech,
the Azure two-speaker conversation; tests/data/speech), set to -26 dBFS of active speech,
then taken down each path a switch can take and scored as the server scores a party
(`PartyQualityTracker` windows, `DnsmosScorer`): the call's OVRL mean, and the change from
native 16 kHz L16. Paths: μ-law and L16 at 8 kHz (up-sampled for the model), levels -12 and
+10 dB, and the format misreads a fork can suffer (16 kHz mono read as 8 kHz stereo, 16 kHz
read as 8 kHz, 8 kHz read as 16 kHz). The table is in docs/board.md, "Same audio, same
clarity". Figures go to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio_quality.dnsmos import DnsmosScorer  # noqa: E402
from audio_quality.g711 import round_trip  # noqa: E402
from audio_quality.party import PartyQualityTracker  # noqa: E402
from audio_quality.settings import QualitySettings  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "speech"
TRACK_S = 28
LEVEL_DBFS = -26.0


def clarity(scorer: DnsmosScorer, x: npt.NDArray[np.int16], rate: int, codec: str) -> float | None:
    """The party's OVRL mean as the server computes it (every window with enough speech)."""
    tracker = PartyQualityTracker("agent", rate, codec, QualitySettings())
    for i in range(0, x.size, rate // 50):  # 20 ms chunks, as a switch sends them
        tracker.feed(x[i : i + rate // 50])
    tracker.flush()
    for score in scorer.score_batch(tracker.take_dnsmos_windows()):
        tracker.add_dnsmos(score)
    return tracker.finish().dnsmos_ovrl_mean


def track(files: list[Path]) -> npt.NDArray[np.float64]:
    """The clips at 16 kHz with 0.4 s pauses, active speech at LEVEL_DBFS, in int16 units."""
    parts = []
    for f in files:
        audio, rate = sf.read(f, dtype="float64", always_2d=True)
        mono = audio[:, 0] if rate == 16000 else resample_poly(audio[:, 0], 16000, rate)
        parts += [mono, np.zeros(6400)]
    x = np.concatenate(parts)[: 16000 * TRACK_S]
    active = np.sqrt(np.mean(x[np.abs(x) > 0.01] ** 2))
    return np.asarray(x / active * 10 ** (LEVEL_DBFS / 20) * 32767, dtype=np.float64)


def i16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def main() -> None:
    zh = sorted((SPEECH / "zh").glob("aishell1_*.flac"))
    groups = {
        "zh S0150": [f for f in zh if "S0150" in f.name][:6],
        "zh S0252": [f for f in zh if "S0252" in f.name][:6],
        "zh S0724+S0764": [f for f in zh if "S0724" in f.name or "S0764" in f.name],
        "zh FunASR+S0252": [SPEECH / "zh/funasr_asr_example_zh.flac"]
        + [f for f in zh if "S0252" in f.name][6:10],
        "en LJ Speech": sorted((SPEECH / "en").glob("ljspeech_*.flac"))[:5],
        "conversation": [SPEECH / "conversation/azure_katiesteve.flac"],
    }
    scorer = DnsmosScorer()
    print(f"{'track / path':44s} OVRL   vs L16 16 kHz")
    for name, files in groups.items():
        x16 = track(files)
        x8 = resample_poly(x16, 1, 2)
        paths: dict[str, tuple[npt.NDArray[np.int16], int, str]] = {
            "L16 16 kHz (fork, native)": (i16(x16), 16000, "L16"),
            "L16 8 kHz (fork)": (i16(x8), 8000, "L16"),
            "mu-law 8 kHz (AudioHook, Twilio)": (round_trip(i16(x8), "PCMU"), 8000, "PCMU"),
            "L16 16 kHz, -12 dB": (i16(x16 / 4), 16000, "L16"),
            "mu-law 8 kHz, -12 dB": (round_trip(i16(x8 / 4), "PCMU"), 8000, "PCMU"),
            "L16 16 kHz, +10 dB (clips)": (i16(x16 * 3.16), 16000, "L16"),
            "16 kHz mono read as 8 kHz stereo": (i16(x16)[0::2], 8000, "L16"),
            "16 kHz read as 8 kHz": (i16(x16), 8000, "L16"),
            "8 kHz read as 16 kHz": (i16(x8), 16000, "L16"),
        }
        print(name)
        base = None
        for label, (x, rate, codec) in paths.items():
            ovrl = clarity(scorer, x, rate, codec)
            base = ovrl if base is None else base
            if ovrl is None or base is None:
                print(f"  {label:42s} no window with speech")
                continue
            print(f"  {label:42s} {ovrl:.2f}   {ovrl - base:+.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
