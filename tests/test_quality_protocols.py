"""Same audio, same clarity (issue 19 item 3): one Mandarin call streamed over AudioHook (G.711
μ-law, 8 kHz) and over the audio fork (L16 at 8 and 16 kHz) into one real server scores the
same DNSMOS clarity per party within the tolerances measured in docs/board.md ("Same audio,
same clarity"); read at the wrong rate, the way the report's 1.6-1.8 arose, it scores far
lower and the pace check flags it."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from audio_quality.format_check import PACE_WALL_S
from ivr_sim import RenderedCall, render, stream_call
from ivr_sim.script import script_from_dict
from ivr_sim.stream import StreamReport, call_metadata
from tests.fixtures_server import LiveServer

pytestmark = pytest.mark.slow
#: |clarity difference| allowed between paths at the same rate (measured <= 0.05 MOS: μ-law
#: against linear) and between 8 and 16 kHz (measured <= 0.17: the narrow-band penalty).
SAME_RATE_MOS = 0.1
CROSS_RATE_MOS = 0.25
#: The least drop of a stream read at half its rate (measured 0.25-1.3 MOS).
MISREAD_DROP_MOS = 0.3


@functools.cache
def zh_call(rate: int) -> RenderedCall:
    agent = ["S0252W0121", "S0252W0139", "S0252W0160", "S0252W0179", "S0252W0198"]
    customer = ["S0724W0121", "S0724W0122", "S0724W0123", "S0724W0124", "S0724W0125"]
    turns = []
    for a, c in zip(agent, customer, strict=True):
        turns += [
            {"party": "agent", "audio": f"zh/aishell1_BAC009{a}.flac", "pause": 0.4},
            {"party": "customer", "audio": f"zh/aishell1_BAC009{c}.flac", "pause": 0.4},
        ]
    return render(script_from_dict({
        "name": f"clarity-zh-{rate}", "sample_rate": rate,
        "metadata": {"agent": "3007", "queue": "cards"}, "turn": turns,
    }))  # fmt: skip


def test_the_same_audio_scores_the_same_clarity_over_each_protocol(server: LiveServer) -> None:
    c16, c8 = zh_call(16000), zh_call(8000)
    # drachtio's metadata names no format: the gateway's defaults (8 kHz stereo) read it.
    misread = {k: v for k, v in call_metadata(c16).items() if k not in ("sampleRate", "mixType")}

    async def later(call: RenderedCall, **kw: Any) -> StreamReport:
        # After the misread call's pace check (its first 10 s by the gateway's clock), so a
        # busy box cannot slow its arrival below the 2x the check looks for.
        await asyncio.sleep(PACE_WALL_S + 1.0)
        return await stream_call(server.url, call, pace=5.0, **kw)

    async def go() -> list[str]:
        reports = await asyncio.gather(
            # `pace` is a multiple of real time: the three readings at 5x (under the gateway's
            # 10x rate limit); the misread one at a live switch's pace, which the pace check
            # compares against the wall clock.
            later(c16, protocol="audiohook"),  # μ-law 8 kHz
            later(c8),  # L16 8 kHz
            later(c16),  # L16 16 kHz
            stream_call(server.url, c16, pace=1.0, metadata=misread),
        )
        return [r.external_id for r in reports]

    ids = asyncio.run(go())
    clarity: dict[str, dict[str, float]] = {}
    for name, ext in zip(("hook", "fork8", "fork16", "misread"), ids, strict=True):
        call = server.wait_call(ext)
        analysis = server.repo.get_analysis(call.call_id)
        clarity[name] = {}
        for party in ("agent", "customer"):
            summary = analysis.result("quality_party", party)
            assert summary is not None and summary["dnsmos_ovrl_mean"] is not None, name
            clarity[name][party] = summary["dnsmos_ovrl_mean"]
        if name == "misread":
            flags = [t.data for t in call.trace if t.kind == "format_suspect"]
            print(flags)
            assert "pace_double" in [r for f in flags for r in f["reasons"]], flags
        else:
            assert not [t for t in call.trace if t.kind == "format_suspect"], name
    print(clarity)
    for party in ("agent", "customer"):
        hook, fork8, fork16 = (clarity[k][party] for k in ("hook", "fork8", "fork16"))
        assert abs(hook - fork8) <= SAME_RATE_MOS, (party, clarity)
        assert abs(hook - fork16) <= CROSS_RATE_MOS, (party, clarity)
        assert clarity["misread"][party] <= fork16 - MISREAD_DROP_MOS, (party, clarity)
