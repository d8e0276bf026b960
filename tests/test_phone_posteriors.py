"""Phone posteriors from pocketsphinx's acoustic model: file readers, the fast Gaussian scoring against a direct
sum, the front end against forced alignment on real speech, and the per-frame viseme posteriors."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from animation.audio_features import mouth_features, viseme_posteriors
from animation.visemes import VISEMES
from audio.phone_posteriors import (AcousticModel, SAMPLE_RATE, cepstral_features, hop_centres_s, hop_posteriors,
                                    load_acoustic_model, mel_filters, read_ci_phones, read_gaussians,
                                    read_mixture_weights, state_log_likelihoods)
from audio.reference_alignments import read_mfa_csv, strip_stress


def _random_model(rng: np.random.Generator, phones: int = 3, gaussians: int = 4) -> AcousticModel:
    means = rng.standard_normal((phones, 3, gaussians, 13)) * 3
    variances = rng.uniform(0.3, 4.0, means.shape)
    weights = rng.dirichlet(np.ones(gaussians), size=(phones, 3, 3))  # [P, state, stream, G]
    return AcousticModel(tuple(f"P{i}" for i in range(phones)), means, 1 / variances,
                         -0.5 * np.log(2 * np.pi * variances).sum(-1), np.log(weights))


def _direct_state_log_likelihoods(features: np.ndarray, model: AcousticModel) -> np.ndarray:
    """The same sum written out: for each hop, phone, state and stream, log sum_g w_g N(x; m_g, v_g)."""
    hops, phones = len(features), len(model.phones)
    out = np.zeros((hops, phones, 3))
    for h in range(hops):
        for p in range(phones):
            for s in range(3):
                for stream in range(3):
                    diff = features[h, stream] - model.means[p, stream]  # [G, 13]
                    log_gauss = (-0.5 * np.log(2 * np.pi / model.precisions[p, stream]).sum(-1)
                                 - 0.5 * (diff * diff * model.precisions[p, stream]).sum(-1))
                    out[h, p, s] += logsumexp(log_gauss + model.log_weights[p, s, stream])
    return out


def test_state_log_likelihoods_match_a_direct_sum() -> None:
    rng = np.random.default_rng(7)
    model = _random_model(rng)
    features = rng.standard_normal((300, 3, 13)) * 2  # more hops than one block
    fast = state_log_likelihoods(features, model)
    direct = _direct_state_log_likelihoods(features, model)
    assert np.ptp(direct) > 50  # a spread the comparison can fail on
    np.testing.assert_allclose(fast, direct, rtol=1e-5, atol=2e-3)  # float32 inside: ~1e-4 in a log-likelihood
    with pytest.raises(ValueError, match="features must be"):
        state_log_likelihoods(np.zeros((4, 39)), model)


def test_the_shipped_model_reads_as_42_phones_with_normalised_weights() -> None:
    model = load_acoustic_model()
    assert len(model.phones) == 42 and {"SIL", "AA", "P", "M", "UW"} <= set(model.phones)
    assert model.means.shape == (42, 3, 128, 13)
    # the stored weights are quantised -log probabilities: each state's mixture sums to about 1
    totals = np.exp(model.log_weights).sum(-1)
    assert 0.9 < totals.min() and totals.max() < 1.02


def test_readers_refuse_files_of_another_kind(tmp_path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a sphinx file at all" * 10)
    for reader in (read_gaussians, read_ci_phones):
        with pytest.raises(ValueError):
            reader(junk)
    with pytest.raises(ValueError):
        read_mixture_weights(junk, 3)


def test_mel_filters_have_unit_area_and_cover_the_band() -> None:
    filters = mel_filters()
    bin_hz = SAMPLE_RATE / 512
    np.testing.assert_allclose(filters.sum(1) * bin_hz, 1.0, rtol=0.15)
    freqs = np.arange(filters.shape[1]) * bin_hz
    used = freqs[filters.sum(0) > 0]
    assert 120 <= used.min() <= 200 and 6500 <= used.max() <= 6800


def test_posteriors_are_distributions_per_hop_at_any_sample_rate() -> None:
    rng = np.random.default_rng(3)
    wave = 0.1 * rng.standard_normal(22050)  # 1 s at 22.05 kHz
    post = hop_posteriors(wave, 22050)
    assert post.shape == (1 + (16000 - 410) // 160, 42)
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-9)
    assert np.isfinite(hop_centres_s(len(post))).all() and abs(hop_centres_s(1)[0] - 205 / 16000) < 1e-12
    assert cepstral_features(np.zeros(100)).shape == (1, 3, 13)  # shorter than a window: one padded hop
    with pytest.raises(ValueError, match="mono"):
        hop_posteriors(np.zeros((2, 100)), 16000)


def _libritts(shared_data):
    import soundfile as sf

    base = shared_data / "aligned" / "libritts_5895_34622_000026_000002"
    wave, rate = sf.read(str(base.with_suffix(".wav")), dtype="float64")
    phones = read_mfa_csv(base.with_suffix(".mfa.csv"))["phones"]
    return (wave if wave.ndim == 1 else wave.mean(1)), rate, phones


def test_the_most_probable_phone_is_the_aligned_one_on_real_speech(shared_data) -> None:
    wave, rate, phones = _libritts(shared_data)
    post = hop_posteriors(wave, rate)
    names = load_acoustic_model().phones
    centres = hop_centres_s(len(post))
    truth = np.full(len(post), -1)
    for row in phones:
        label = strip_stress(row.label).upper()
        if label in names:
            truth[(centres >= row.start_s) & (centres < row.end_s)] = names.index(label)
    scored = truth >= 0
    agreement = float((post.argmax(1)[scored] == truth[scored]).mean())
    assert scored.sum() > 400
    assert agreement > 0.40, agreement  # measured 0.47; chance is 1/42, a broken front end scores < 0.1


def test_viseme_posteriors_per_frame_favour_the_aligned_viseme(shared_data) -> None:
    from animation.visemes import viseme_class_of

    wave, rate, phones = _libritts(shared_data)
    fps = 25.0
    n = int(len(wave) / rate * fps)
    visemes = viseme_posteriors(wave, rate, fps, n)
    assert visemes.shape == (n, len(VISEMES))
    np.testing.assert_allclose(visemes.sum(1), 1.0, atol=1e-9)
    centres = (np.arange(n) + 0.5) / fps
    truth = np.full(n, -1)
    for row in phones:
        inside = (centres >= row.start_s) & (centres < row.end_s)
        truth[inside] = VISEMES.index(viseme_class_of(row.label, "arpabet"))
    frames = np.flatnonzero(truth >= 0)
    on_truth = visemes[frames, truth[frames]].mean()
    # the same classes' probability on the other frames (where another viseme is aligned)
    elsewhere = np.mean([visemes[truth != c, c].mean() for c in np.unique(truth[frames])])
    assert len(frames) > 80
    assert on_truth > 0.35 and on_truth > 3 * elsewhere, (on_truth, elsewhere)


def test_mouth_features_append_the_posteriors_after_the_energy() -> None:
    rng = np.random.default_rng(5)
    wave = rng.standard_normal(16000 * 2) * np.repeat(rng.random(20), 1600)
    plain = mouth_features(wave, 16000, 25.0, 50, 8, posteriors=False)
    both = mouth_features(wave, 16000, 25.0, 50, 8, posteriors=True)
    assert plain.shape == (50, 9) and both.shape == (50, 9 + len(VISEMES))
    np.testing.assert_array_equal(both[:, :9], plain)
    np.testing.assert_allclose(both[:, 9:].sum(1), 1.0, atol=1e-9)
