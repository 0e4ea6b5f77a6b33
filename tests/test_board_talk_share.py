"""The live talk share is the stored one (issue 19 item 8): real speech on both channels,
the agent's leg opening with an 8 s IVR prompt (speech, but not talk), fed through the call
analyser; its readings drive the board card as on a live call, and the card's share at the end
equals the stored `agent_talk_ratio` (before: a second count from the readings' VAD, which
counted the prompt as the agent talking)."""

from __future__ import annotations

import numpy as np

from audio_quality.impair import to_int16
from audio_quality.settings import QualitySettings
from config.settings import GradingSettings
from monitor.board.state import BoardState
from monitor.core.analysis import CallAnalyzer
from monitor.core.metadata import parse_metadata
from monitor.events import CallSequencer, ReadingTaken
from monitor.qa import load_compliance_scripts
from monitor.runtime import findings
from tests.quality_support import LJ, speech_track
from tests.test_board_state import T0, opened

QUALITY = QualitySettings(dnsmos={"enabled": False})


def test_live_talk_share_equals_the_stored_one() -> None:
    seconds = 24.0
    agent = speech_track(LJ[:6], 8000, 5, seconds, (0.3, 0.8))
    customer = speech_track(LJ[6:], 8000, 9, seconds, (2.5, 5.0))
    meta = parse_metadata('{"callid":"t1","sampleRate":8000,"channels":2}')
    analyzer = CallAnalyzer(meta, QUALITY, GradingSettings(), load_compliance_scripts(), "en")
    stereo = np.stack([to_int16(customer), to_int16(agent)], axis=1).astype("<i2").tobytes()
    board = BoardState(today=T0.date())
    board.apply(opened("t1"), now=0.0)
    shares: list[float] = []
    seq = CallSequencer("t1", start=1)
    analyzer.ivr_prompt_started(0)
    for i in range(0, len(stereo), 640):  # 40 ms of two channels
        if i == 8000 * 4 * 8:  # 8 s in
            analyzer.ivr_prompt_ended(8000)
        for ev in findings.analysis_events(seq, analyzer.feed(stereo[i : i + 640])):
            if isinstance(ev, ReadingTaken):
                board.apply(ev, now=0.0)
        card = board.snapshot()["calls"][0]
        if (live := card["parties"]["agent"]["talk_ratio"]) is not None:
            shares.append(live)
    for ev in findings.analysis_events(seq, analyzer.flush()):
        if isinstance(ev, ReadingTaken):
            board.apply(ev, now=0.0)
    stored = analyzer.finish().conversation.agent_talk_ratio
    card = board.snapshot()["calls"][0]["parties"]
    assert stored is not None and 0.55 < stored < 0.9  # the agent talks most
    assert card["agent"]["talk_ratio"] == round(stored, 3)
    assert card["customer"]["talk_ratio"] == round(1 - stored, 3)
    assert len(shares) > 5  # the meter was live all along, from the same totals
