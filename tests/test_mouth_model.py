"""Audio -> mouth regression: features, ridge solve, fitting (delay, cross-validation), save/load, and a real
model fitted on a shared video driven by a Piper sentence (another speaker)."""
from __future__ import annotations

import numpy as np
import pytest

from animation.audio_features import frame_features, frames_audio, with_context
from animation.mouth_ensemble import amplitude_gain, merge_members
from animation.mouth_delay import measure_phone_shift
from animation.mouth_model import (MouthFitOptions, MouthModel, MouthModelFacts, blend_with_phones,
                                   design_matrix, fit_mouth_model, load_mouth_model)
from animation.ridge import keep_components, ridge_fit
from animation.mouth_opening import opening_curve, opening_direction, opening_gain, opening_gradient

SR = 16000
FPS = 25.0


def _synthetic_clip(seed: int, seconds: float = 24.0, delay: int = 4):
    """Noise bursts with a random syllable envelope; the 'mouth' (coefficient 0) follows the envelope `delay`
    frames earlier than the audio, like a recording whose audio trails its video."""
    rng = np.random.default_rng(seed)
    t = int(seconds * FPS)
    envelope = np.clip(np.convolve(rng.random(t) > 0.6, np.hanning(5), mode="same"), 0, 1)  # [T] 0..1
    samples = int(round(seconds * SR))
    per_sample = np.repeat(envelope, SR // int(FPS))[:samples]
    tone = np.sin(2 * np.pi * 180 * np.arange(samples) / SR) + 0.5 * rng.standard_normal(samples)
    waveform = (0.3 * per_sample * tone + 1e-3 * rng.standard_normal(samples)).astype(np.float32)
    opening = np.concatenate([envelope[delay:], np.zeros(delay)])  # mouth[t] = audio envelope[t + delay]
    coeffs = np.stack([opening, 0.1 * rng.standard_normal(t)], axis=1)  # [T, 2]
    return waveform, coeffs


def _basis() -> tuple[np.ndarray, np.ndarray]:
    """Neutral face with eyes 1 apart and lips 0.05 apart; coefficient 0 drops the lower lip."""
    neutral = np.zeros((478, 3))
    neutral[33], neutral[263] = (-0.5, 0, 0), (0.5, 0, 0)
    neutral[13], neutral[14] = (0, 1.0, 0), (0, 1.05, 0)
    basis = np.zeros((2, 478, 3))
    basis[0, 14] = (0, 0.3, 0)
    basis[1, 100] = (1, 0, 0)  # a point that is not the mouth
    return neutral, basis


def test_frame_features_are_normalised_and_gain_invariant() -> None:
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(SR * 2).astype(np.float32) * np.repeat(rng.random(20), SR // 10)
    features = frame_features(wave, SR, FPS, 50)
    assert features.shape == (50, 9)
    np.testing.assert_allclose(features.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(features.std(0), 1, atol=1e-6)
    np.testing.assert_allclose(frame_features(0.05 * wave, SR, FPS, 50), features, atol=1e-3)
    with pytest.raises(ValueError, match="mono"):
        frame_features(np.zeros((2, 100)), SR, FPS, 5)


def test_opening_direction_opens_the_mesh_by_one_unit_per_step() -> None:
    """Coefficient 0 drops the lower lip (opening = 0.05 + 0.3 c0); coefficient 1 is unrelated noise."""
    rng = np.random.default_rng(2)
    neutral, basis = _basis()
    coeffs = np.stack([rng.random(300), rng.standard_normal(300)], axis=1)
    opening = opening_curve(coeffs, neutral, basis)
    centre = coeffs.mean(0)
    direction = opening_direction(coeffs, opening, centre, neutral, basis)
    assert direction[0] == pytest.approx(1 / 0.3, rel=0.02) and abs(direction[1]) < 0.5
    step = opening_curve(np.stack([centre, centre + 0.02 * direction]), neutral, basis)
    assert step[1] - step[0] == pytest.approx(0.02, rel=1e-6)
    with pytest.raises(ValueError, match="moving opening"):
        opening_direction(coeffs, np.full(300, 0.05), centre, neutral, basis)


def test_frames_audio_is_the_samples_under_the_frames() -> None:
    wave = np.arange(SR, dtype=np.float32)  # 1 s: frame f spans samples [640 f, 640 (f + 1))
    np.testing.assert_array_equal(frames_audio(wave, SR, FPS, np.arange(2, 5)), wave[1280:3200])
    assert len(frames_audio(wave, 22050, FPS, np.array([3]))) == 882


def test_with_context_matches_a_loop() -> None:
    rng = np.random.default_rng(1)
    features = rng.standard_normal((7, 3))
    offsets = (-2, 0, 3)
    fast = with_context(features, offsets)
    slow = np.array([np.concatenate([features[min(max(t + o, 0), 6)] for o in offsets]) for t in range(7)])
    np.testing.assert_array_equal(fast, slow)


def test_ridge_fit_matches_lstsq_on_the_augmented_system() -> None:
    rng = np.random.default_rng(2)
    x, y, strength = rng.standard_normal((40, 5)) * [1, 2, 3, 4, 5] + 3, rng.standard_normal((40, 2)), 7.0
    mean, scale, w, b = ridge_fit(x, y, strength)
    xs = (x - x.mean(0)) / x.std(0)
    # Slow twin: ridge as least squares on [xs 1; sqrt(strength) I 0] (intercept unpenalised).
    a = np.block([[xs, np.ones((40, 1))], [np.sqrt(strength) * np.eye(5), np.zeros((5, 1))]])
    solution = np.linalg.lstsq(a, np.vstack([y, np.zeros((5, 2))]), rcond=None)[0]
    np.testing.assert_allclose(w, solution[:5], atol=1e-10)
    np.testing.assert_allclose(b, solution[5], atol=1e-10)
    np.testing.assert_allclose(((x - mean) / scale) @ w + b, xs @ solution[:5] + solution[5], atol=1e-10)


def test_blend_hands_closures_to_the_phones() -> None:
    rng = np.random.default_rng(6)
    predicted, phones = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    closure = np.array([0.0, 1.0, 0.5, 0.0])
    mixed = blend_with_phones(predicted, phones, closure, audio_share=0.75)
    np.testing.assert_allclose(mixed[0], 0.75 * predicted[0] + 0.25 * phones[0])
    np.testing.assert_allclose(mixed[1], phones[1])  # full closure: the phone-based (pressed) lips
    np.testing.assert_allclose(mixed[2], 0.375 * predicted[2] + 0.625 * phones[2])
    np.testing.assert_allclose(blend_with_phones(predicted, phones, np.zeros(4), 1.0), predicted)
    with pytest.raises(ValueError, match="closure"):
        blend_with_phones(predicted, phones, closure[:3], 0.5)


def test_viseme_shapes_speak_scales_by_loudness_around_rest() -> None:
    from animation.viseme_shapes import generic_viseme_shapes
    from animation.visemes import SILENCE, VISEME_INDEX

    shapes = generic_viseme_shapes(2)
    shapes.coeffs[:] = 1.0
    shapes.coeffs[VISEME_INDEX[SILENCE]] = 0.0
    weights = np.zeros((3, 15))
    weights[:, VISEME_INDEX["aa"]] = 1.0
    weights[2] = 0.0
    weights[2, VISEME_INDEX[SILENCE]] = 1.0
    coeffs, _ = shapes.speak(weights, np.array([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(coeffs[:, 0], [0.75, 1.25, 0.0])  # quiet, loud, silence stays at rest


def test_fit_finds_the_recording_delay_and_predicts_a_new_clip(tmp_path) -> None:
    waveform, coeffs = _synthetic_clip(seed=3, delay=4)
    neutral, basis = _basis()
    model = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS)
    assert model.facts.recording_delay_frames == 4
    assert model.facts.speech_delay_frames == 1
    assert model.facts.cv_open_r > 0.8, model.facts.cv_table
    new_wave, new_coeffs = _synthetic_clip(seed=4, seconds=6.0, delay=4)
    truth = opening_curve(new_coeffs, neutral, basis)
    replayed = opening_curve(model.predict(new_wave, SR, len(new_coeffs), delay_frames=4), neutral, basis)
    assert np.corrcoef(replayed, truth)[0, 1] > 0.8
    # New speech uses the natural lead, not the recording's offset: the curve comes 3 frames later.
    fresh = opening_curve(model.predict(new_wave, SR, len(new_coeffs)), neutral, basis)
    assert np.corrcoef(fresh[3:], replayed[:-3])[0, 1] > 0.95
    model.save(tmp_path)
    loaded = load_mouth_model(tmp_path, num_coeffs=2, fps=FPS)
    np.testing.assert_allclose(loaded.predict(new_wave, SR, 150, delay_frames=4),
                               model.predict(new_wave, SR, 150, delay_frames=4), atol=1e-4)
    assert load_mouth_model(tmp_path, num_coeffs=3) is None  # another avatar's basis
    assert load_mouth_model(tmp_path, num_coeffs=2, fps=30.0) is None
    assert load_mouth_model(tmp_path / "missing", num_coeffs=2) is None


def test_cross_validation_corrects_a_wrong_loudness_delay(monkeypatch) -> None:
    """The loudness-based estimate only starts the search: told the delay is 2 frames when the mouth leads the
    audio by 4, the fit tries 0..4 and cross-validation picks 4 (a search that ignored the delay would not)."""
    import animation.mouth_model as mouth_model

    waveform, coeffs = _synthetic_clip(seed=7, delay=4)
    neutral, basis = _basis()
    monkeypatch.setattr(mouth_model, "estimate_delay", lambda *args: 2)
    model = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS)
    assert model.facts.measured_delay_frames == 2
    assert model.facts.recording_delay_frames == 4, model.facts.cv_table
    by_delay = {d: max(v for key, v in model.facts.cv_table.items() if key.startswith(f"delay={d},"))
                for d in range(0, 5)}
    # the +-2 frame context still reaches lag 4 from a delay of 2, so the margin there is small but must be there
    assert by_delay[4] == max(by_delay.values()) and by_delay[4] > by_delay[2], by_delay
    assert by_delay[4] > by_delay[0] + 0.2, by_delay
    fixed = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS, options=MouthFitOptions(delay_steps=(0,)))
    assert fixed.facts.recording_delay_frames == 2 and fixed.facts.cv_open_r < model.facts.cv_open_r


def test_keep_components_zeroes_the_trailing_columns() -> None:
    weights = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(keep_components(weights, 2), [[0, 1, 0, 0], [4, 5, 0, 0], [8, 9, 0, 0]])
    np.testing.assert_array_equal(keep_components(weights, 0), weights)  # 0 = all
    np.testing.assert_array_equal(keep_components(weights, 9), weights)
    assert weights[0, 3] == 3.0  # the input is not changed
    with pytest.raises(ValueError, match="components"):
        keep_components(weights, -1)


def test_a_fit_predicting_fewer_components_keeps_the_rest_at_their_mean() -> None:
    """Coefficient 1 is noise that does not move the lips: predicting only coefficient 0 scores as well, so the
    first (smaller) count in the grid is kept, and coefficient 1 then sits at its training mean."""
    waveform, coeffs = _synthetic_clip(seed=8)
    neutral, basis = _basis()
    model = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS,
                            options=MouthFitOptions(components=(1, 0), ensemble=1))
    assert model.facts.components == 1
    assert np.all(model.weights[:, 1] == 0) and np.any(model.weights[:, 0] != 0)
    predicted = model.predict(waveform[: SR * 4], SR, 100, delay_frames=4)
    np.testing.assert_allclose(predicted[:, 1], coeffs[:, 1].mean(), atol=1e-12)
    assert np.corrcoef(predicted[4:96, 0], coeffs[4:96, 0])[0, 1] > 0.8


def test_facts_written_before_the_delay_search_still_load(tmp_path) -> None:
    import json

    waveform, coeffs = _synthetic_clip(seed=9)
    neutral, basis = _basis()
    model = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS, options=MouthFitOptions(components=(0,)))
    model.save(tmp_path)
    facts = json.loads((tmp_path / "mouth_model.json").read_text())
    del facts["measured_delay_frames"], facts["components"], facts["gain"], facts["phone_shift_frames"]
    del facts["render_slope"], facts["render_gain"], facts["opening_gain"], facts["opening_gradient"]
    (tmp_path / "mouth_model.json").write_text(json.dumps(facts))
    loaded = load_mouth_model(tmp_path, num_coeffs=2, fps=FPS)
    assert loaded is not None and loaded.facts.opening_gain == 1.0  # before the opening gain: not widened
    assert loaded is not None and loaded.facts.components == 0 and loaded.facts.gain == 1.0
    assert loaded.facts.render_gain == 1.0 and loaded.facts.render_slope is None  # not calibrated to an avatar
    # before the phone shift was measured, the phone track moved with the recording's audio delay
    assert loaded.facts.phone_shift_frames is None and loaded.facts.phone_shift(None) == 0
    assert loaded.facts.phone_shift(loaded.facts.recording_delay_frames) == loaded.facts.recording_delay_frames - 1
    np.testing.assert_allclose(loaded.predict(waveform, SR, 50), model.predict(waveform, SR, 50), atol=1e-4)
    facts["opening_gradient"] = [0.3]  # one number for two coefficients: refused on loading
    (tmp_path / "mouth_model.json").write_text(json.dumps(facts))
    with pytest.raises(ValueError, match="opening_gradient"):
        MouthModel.load(tmp_path)


def test_amplitude_gain_is_the_calibration_slope() -> None:
    """Driven curves that move half (a quarter) as much as the real ones get gain 2 (capped at max_gain); one that
    over-shoots is left at 1. Each block counts on its own, so a per-block offset changes nothing; noise in the
    driven curve lowers the slope (regression to the mean), unlike a ratio of standard deviations."""
    neutral, basis = _basis()
    rng = np.random.default_rng(11)
    real_coeffs = [np.stack([0.5 + 0.2 * rng.standard_normal(60), np.zeros(60)], 1) for _ in range(3)]
    real = [opening_curve(c, neutral, basis) for c in real_coeffs]
    half = [np.stack([0.5 + 0.3 * i + 0.5 * (c[:, 0] - 0.5), c[:, 1]], 1) for i, c in enumerate(real_coeffs)]
    assert amplitude_gain(half, real, neutral, basis, max_gain=3.0) == pytest.approx(2.0, rel=1e-6)
    quarter = [np.stack([0.5 + 0.25 * (c[:, 0] - 0.5), c[:, 1]], 1) for c in real_coeffs]
    assert amplitude_gain(quarter, real, neutral, basis, max_gain=3.0) == pytest.approx(3.0)
    wide = [np.stack([0.5 + 1.5 * (c[:, 0] - 0.5), c[:, 1]], 1) for c in real_coeffs]
    assert amplitude_gain(wide, real, neutral, basis, max_gain=3.0) == 1.0
    still = [np.full((60, 2), 0.5) for _ in real_coeffs]
    assert amplitude_gain(still, real, neutral, basis, max_gain=3.0) == 1.0
    # half the motion plus as much noise again: slope 0.5 * 0.2^2 / (0.1^2 + 0.05^2) = 1.6, spread ratio 1.79
    long_real = [np.stack([0.5 + 0.2 * rng.standard_normal(400), np.zeros(400)], 1) for _ in range(3)]
    noisy = [np.stack([0.5 + 0.5 * (c[:, 0] - 0.5) + 0.05 * rng.standard_normal(400), c[:, 1]], 1) for c in long_real]
    real = [opening_curve(c, neutral, basis) for c in long_real]
    gain = amplitude_gain(noisy, real, neutral, basis, max_gain=3.0)
    driven = [opening_curve(c, neutral, basis) for c in noisy]
    spread = np.mean([r.std() / d.std() for r, d in zip(real, driven)])
    assert 1.45 < gain < 1.75 and spread > gain + 0.1, (gain, spread)


def test_amplify_scales_the_motion_around_the_training_mean_within_its_range() -> None:
    waveform, coeffs = _synthetic_clip(seed=12)
    neutral, basis = _basis()
    model = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS)
    assert model.facts.gain >= 1.0 and model.facts.opening_gain >= 1.0
    model.facts.opening_gain = 1.0  # the opening's own gain has its own test
    mean = model.intercept
    inside = mean + 0.1 * (model.coeff_max - mean) * np.array([[1.0, -1.0], [-0.5, 0.5]])
    model.facts.gain = 1.0
    np.testing.assert_allclose(model.amplify(inside), inside)
    model.facts.gain = 2.5
    np.testing.assert_allclose(model.amplify(inside), mean + 2.5 * (inside - mean))
    far = mean + 0.9 * (model.coeff_max - mean)
    np.testing.assert_allclose(model.amplify(far[None]), model.coeff_max[None])  # clamped to the training range
    partly = model.amplify(inside, strength=np.array([0.0, 0.5]))  # frame 0 untouched, frame 1 at gain 1.75
    np.testing.assert_allclose(partly, [inside[0], mean + 1.75 * (inside[1] - mean)])
    model.facts.gain, model.facts.render_gain = 1.25, 1.6  # the avatar's render gain multiplies the model's
    np.testing.assert_allclose(model.amplify(inside), mean + 2.0 * (inside - mean))
    model.facts.render_gain = 1.0
    with pytest.raises(ValueError, match="strength"):
        model.amplify(inside, strength=np.ones(3))
    with pytest.raises(ValueError, match="coeffs must be"):
        model.amplify(inside[:, :1])


def test_opening_gradient_is_the_openings_slope_per_coefficient() -> None:
    """Coefficient 0 drops the lower lip by 0.3 per unit (eyes 1 apart): d opening / d c0 = 0.3; coefficient 1
    moves a point off the mouth: 0. Checked against a written-out difference at random faces of a random rig."""
    neutral, basis = _basis()
    np.testing.assert_allclose(opening_gradient(np.array([0.2, -1.0]), neutral, basis), [0.3, 0.0], atol=1e-8)
    rng = np.random.default_rng(21)
    neutral = rng.normal(size=(478, 3))
    basis = 0.1 * rng.normal(size=(5, 478, 3))
    for _ in range(3):
        centre, move = rng.normal(size=5), 1e-5 * rng.normal(size=5)
        change = np.diff(opening_curve(np.stack([centre, centre + move]), neutral, basis))[0]
        assert opening_gradient(centre, neutral, basis) @ move == pytest.approx(change, rel=1e-4)
    with pytest.raises(ValueError, match="centre"):
        opening_gradient(np.zeros((1, 5)), neutral, basis)


def test_the_opening_gain_widens_the_opening_alone() -> None:
    """With opening gain g, a face whose opening is d above the training mean's opens by about g x d, moved along
    the opening direction only (coefficient 1, off the mouth, keeps its value); strength 0 frames stay as they are;
    the fitted gain is 1 / sqrt(cross-validated r), capped."""
    waveform, coeffs = _synthetic_clip(seed=12)
    neutral, basis = _basis()
    model = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS)
    assert model.facts.opening_gain == pytest.approx(opening_gain(model.facts.cv_open_r, 1.5), abs=1e-4)
    assert opening_gain(0.64, 3.0) == pytest.approx(1.25)  # 1 / sqrt(r)
    assert opening_gain(0.25, 1.5) == 1.5 and opening_gain(-0.2, 1.5) == 1.5  # capped
    assert opening_gain(1.0, 1.5) == 1.0  # a perfect model is not widened
    mean = model.intercept
    model.facts.gain, model.facts.render_offset, model.facts.opening_gain = 1.0, 0.0, 1.4
    model.facts.opening_direction = [1 / 0.3, 0.0]  # one unit of opening per 1 / 0.3 of coefficient 0
    faces = mean + np.array([[0.05, 0.3], [-0.04, -0.2], [0.02, 0.0]])
    widened = model.amplify(faces, strength=np.array([1.0, 1.0, 0.0]))
    before, after = (opening_curve(c, neutral, basis) - opening_curve(mean[None], neutral, basis) for c in
                     (faces, widened))
    np.testing.assert_allclose(after[:2], 1.4 * before[:2], rtol=1e-6)
    np.testing.assert_allclose(widened[:, 1], faces[:, 1])
    np.testing.assert_allclose(widened[2], faces[2])
    old = MouthFitOptions(widen_opening=False)
    assert fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS, options=old).facts.opening_gain == 1.0
    with pytest.raises(ValueError, match="max_opening_gain"):
        MouthFitOptions(max_opening_gain=0.5)


def test_the_fitted_gain_brings_a_shrunk_prediction_up_to_the_real_spread() -> None:
    """Strong ridge shrinkage (one lambda of 1e5) makes the raw prediction move far less than the mouth; the
    calibration slope from cross-validation restores most of the real spread on a new clip (this signal is
    predictable, r ~ 0.9) and lowers its squared error."""
    waveform, coeffs = _synthetic_clip(seed=13)
    neutral, basis = _basis()
    # phone posteriors off: on noise bursts they are noise columns, and this is about the gain
    options = MouthFitOptions(lambdas=(1e5,), components=(0,), max_gain=50.0, phone_posteriors=False)
    model = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS, options=options)
    new_wave, new_coeffs = _synthetic_clip(seed=14, seconds=8.0)
    truth = opening_curve(new_coeffs, neutral, basis)
    raw = opening_curve(model.predict(new_wave, SR, len(new_coeffs), delay_frames=4), neutral, basis)
    amplified = opening_curve(model.amplify(model.predict(new_wave, SR, len(new_coeffs), delay_frames=4)), neutral,
                              basis)
    assert raw.std() < 0.3 * truth.std()
    assert model.facts.gain > 3.0
    assert 0.7 < amplified.std() / truth.std() < 1.4
    assert np.mean((amplified - truth) ** 2) < 0.7 * np.mean((raw - truth) ** 2)
    off = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS,
                          options=MouthFitOptions(lambdas=(1e5,), components=(0,), match_amplitude=False))
    assert off.facts.gain == 1.0


def test_fit_refuses_too_little_data_and_bad_shapes() -> None:
    neutral, basis = _basis()
    waveform, coeffs = _synthetic_clip(seed=5, seconds=2.0)
    with pytest.raises(ValueError, match="too few"):
        fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS)
    waveform, coeffs = _synthetic_clip(seed=5, seconds=10.0)  # enough for the folds, under min_training_s
    with pytest.raises(ValueError, match="need 12 s"):
        fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS)
    waveform, coeffs = _synthetic_clip(seed=5)
    with pytest.raises(ValueError, match="basis size"):
        fit_mouth_model(coeffs[:, :1], neutral, basis, waveform, SR, FPS)
    model = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS)
    with pytest.raises(ValueError, match="weights"):
        MouthModel(model.facts, model.feature_mean, model.feature_scale, model.weights[:-1], model.intercept,
                   model.coeff_min, model.coeff_max)
    if model.uses_visemes:  # only when given viseme weights
        pytest.fail("no viseme weights were given, so the model cannot use them")
    with pytest.raises(ValueError, match="viseme_weights"):
        facts = type(model.facts)(**{**model.facts.__dict__, "viseme_offsets": [0]})
        design_matrix(waveform, SR, FPS, 10, None, facts, 0)


def test_a_model_from_a_real_video_reads_a_piper_sentence(shared_data, tmp_path) -> None:
    """Fitted on Obama's 20 s video, driven by the Piper voice (another speaker, synthetic pauses): the mouth opens
    on vowels more than in pauses and on p/b/m (where the phone timing closes it)."""
    from animation.motion import MotionOptions, motion_from_speech
    from animation.mouth_model import load_mouth_model
    from animation.viseme_shapes import learn_shapes_from_clip
    from animation.visemes import viseme_class_of
    from audio.tts import PiperEngine
    from avatar.preprocess import preprocess_video
    from tests.talking_fixtures import tiny_avatar

    clip = preprocess_video(shared_data / "video" / "obama_weekly_address_20s.mp4", show_bar=False)
    shapes = learn_shapes_from_clip(clip, tmp_path)
    mouth = load_mouth_model(tmp_path, clip.coeffs.shape[1], clip.fps)
    assert shapes is not None and mouth is not None
    speech = PiperEngine().synthesize("Maybe we should meet at the park. Then, papa bought a big apple.")
    avatar = tiny_avatar(k=clip.coeffs.shape[1])
    options = MotionOptions(fps=clip.fps, still=True, blinks_per_minute=0)
    motion = motion_from_speech(speech, avatar, options, shapes, mouth=mouth)
    assert motion.meta["mouth"] == "audio model"
    opening = opening_curve(motion.coeffs, clip.neutral, clip.basis)
    classes = []
    for frame in range(motion.num_frames):
        time_s = (frame + 0.5) / clip.fps
        phone = next((p for p in speech.phones if p.start_s <= time_s < p.end_s), None)
        classes.append(viseme_class_of(phone.label, speech.phone_set) if phone else "sil")
    classes = np.array(classes)
    vowels = opening[np.isin(classes, ["aa", "E", "ih", "oh", "ou"])].mean()
    assert vowels > opening[classes == "sil"].mean() + 0.01
    assert vowels > opening[classes == "PP"].mean() + 0.01
    from animation.mouth_plot import plot_mouth_opening

    png = plot_mouth_opening(speech, clip.fps, {"audio model": opening}, tmp_path / "opening.png", "test")
    assert png.stat().st_size > 10_000


def test_windows_bench_learning_curve_keeps_the_valid_frames_nearest_the_window() -> None:
    from bench.lipsync_windows import nearest_frames

    valid = np.ones(20, bool)
    valid[[8, 9, 10, 11, 3]] = False  # the window is 8-11; frame 3 was not tracked
    kept = nearest_frames(valid, np.arange(8, 12), 6)
    np.testing.assert_array_equal(np.flatnonzero(kept), [5, 6, 7, 12, 13, 14])
    assert nearest_frames(valid, np.arange(8, 12), 100).sum() == valid.sum()


def test_windows_bench_parses_fit_options_by_field_type() -> None:
    """bench.lipsync_windows --option NAME=VALUE: tuples from comma lists, bools, numbers; unknown names refused."""
    from bench.lipsync_windows import parse_options

    options = parse_options(["num_bands=16", "lambdas=1,10", "match_amplitude=false", "max_gain=2.5",
                             "components=0"])
    assert options.num_bands == 16 and options.lambdas == (1.0, 10.0) and options.components == (0,)
    assert options.match_amplitude is False and options.max_gain == 2.5
    assert parse_options([]) == MouthFitOptions()
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        parse_options(["no_such_option=1"])
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        parse_options(["num_bands"])


def test_merged_members_predict_their_share_weighted_mix() -> None:
    """merge_members vs the slow way: three linear models with different delays, offsets, viseme features and
    shares; the merged model's prediction (at the reference delay and at the speech delay) equals the
    share-weighted average of the members' predictions, and its mix with a phone mouth equals the average of
    the members' own mixes."""
    rng = np.random.default_rng(21)
    waveform = rng.standard_normal(SR * 3).astype(np.float32) * np.repeat(rng.random(30), SR // 10)
    n, k = 75, 3
    visemes = rng.random((n, 15))
    audio = frame_features(waveform, SR, FPS, n, 8)
    specs = [(4, (-2, 0, 2), (), 0.5), (6, (-1, 0, 1), (-2, 0), 0.75), (3, (0,), (0,), 0.25)]
    members, models = [], []
    for delay, offsets, viseme_offsets, share in specs:
        facts = MouthModelFacts(FPS, k, 8, list(offsets), list(viseme_offsets), 10.0, share, delay, 1, 100, 0.5)
        x = design_matrix(waveform, SR, FPS, n, visemes, facts, delay, audio)
        mean, scale, w, b = ridge_fit(x, rng.standard_normal((n, k)), 10.0)
        members.append((facts, mean, scale, w, b))
        models.append(MouthModel(facts, mean, scale, w, b, np.full(k, -1e9), np.full(k, 1e9)))
    facts, mean, scale, w, b = merge_members(members, reference_delay=4)
    merged = MouthModel(facts, mean, scale, w, b, np.full(k, -1e9), np.full(k, 1e9))
    assert facts.recording_delay_frames == 4 and facts.members == 3 and facts.audio_share == pytest.approx(0.5)
    assert facts.offsets == [-2, -1, 0, 1, 2, 3] and facts.viseme_offsets == [-1, 0, 2]
    shares = np.array([spec[3] for spec in specs])
    for replay in (True, False):  # the recording's own delay, and new speech (members keep their relative lags)
        expected = sum(a * m.predict(waveform, SR, n, visemes, m.facts.recording_delay_frames - 4 + 4 if replay
                                     else m.facts.recording_delay_frames - 4 + 1) for a, m in zip(shares, models))
        got = merged.predict(waveform, SR, n, visemes, 4 if replay else None)
        np.testing.assert_allclose(got, expected / shares.sum(), atol=1e-9)
    phone = rng.standard_normal((n, k))
    closure = rng.random(n)
    predictions = [m.predict(waveform, SR, n, visemes, m.facts.recording_delay_frames) for m in models]
    average_mix = np.mean([blend_with_phones(p, phone, closure, a) for p, a in zip(predictions, shares)], axis=0)
    np.testing.assert_allclose(blend_with_phones(merged.predict(waveform, SR, n, visemes, 4), phone, closure,
                                                 facts.audio_share), average_mix, atol=1e-9)


def test_phone_shift_is_the_phone_tracks_own_lag_over_the_natural_lead() -> None:
    """Open vowels between silences, the mouth opening 5 frames before each vowel's sound: the measured shift is
    5 - the natural lead (1), whatever the audio features' delay; frames outside `valid` are not used."""
    from animation.coarticulation import viseme_weights
    from audio.speech import Segment

    rng = np.random.default_rng(5)
    phones, t = [], 0.0
    for _ in range(40):
        gap, vowel = rng.uniform(0.15, 0.5), rng.uniform(0.12, 0.4)
        phones += [Segment("sil", t, t + gap), Segment("AA", t + gap, t + gap + vowel)]
        t += gap + vowel
    n = int(t * FPS)
    weights = viseme_weights(phones, "arpabet", FPS, n)
    jaw = 1.0 - weights[:, 0]  # column 0 is silence: how much of a vowel each frame holds
    opening = np.concatenate([jaw[5:], np.zeros(5)]) + 0.02 * rng.standard_normal(n)  # opening[t] = jaw[t + 5]
    valid = np.ones(n, bool)
    assert measure_phone_shift(weights, opening, valid, -3, 10, speech_delay=1) == 4
    scrambled = opening.copy()
    scrambled[: n // 2] = rng.permutation(scrambled[: n // 2])  # noise where the frames are not valid
    valid[: n // 2] = False
    assert measure_phone_shift(weights, scrambled, valid, -3, 10, speech_delay=1) == 4
    with pytest.raises(ValueError, match="weights"):
        measure_phone_shift(weights[:, :5], opening, valid, -3, 10, 1)


def test_members_with_a_measured_phone_shift_merge_exactly() -> None:
    """Members whose viseme features ride the measured phone track (not their audio delay): the merged model's
    viseme columns sit at the phone track's position, and its prediction at the recording's delay and for new
    speech equals the share-weighted average of the members' own."""
    rng = np.random.default_rng(22)
    waveform = rng.standard_normal(SR * 3).astype(np.float32) * np.repeat(rng.random(30), SR // 10)
    n, k = 75, 3
    visemes = rng.random((n, 15))
    specs = [(7, (-1, 0, 1), (-2, 0), 0.5), (5, (0, 2), (0, 2), 0.75)]
    members, models = [], []
    for delay, offsets, viseme_offsets, share in specs:
        facts = MouthModelFacts(FPS, k, 8, list(offsets), list(viseme_offsets), 10.0, share, delay, 1, 100, 0.5,
                                phone_shift_frames=4)
        x = design_matrix(waveform, SR, FPS, n, visemes, facts, delay, viseme_delay_frames=1 + 4)
        mean, scale, w, b = ridge_fit(x, rng.standard_normal((n, k)), 10.0)
        members.append((facts, mean, scale, w, b))
        models.append(MouthModel(facts, mean, scale, w, b, np.full(k, -1e9), np.full(k, 1e9)))
    facts, mean, scale, w, b = merge_members(members, reference_delay=7)
    merged = MouthModel(facts, mean, scale, w, b, np.full(k, -1e9), np.full(k, 1e9))
    assert facts.phone_shift_frames == 4 and facts.viseme_offsets == [-2, 0, 2] and facts.offsets == [-2, -1, 0, 1]
    assert facts.phone_shift(7) == 4 and facts.phone_shift(None) == 0
    shares = np.array([spec[3] for spec in specs])
    replayed = sum(a * m.predict(waveform, SR, n, visemes, m.facts.recording_delay_frames)
                   for a, m in zip(shares, models))
    np.testing.assert_allclose(merged.predict(waveform, SR, n, visemes, 7), replayed / shares.sum(), atol=1e-9)
    # New speech: each member's audio keeps its lag behind the reference delay, on top of the natural lead (1);
    # the phone track is not moved, so every member's visemes sit at the natural lead.
    fresh = sum(a * (((design_matrix(waveform, SR, FPS, n, visemes, m.facts, m.facts.recording_delay_frames - 7 + 1,
                                     viseme_delay_frames=1) - m.feature_mean) / m.feature_scale) @ m.weights
                     + m.intercept) for a, m in zip(shares, models))
    np.testing.assert_allclose(merged.predict(waveform, SR, n, visemes, None), fresh / shares.sum(), atol=1e-9)


def test_an_ensemble_of_one_is_the_best_configuration() -> None:
    waveform, coeffs = _synthetic_clip(seed=22)
    neutral, basis = _basis()
    single = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS, options=MouthFitOptions(ensemble=1))
    best_key = max(single.facts.cv_table, key=single.facts.cv_table.get)
    assert single.facts.members == 1 and single.facts.cv_open_r == single.facts.cv_table[best_key]
    assert single.facts.offsets == [-2, -1, 0, 1, 2]
    many = fit_mouth_model(coeffs, neutral, basis, waveform, SR, FPS, options=MouthFitOptions(ensemble=10))
    assert many.facts.members == 10 and len(many.facts.offsets) >= 5
    new_wave, new_coeffs = _synthetic_clip(seed=23, seconds=6.0)
    truth = opening_curve(new_coeffs, neutral, basis)
    driven = opening_curve(many.predict(new_wave, SR, len(new_coeffs), delay_frames=4), neutral, basis)
    assert np.corrcoef(driven, truth)[0, 1] > 0.8
    with pytest.raises(ValueError, match="ensemble"):
        MouthFitOptions(ensemble=0)
