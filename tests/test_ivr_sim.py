"""Simulator: scripts as data, rendering real clips onto a two-party timeline, file input."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr_sim.script import (
    DEFAULT_DATA_ROOT,
    ScriptError,
    builtin_scripts,
    from_files,
    load_clip,
    load_script,
    render,
    script_from_dict,
)


def test_builtin_scripts_render_turns_on_their_party_channel() -> None:
    assert len(builtin_scripts()) >= 4
    for path in builtin_scripts():
        call = render(load_script(path))
        rate = call.sample_rate
        for turn in call.turns:
            ch = 0 if turn.party == "customer" else 1
            a, b = int(turn.start_s * rate), int(turn.end_s * rate)
            clip = load_clip(DEFAULT_DATA_ROOT / turn.audio, rate)
            other = call.audio[a:b, 1 - ch]
            if not np.any(other):  # no overlap here: the channel holds exactly the clip
                assert np.array_equal(call.audio[a:b, ch], clip)
            assert turn.transcript  # references come from the manifest
        starts = [t.start_s for t in call.turns]
        assert starts == sorted(starts)


def test_negative_pause_overlaps_the_previous_turn() -> None:
    call = render(load_script(next(p for p in builtin_scripts() if "en_billing_8k" in p.name)))
    overlaps = [
        (a, b) for a, b in zip(call.turns, call.turns[1:], strict=False) if b.start_s < a.end_s
    ]
    assert overlaps and overlaps[0][1].party != overlaps[0][0].party


def test_stereo_file_is_split_into_customer_and_agent(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((8000, 2)) * 3000).astype(np.int16)
    path = tmp_path / "call.wav"
    sf.write(path, data, 8000, subtype="PCM_16")
    call = from_files(path, None, 8000)
    assert np.array_equal(call.audio, data)
    assert [t.party for t in call.turns] == ["customer", "agent"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"sample_rate": 44100, "turn": [{"party": "agent", "audio": "x"}]}, "sample_rate"),
        ({"turn": [{"party": "boss", "audio": "x"}]}, "party must be"),
        ({"turn": [{"party": "agent"}]}, "audio must be"),
        ({"turn": []}, "at least one"),
    ],
)
def test_bad_scripts_name_the_problem(raw: dict, words: str) -> None:
    with pytest.raises(ScriptError, match=words):
        script_from_dict(raw)


def test_session_cpu_s_counts_every_process_of_a_session() -> None:
    # What the benchmarks charge to a server: itself and its workers, one session.
    import subprocess
    import sys

    from ivr_sim.harness import session_cpu_s

    burn = (
        "import os, time\nos.fork()\nt = time.process_time()\n"
        "while time.process_time() - t < 0.3: pass\nprint('burnt', flush=True)\ntime.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", burn], start_new_session=True, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        # Both have burnt their CPU once both said so (however slowly a busy box starts them).
        assert [proc.stdout.readline() for _ in range(2)] == [b"burnt\n"] * 2
        cpu = session_cpu_s(proc.pid)
        assert proc.pid in cpu and len(cpu) == 2, cpu  # the leader and its fork
        assert all(s >= 0.25 for s in cpu.values()), cpu  # 0.3 s, in whole clock ticks
        assert session_cpu_s(os.getsid(0)).keys().isdisjoint(cpu)  # not ours
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
