"""scripts/bench-compliance: the evaluation calls and their scoring, shared by every mode.

Rendering a planned call, segmenting it as the gateway does, checking its transcripts with
the shipped scripts, and the precision/recall and cost tables. scripts/bench_compliance.py
says what each mode measures.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import Settings
from evaluation.callplans import Tally, check_call
from evaluation.evalset import CallPlan
from ivr_sim.script import CallScript, RenderedCall, Turn, render
from monitor.core.events import Party, UtteranceEnded
from monitor.core.metadata import CallMetadata
from monitor.core.session import CallSession
from monitor.qa import ComplianceResult, ScriptBook

REPO_ROOT = Path(__file__).resolve().parents[1]
TTS_DIR = REPO_ROOT.parent / "shared" / "data" / "speech" / "tts"
SPEECH_DIR = REPO_ROOT / "tests" / "data" / "speech"
#: Agent lines never used for tuning: round 4's held-out set, written before that round's
#: tuning (the earlier held-out files, heldout.tsv and heldout_semantic.tsv, are tuning
#: lines since round 4: docs/compliance.md).
HELDOUT = (REPO_ROOT / "tests" / "data" / "tts" / "heldout_round4.tsv",)
CHUNK_MS = 20
CER_LEVELS = (0.05, 0.10, 0.15, 0.20)
POLL_S = 0.25


# -- building and rendering calls ----------------------------------------------------------
def render_plan(plan: CallPlan, tts_dir: Path, speech_dir: Path, rate: int) -> RenderedCall:
    """A plan as a two-channel call; clip paths are absolute, so they may live anywhere."""
    roots = {"tts": tts_dir, "speech": speech_dir}
    turns = tuple(
        Turn(t.party, str(roots[t.line.corpus] / t.line.file), t.pause_s) for t in plan.turns
    )
    script = CallScript(plan.name, rate, turns, dict(plan.metadata))
    return render(script, data_root=speech_dir)


def segment(call: RenderedCall, settings: Settings) -> tuple[list[UtteranceEnded], int]:
    """The gateway's segmenter over the call's PCM in 20 ms chunks: (utterances, duration)."""
    meta = CallMetadata(
        external_id=call.script.name,
        sample_rate=call.sample_rate,
        channels=2,
        channel_of={Party.CUSTOMER: 0, Party.AGENT: 1},
    )
    session = CallSession(meta, settings.vad)
    pcm = call.pcm()
    step = call.sample_rate * CHUNK_MS // 1000 * 4
    out: list[UtteranceEnded] = []
    for pos in range(0, len(pcm), step):
        out.extend(session.feed(pcm[pos : pos + step]))
    out.extend(session.finish())
    return out, session.duration_ms


@dataclass(frozen=True, slots=True)
class Segment:
    party: str
    start_ms: int
    end_ms: int
    text: str
    language: str


def check(
    book: ScriptBook,
    plan: CallPlan,
    segments: list[Segment],
    duration_ms: int,
    timings: list[float],
    semantic: bool = True,
) -> ComplianceResult:
    """Feed segments in the order they would arrive (by end time), advancing the watermark;
    `semantic=False`: the phrases alone (the lexical checker before intents)."""
    spans = [(s.party, s.start_ms, s.end_ms, s.text, s.language) for s in segments]
    return check_call(book, plan, spans, duration_ms, timings, semantic)


def side_by_side(old: Tally, new: Tally) -> str:
    """Per (language, what): the lexical checker's P/R beside the semantic one's."""
    rows = [f"{'lang':4} {'what':13} {'lexical P':>9} {'R':>6}   {'semantic P':>10} {'R':>6}"]
    for lang, key in sorted(set(old.counts) | set(new.counts)):
        rows.append(
            f"{lang:4} {key:13} {old.precision(lang, key):9.3f} {old.recall(lang, key):6.3f}"
            f"   {new.precision(lang, key):10.3f} {new.recall(lang, key):6.3f}"
        )
    return "\n".join(rows)


def cost_figures(
    old: tuple[list[float], list[float]], new: tuple[list[float], list[float]]
) -> dict[str, float]:
    """Checker CPU (ms): per segment (mean, p50, p95) and per call, and what intents add."""

    def ms(values: list[float], q: float | None = None) -> float:
        if q is None:
            return round(1000 * statistics.fmean(values), 3)
        return round(1000 * statistics.quantiles(values, n=100)[int(q) - 1], 3)

    return {
        "lexical_segment_mean": ms(old[0]),
        "semantic_segment_mean": ms(new[0]),
        "semantic_segment_p50": ms(new[0], 50),
        "semantic_segment_p95": ms(new[0], 95),
        "added_segment_mean": round(ms(new[0]) - ms(old[0]), 3),
        "lexical_call_mean": ms(old[1]),
        "semantic_call_mean": ms(new[1]),
        "added_call_mean": round(ms(new[1]) - ms(old[1]), 3),
    }


def cost_line(old: tuple[list[float], list[float]], new: tuple[list[float], list[float]]) -> str:
    c = cost_figures(old, new)
    return (
        f"checker CPU per segment: lexical {c['lexical_segment_mean']} ms, semantic "
        f"{c['semantic_segment_mean']} ms (p50 {c['semantic_segment_p50']}, p95 "
        f"{c['semantic_segment_p95']}): +{c['added_segment_mean']} ms; per call: lexical "
        f"{c['lexical_call_mean']} ms, semantic {c['semantic_call_mean']} ms: "
        f"+{c['added_call_mean']} ms"
    )


def tally_figures(tally: Tally) -> dict[str, Any]:
    return {
        f"{lang}/{key}": {
            "precision": round(tally.precision(lang, key), 3),
            "recall": round(tally.recall(lang, key), 3),
            "counts": counts,
        }
        for (lang, key), counts in sorted(tally.counts.items())
    }
