"""Mouth openness: jaw opening of the visemes, scaled by the loudness of the audio."""
from __future__ import annotations

import numpy as np
import pytest

from animation.coarticulation import viseme_weights
from animation.loudness import OpennessOptions, frame_rms, loudness_gain, mouth_openness
from animation.visemes import VISEME_INDEX, VISEMES
from audio.speech import Segment

SR = 16000
FPS = 25.0


def tone(seconds: float, amplitude: float, freq: float = 180.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def one_hot(names: list[str]) -> np.ndarray:
    w = np.zeros((len(names), len(VISEMES)))
    w[np.arange(len(names)), [VISEME_INDEX[n] for n in names]] = 1.0
    return w


def test_frame_rms_matches_direct_computation() -> None:
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, SR).astype(np.float32)  # 1 s
    rms = frame_rms(wave, SR, FPS, 25, window_frames=1.0)
    for t in (0, 7, 24):
        lo, hi = int(round(t * SR / FPS)), int(round((t + 1) * SR / FPS))
        assert np.isclose(rms[t], np.sqrt(np.mean(wave[lo:hi].astype(np.float64) ** 2)), rtol=1e-6)
    # frames past the end of the audio are silent
    assert np.all(frame_rms(wave, SR, FPS, 40)[30:] == 0.0)


def test_openness_zero_on_silence_and_higher_on_loud_open_vowels() -> None:
    # 0.4 s silence, 0.4 s loud "aa", 0.4 s quiet "aa", 0.4 s loud "ih", 0.4 s silence.
    wave = np.concatenate([np.zeros(int(0.4 * SR), np.float32), tone(0.4, 0.5), tone(0.4, 0.02), tone(0.4, 0.5),
                           np.zeros(int(0.4 * SR), np.float32)])
    phones = [Segment("AA1", 0.4, 0.8), Segment("AA1", 0.8, 1.2), Segment("IY1", 1.2, 1.6)]
    weights = viseme_weights(phones, "arpabet", FPS, 50)
    opening = mouth_openness(weights, wave, SR, FPS)
    assert opening.shape == (50,) and np.all((opening >= 0) & (opening <= 1))
    assert np.all(opening[:8] == 0.0) and np.all(opening[-8:] == 0.0)
    loud_aa, quiet_aa, loud_ih = opening[13:18].mean(), opening[23:28].mean(), opening[33:38].mean()
    assert loud_aa > 0.8
    assert loud_aa > quiet_aa + 0.2
    assert loud_aa > loud_ih + 0.3


def test_phone_over_silent_audio_keeps_mouth_closed() -> None:
    wave = np.concatenate([tone(0.4, 0.3), np.zeros(int(0.4 * SR), np.float32)])
    weights = one_hot(["aa"] * 20)  # timing says "aa" throughout
    opening = mouth_openness(weights, wave, SR, FPS)
    assert opening[3:8].min() > 0.5 and np.all(opening[13:] == 0.0)


def test_all_silent_audio_gives_closed_mouth() -> None:
    opening = mouth_openness(one_hot(["aa"] * 10), np.zeros(SR, np.float32), SR, FPS)
    assert np.all(opening == 0.0)


def test_normalisation_does_not_depend_on_recording_gain() -> None:
    rng = np.random.default_rng(3)
    wave = (tone(1.0, 0.3) * rng.uniform(0.2, 1.0, SR)).astype(np.float32)
    weights = one_hot(["E"] * 25)
    a = mouth_openness(weights, wave, SR, FPS)
    b = mouth_openness(weights, wave * 0.05, SR, FPS)
    assert np.allclose(a, b, atol=1e-6)


def test_gain_ignores_rare_clicks() -> None:
    rms = np.full(100, 0.1)
    rms[3] = 10.0  # one click 40 dB above the speech
    gain = loudness_gain(rms)
    assert np.all(gain[np.arange(100) != 3] == 1.0)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="weights"):
        mouth_openness(np.ones((4, 3)), np.zeros(100), SR, FPS)
    with pytest.raises(ValueError, match="sum to 1"):
        mouth_openness(np.ones((4, len(VISEMES))), np.zeros(100), SR, FPS)
    with pytest.raises(ValueError, match="mono"):
        frame_rms(np.zeros((2, 100)), SR, FPS, 3)
    with pytest.raises(ValueError, match="NaN"):
        frame_rms(np.full(100, np.nan), SR, FPS, 3)
    with pytest.raises(ValueError, match="positive"):
        OpennessOptions(gamma=0.0)
