"""DNSMOS within a CPU budget: the sampled per-call clarity (one window per party per
`quality.dnsmos.sample_every_s` of media plus the end of the call) stays within 0.1 MOS of
scoring every window, on the real two-party test calls, while scoring fewer windows."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from audio_quality.dnsmos import DnsmosScorer, DnsmosWindow
from audio_quality.party import PartyQualityTracker
from audio_quality.settings import QualitySettings
from ivr_sim import RenderedCall, builtin_scripts, load_script, render
from monitor.runtime.dnsmos_service import DnsmosSampler

TOLERANCE_MOS = 0.1
DEFAULT_EVERY_S = QualitySettings().dnsmos.sample_every_s


@functools.cache
def scorer() -> DnsmosScorer:
    return DnsmosScorer()


def test_default_budget_is_a_sample() -> None:
    assert DEFAULT_EVERY_S > 0  # the default spends less than unsampled scoring


def _calls() -> dict[str, tuple[int, np.ndarray]]:
    """The builtin calls, and each of them four times over (a 2-minute conversation between
    the same two people: the case where sampling saves most)."""
    rendered: list[RenderedCall] = [render(load_script(p)) for p in sorted(builtin_scripts())]
    out = {c.script.name: (c.sample_rate, c.audio) for c in rendered}
    for c in rendered:
        out[f"{c.script.name}_x4"] = (c.sample_rate, np.concatenate([c.audio] * 4))
    return out


def _windows(rate: int, audio: np.ndarray) -> dict[str, list[DnsmosWindow]]:
    """Every window each party's tracker offers, in media order (taken as they come, like
    the live call does after each chunk)."""
    out: dict[str, list[DnsmosWindow]] = {}
    for channel, party in enumerate(("customer", "agent")):
        tracker = PartyQualityTracker(party, rate, "l16", QualitySettings())
        wins = out.setdefault(party, [])
        for i in range(0, audio.shape[0], rate // 50):
            tracker.feed(np.ascontiguousarray(audio[i : i + rate // 50, channel]))
            wins.extend(tracker.take_dnsmos_windows())
        tracker.flush()
        wins.extend(tracker.take_dnsmos_windows())
    return out


@pytest.mark.parametrize(
    "name",
    [
        # the four times longer calls (31 s together) run with `scripts/test --long`
        pytest.param(n, marks=pytest.mark.long) if n.endswith("_x4") else n
        for n in sorted(_calls())
    ],
)
def test_sampled_clarity_is_within_a_tenth_of_every_window(name: str) -> None:
    rate, audio = _calls()[name]
    per_party = _windows(rate, audio)
    every = [w for wins in per_party.values() for w in wins]
    scores = {(s.party, s.seq): s.ovrl_mos for s in scorer().score_batch(every)}
    sampler = DnsmosSampler(DEFAULT_EVERY_S)
    chosen = [w for window in every for w in sampler.offer(window)] + sampler.finish()
    for party, wins in per_party.items():
        if not wins:
            continue
        full = float(np.mean([scores[(party, w.seq)] for w in wins]))
        mine = [scores[(party, w.seq)] for w in chosen if w.party == party]
        assert mine, f"{name} {party}: no window scored"
        sampled = float(np.mean(mine))
        print(f"{name} {party}: all {len(wins)} windows {full:.3f}, "
              f"sampled {len(mine)} {sampled:.3f}, diff {sampled - full:+.3f}")  # fmt: skip
        assert abs(sampled - full) <= TOLERANCE_MOS
    if len(every) > 2 * len(per_party):
        assert len(chosen) < len(every)  # the budget saved work where there was any to save
