"""Offline voice conversion (audio.voice_convert): F0 mapping, envelope warping, exemplar search, speaking rate
with exact timing, and parameter files."""
from __future__ import annotations

import numpy as np
import pytest

from audio.speech import Segment, Speech
from audio import voice_convert as vc


def harmonic_wave(f0_hz: float, seconds: float = 1.5, sr: int = vc.SAMPLE_RATE) -> np.ndarray:
    """A vowel-like tone: harmonics of f0 with a slow vibrato, amplitude falling with frequency."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0_hz * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 30) if k * f0_hz < sr / 2)
    return (0.3 * wave / np.max(np.abs(wave))).astype(np.float32)


def identity_arrays() -> vc.ConversionArrays:
    return vc.ConversionArrays(np.zeros(vc.N_BINS, np.float32), np.zeros(vc.N_CEPSTRA - 1, np.float32),
                               np.ones(vc.N_CEPSTRA - 1, np.float32))


def params(**overrides) -> vc.ConversionParams:
    values = dict(method="global", source_log_f0_mean=float(np.log(120.0)), source_log_f0_std=0.1,
                  target_log_f0_mean=float(np.log(240.0)), target_log_f0_std=0.1)
    values.update(overrides)
    return vc.ConversionParams(**values)


def median_f0(wave: np.ndarray) -> float:
    f0 = vc.analyze(wave).f0
    return float(np.median(f0[f0 > 0]))


def test_f0_mapping_moves_pitch_by_the_log_mean_difference():
    speech = Speech(harmonic_wave(120.0), vc.SAMPLE_RATE, "aa")
    out = vc.convert_speech(speech, params(), identity_arrays())
    assert median_f0(speech.waveform) == pytest.approx(120.0, rel=0.05)
    assert median_f0(out.waveform) == pytest.approx(240.0, rel=0.06)


def test_map_f0_matches_mean_and_std_and_keeps_unvoiced_frames():
    rng = np.random.default_rng(1)
    f0 = np.exp(rng.normal(np.log(110.0), 0.15, 400))
    f0[::5] = 0.0
    mean, std = vc.log_f0_stats(f0)
    out = vc.map_f0(f0, params(source_log_f0_mean=mean, source_log_f0_std=std,
                               target_log_f0_mean=float(np.log(210.0)), target_log_f0_std=0.25))
    assert np.all(out[::5] == 0.0)
    got_mean, got_std = vc.log_f0_stats(out)
    assert got_mean == pytest.approx(np.log(210.0), abs=1e-6) and got_std == pytest.approx(0.25, abs=1e-6)


def test_warp_matches_slow_interpolation():
    rng = np.random.default_rng(2)
    log_env = rng.normal(size=(3, vc.N_BINS))
    for warp in (0.85, 1.0, 1.17):
        fast = vc.warp_log_envelope(log_env, warp)
        slow = np.stack([[np.interp(min(b / warp, vc.N_BINS - 1), np.arange(vc.N_BINS), row)
                          for b in range(vc.N_BINS)] for row in log_env])
        np.testing.assert_allclose(fast, slow, atol=1e-9)


def test_nearest_exemplars_matches_brute_force():
    rng = np.random.default_rng(3)
    query, exemplars = rng.normal(size=(700, 5)), rng.normal(size=(90, 5))
    brute = np.argmin(((query[:, None] - exemplars[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(vc.nearest_exemplars(query, exemplars, chunk=64), brute)
    with pytest.raises(ValueError):
        vc.nearest_exemplars(query, exemplars[:, :4])


def test_mel_cepstra_ignore_overall_level():
    env = np.exp(np.random.default_rng(4).normal(-8.0, 2.0, size=(20, vc.N_BINS)))
    np.testing.assert_allclose(vc.mel_cepstra(env * 37.0), vc.mel_cepstra(env), atol=1e-3)
    assert not np.allclose(vc.mel_cepstra(env[:, ::-1].copy()), vc.mel_cepstra(env), atol=1e-3)


@pytest.mark.parametrize("rate", [0.8, 1.0, 1.25])
def test_rate_change_scales_timing_exactly(rate):
    sr = 22050
    wave = np.concatenate([harmonic_wave(130.0, 0.6, sr), np.zeros(sr // 5, np.float32), harmonic_wave(110.0, 0.7, sr)])
    duration = len(wave) / sr
    phones = [Segment("a", 0.0, 0.6), Segment("sil", 0.6, 0.8), Segment("o", 0.8, duration)]
    speech = Speech(wave, sr, "a o", words=[Segment("a", 0.0, 0.6), Segment("o", 0.8, duration)], phones=phones)
    out = vc.convert_speech(speech, params(rate=rate), identity_arrays())
    assert out.sample_rate == vc.SAMPLE_RATE
    assert len(out.waveform) == round(len(vc.resample_to(wave, sr)) / rate)
    factor = out.duration_s / duration
    assert factor == pytest.approx(1.0 / rate, rel=2e-3)
    for before, after in zip(phones, out.phones):
        assert after.label == before.label
        assert after.start_s == pytest.approx(before.start_s * factor, abs=1e-9)
        assert after.end_s == pytest.approx(before.end_s * factor, abs=1e-9)
    assert out.phones[-1].end_s == pytest.approx(out.duration_s, abs=1e-9)
    # the pause really moved with the timing: the quietest stretch is where the scaled "sil" phone says
    level = np.convolve(out.waveform ** 2, np.ones(160) / 160, mode="same")
    pause = out.phones[1]
    middle = int((pause.start_s + pause.end_s) / 2 * vc.SAMPLE_RATE)
    assert level[middle] < 1e-3 * level.max()


def test_params_and_arrays_validate_and_round_trip():
    with pytest.raises(ValueError, match="method"):
        params(method="magic")
    with pytest.raises(ValueError, match="rate"):
        params(rate=3.0)
    p = params(warp=1.1, rate=1.05)
    assert vc.ConversionParams.from_dict(p.to_dict()) == p
    arrays = identity_arrays()
    back = vc.ConversionArrays.from_tensors(arrays.to_tensors())
    np.testing.assert_array_equal(back.envelope_gain, arrays.envelope_gain)
    with pytest.raises(ValueError, match="envelope_gain"):
        vc.ConversionArrays(np.zeros(10, np.float32), arrays.cepstrum_mean, arrays.cepstrum_std)
