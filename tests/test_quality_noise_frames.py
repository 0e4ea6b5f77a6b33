"""The speech/noise split for the levels (`audio_quality.noise_frames`), on frame features."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from audio_quality.noise_frames import GUARD, LOOKAHEAD, VOICED_REACH, NoiseFrameSelector

Mask = npt.NDArray[np.bool_]


def _split(
    power: npt.NDArray[np.float64], final: Mask, voiced: Mask, pool: tuple[float, int] = (0.0, 0),
    level: float = np.inf,
) -> tuple[Mask, Mask]:  # fmt: skip
    """(speech, noise) of one block followed by LOOKAHEAD frames; audible = VAD speech."""
    n = power.size - LOOKAHEAD
    sel = NoiseFrameSelector()
    audible = final.copy()
    zero = np.zeros(power.size, dtype=np.bool_)
    return sel.select(n, power, audible[:n], final, voiced, zero[:n], pool, level)


def test_tail_joined_to_speech_is_not_noise_a_knock_apart_from_it_is() -> None:
    # Floor 1e-8; speech (voiced) at frames 50-99; a faint "s" (1e-5) runs on at 100-139,
    # past the guard; a knock (1e-4) at 170-171, apart from speech; quiet after.
    m = 200 + LOOKAHEAD
    power = np.full(m, 1e-8)
    final = np.zeros(m, dtype=np.bool_)
    voiced = np.zeros(m, dtype=np.bool_)
    final[50:100] = voiced[50:100] = True
    power[50:100] = 1e-3
    power[100:140] = 1e-5
    power[170:172] = 1e-4
    speech, noise = _split(power, final, voiced)
    assert speech[50:100].all() and not speech[100:].any()
    assert not noise[100:140].any()  # the tail, not only its first GUARD frames
    assert noise[170:172].all()  # the knock stays noise
    assert noise[: 50 - GUARD].all() and noise[140 + GUARD : 200].all()


def test_vad_speech_far_from_voicing_is_noise_not_speech() -> None:
    # The VAD bridged 0.5 s of steady clatter (frames 20-69) into a turn voiced from 70 on:
    # only its last VOICED_REACH frames stay with the speech.
    m = 150 + LOOKAHEAD
    power = np.full(m, 1e-6)
    final = np.zeros(m, dtype=np.bool_)
    voiced = np.zeros(m, dtype=np.bool_)
    final[20:120] = True
    voiced[70:120] = True
    power[70:120] = 1e-3
    speech, noise = _split(power, final, voiced, pool=(1e-6 * 100, 100))
    edge = 70 - VOICED_REACH
    assert not speech[20:edge].any() and speech[edge:120].all()
    assert noise[20 : edge - GUARD].all()


def test_loud_sound_near_the_speech_level_is_not_noise() -> None:
    # A line with a 1e-7 floor and speech at a 1e-2 level. Frames 40-59: a long fricative
    # the VAD calls speech, > VOICED_REACH from any voicing, at the speech level, fading out
    # over 60-64; frames 150-159 (the block's end): a word cut off by the hang-up, voiced
    # but not yet confirmed by the VAD. Neither is the line's noise: each alone would put
    # the noise of a call with muted pauses 20-40 dB too high (clean 120 s tracks read
    # 7-13 dB). Clatter the VAD bridged, far under the speech level, stays noise.
    m = 160 + LOOKAHEAD
    power = np.full(m, 1e-7)
    final = np.zeros(m, dtype=np.bool_)
    voiced = np.zeros(m, dtype=np.bool_)
    final[40:65] = True
    power[40:60] = 1e-2
    power[60:65] = [1e-4, 1e-5, 3e-6, 1e-6, 5e-7]
    final[100:120] = True
    power[100:120] = 1e-5  # clatter, 30 dB under the speech level
    voiced[150:] = True
    power[150:] = 5e-3
    pool = (1e-7 * 200, 200)
    speech, noise = _split(power, final, voiced, pool, level=1e-2)
    assert not noise[40:65].any() and not noise[150:160].any()
    assert not speech[40:65].any()  # not speech energy either: no voicing near it
    assert noise[100:120].all()
    assert noise[: 40 - GUARD].all() and noise[65 + GUARD : 100 - GUARD].all()
    # Without a speech level (the first second of a call), only the old rules apply.
    _, noise = _split(power, final, voiced, pool)
    assert noise[40:60].all()
