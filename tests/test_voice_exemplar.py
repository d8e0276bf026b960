"""Waveform exemplar synthesis (audio.voice_exemplar): pitch marks, grain selection, TD-PSOLA overlap-add
against slow twins, and re-synthesis of a harmonic signal at a new F0."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from audio import voice_convert as vc
from audio import voice_exemplar as vx

SR = vx.SAMPLE_RATE


def vowel(f0_hz: float, seconds: float = 1.0, formants=(700.0, 1200.0)) -> np.ndarray:
    """Harmonics of f0 shaped by two resonances (a crude vowel); constant pitch."""
    t = np.arange(int(seconds * SR)) / SR
    wave = np.zeros_like(t)
    for k in range(1, int(7000 / f0_hz)):
        f = k * f0_hz
        gain = sum(1.0 / (1.0 + ((f - fc) / 120.0) ** 2) for fc in formants) + 0.02
        wave += gain * np.cos(2 * np.pi * f * t)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def random_bank(rng, grains=12, length=3000, channels=4) -> vx.GrainBank:
    centres = np.sort(rng.integers(0, length, grains))
    voiced = rng.random(grains) < 0.6
    return vx.GrainBank(rng.normal(size=length).astype(np.float32), centres,
                        rng.integers(20, 90, grains), voiced, np.where(voiced, rng.normal(5.0, 0.2, grains), 0.0),
                        rng.normal(size=(grains, channels)).astype(np.float32))


def test_overlap_add_matches_slow_twin():
    rng = np.random.default_rng(0)
    bank = random_bank(rng)
    chosen = rng.integers(0, len(bank.centres), 40)
    marks = np.sort(rng.integers(0, 2500, 40))
    fast = vx.overlap_add(bank, chosen, marks, 2500)
    slow = vx.overlap_add_slow(bank, chosen, marks, 2500)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    # A unit gain through the FFT shaping path changes nothing; a uniform gain scales.
    flat = np.zeros((len(marks), vx.SHAPE_FFT // 2 + 1))
    np.testing.assert_allclose(vx.overlap_add(bank, chosen, marks, 2500, flat), slow, atol=1e-5)
    np.testing.assert_allclose(vx.overlap_add(bank, chosen, marks, 2500, flat + np.log(2.0)), 2 * slow, atol=1e-5)
    with pytest.raises(ValueError, match="log_gain"):
        vx.overlap_add(bank, chosen, marks, 2500, flat[:3])


def test_viterbi_matches_exhaustive_search():
    rng = np.random.default_rng(1)
    for _ in range(20):
        steps, k = 5, 3
        candidates = np.stack([rng.permutation(6)[:k] for _ in range(steps)])
        costs = rng.random((steps, k))
        weight = float(rng.random() * 2)

        def path_cost(path):
            grains = candidates[np.arange(steps), path]
            jumps = [(b - a) not in (0, 1) for a, b in zip(grains[:-1], grains[1:])]
            return costs[np.arange(steps), path].sum() + weight * sum(jumps)

        best = min(path_cost(np.array(p)) for p in itertools.product(range(k), repeat=steps))
        got = vx._viterbi(candidates, costs, weight)
        index = [list(candidates[s]).index(g) for s, g in enumerate(got)]
        assert path_cost(np.array(index)) == pytest.approx(best)


def test_selection_keeps_voicing_and_follows_pitch():
    rng = np.random.default_rng(2)
    bank = random_bank(rng, grains=30)
    query = rng.normal(size=(50, 4))
    voiced = rng.random(50) < 0.5
    log_f0 = rng.normal(5.0, 0.2, 50)
    chosen = vx.select_grains(query, log_f0, voiced, bank, vx.GrainOptions(k=4))
    np.testing.assert_array_equal(bank.voiced[chosen], voiced)
    # With a dominant pitch cost and no jump cost, voiced marks take the grain of nearest F0.
    chosen = vx.select_grains(query, log_f0, voiced, bank, vx.GrainOptions(k=30, pitch_weight=1e4, jump_weight=0))
    pool = np.flatnonzero(bank.voiced)
    nearest = pool[np.argmin(np.abs(log_f0[voiced, None] - bank.log_f0[pool][None]), axis=1)]
    np.testing.assert_array_equal(chosen[voiced], nearest)
    with pytest.raises(ValueError, match="query"):
        vx.select_grains(query[:, :3], log_f0, voiced, bank, vx.GrainOptions())


def test_pitch_marks_are_one_period_apart():
    wave = vowel(125.0)
    f0 = np.full(len(wave) // vx.FRAME_HOP, 125.0)
    marks = vx.pitch_marks(wave, f0)
    spacing = np.diff(marks)
    assert len(marks) == pytest.approx(125, abs=2)
    assert np.all(np.abs(spacing - SR / 125.0) <= 1)


def test_resynthesis_at_new_f0_keeps_envelope_and_takes_the_period():
    wave = vowel(120.0, 1.2)
    analysis = vc.analyze(wave)
    bank, grain_log_envelope = vx.bank_from_reference(wave, analysis)
    assert bank.voiced.mean() > 0.9
    frames = len(analysis.f0)
    target = vc.WorldFeatures(np.full(frames, 150.0), analysis.envelope, analysis.aperiodicity, len(wave))
    cepstra = bank.features[np.minimum(np.arange(frames), len(bank.features) - 1)].astype(np.float64)
    out = vx.synthesize_grains(cepstra, target, bank, grain_log_envelope, shaping=0.0)
    assert len(out) == len(wave)
    core = slice(frames // 5, 4 * frames // 5)  # frames away from the run's edges
    got = vc.analyze(out)
    assert np.median(got.f0[got.f0 > 0]) == pytest.approx(150.0, rel=0.03)
    before = vc.mel_cepstra(analysis.envelope[core][::10])[:, :8].mean(0)
    after = vc.mel_cepstra(got.envelope[core][::10])[:, :8].mean(0)
    assert np.corrcoef(before, after)[0, 1] > 0.95
    # Moving the grains' envelope onto another one (formants up) moves the output's envelope there.
    other = vc.analyze(vowel(120.0, 1.2, formants=(400.0, 2200.0)))
    target = vc.WorldFeatures(np.full(frames, 150.0), other.envelope, other.aperiodicity, len(wave))
    shaped = vc.analyze(vx.synthesize_grains(cepstra, target, bank, grain_log_envelope, shaping=1.0))
    wanted = vc.mel_cepstra(other.envelope[core][::10])[:, :8].mean(0)
    moved = vc.mel_cepstra(shaped.envelope[core][::10])[:, :8].mean(0)
    assert np.linalg.norm(moved - wanted) < 0.5 * np.linalg.norm(before - wanted)


def test_bad_inputs_are_refused():
    rng = np.random.default_rng(3)
    bank = random_bank(rng)
    with pytest.raises(ValueError, match="halves"):
        vx.GrainBank(bank.wave, bank.centres, bank.halves[:3], bank.voiced, bank.log_f0, bank.features)
    with pytest.raises(ValueError, match="inside"):
        vx.GrainBank(bank.wave, bank.centres + 10_000, bank.halves, bank.voiced, bank.log_f0, bank.features)
    with pytest.raises(ValueError, match="k >= 1"):
        vx.GrainOptions(k=0)
