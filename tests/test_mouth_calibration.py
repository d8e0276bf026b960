"""The driven mouth's gain for how wide an avatar draws an open mouth (`animation.mouth_calibration`)."""
from __future__ import annotations

import numpy as np
import pytest

from types import SimpleNamespace

import animation.mouth_calibration as calibration
from animation.mouth_calibration import (calibrate_saved_mouth, calibration_frames, response_gain, response_offset,
                                         response_slope)
from animation.mouth_model import MouthModel, MouthModelFacts, load_mouth_model
from animation.mouth_opening import opening_curve
from tests.talking_fixtures import tiny_avatar


def test_response_slope_is_the_least_squares_slope_over_tracked_frames() -> None:
    rng = np.random.default_rng(5)
    mesh = 0.05 + 0.03 * rng.standard_normal(200)
    rendered = 0.8 * mesh - 0.01 + 0.004 * rng.standard_normal(200)
    rendered[[3, 50, 51]] = np.nan  # frames the tracker lost
    ok = np.isfinite(rendered)
    expected = np.polyfit(mesh[ok], rendered[ok], 1)[0]
    assert response_slope(mesh, rendered) == pytest.approx(expected, rel=1e-9)
    assert 0.75 < expected < 0.85
    with pytest.raises(ValueError, match="tracked"):
        response_slope(mesh[:12], np.r_[rendered[:5], np.full(7, np.nan)])
    with pytest.raises(ValueError, match="barely moves"):
        response_slope(np.full(50, 0.05), rendered[:50])
    with pytest.raises(ValueError, match="one length"):
        response_slope(mesh, rendered[:-1])


def test_response_gain_makes_up_for_a_narrow_mouth_and_never_shrinks() -> None:
    assert response_gain(0.8) == pytest.approx(1.25)
    assert response_gain(1.07) == 1.0  # drawn full size (the Obama avatar): left alone
    assert response_gain(0.3, max_gain=2.0) == 2.0
    assert response_gain(-0.1, max_gain=1.5) == 1.5  # a render whose mouth does not follow the mesh at all
    with pytest.raises(ValueError, match="max_gain"):
        response_gain(0.8, max_gain=0.9)


def test_calibration_frames_are_the_longest_valid_run_before_the_tail() -> None:
    valid = np.ones(100, bool)
    valid[[10, 40]] = False  # runs 0-9, 11-39, 41-99
    np.testing.assert_array_equal(calibration_frames(valid), np.arange(41, 100))
    np.testing.assert_array_equal(calibration_frames(valid, stop=60), np.arange(11, 40))  # the tail is never used
    np.testing.assert_array_equal(calibration_frames(valid, max_frames=20), np.arange(41, 61))
    assert len(calibration_frames(np.zeros(30, bool))) == 0


def _saved_model(folder, k: int) -> MouthModel:
    facts = MouthModelFacts(fps=25.0, num_coeffs=k, num_bands=1, offsets=[0], viseme_offsets=[], ridge_lambda=1.0,
                            audio_share=1.0, recording_delay_frames=0, speech_delay_frames=1, training_frames=100,
                            cv_open_r=0.5, gain=1.2)
    model = MouthModel(facts, np.zeros(2), np.ones(2), np.full((2, k), 0.1), np.zeros(k), -np.ones(k), np.ones(k))
    model.save(folder)
    return model


def test_a_saved_model_is_calibrated_on_the_avatars_own_training_frames(tmp_path, monkeypatch) -> None:
    """Rendered on its training track, the avatar's re-tracked mouth opens 0.8 as wide as its mesh (a stand-in
    tracker): the saved model gets render gain 1.25, measured on the frames before the tail only."""
    import animation.lipsync_metrics as metrics

    avatar = tiny_avatar(t=60)
    valid = np.ones(60, bool)
    valid[5] = False
    stop = 45  # frames 45.. are a held-out tail
    frames = calibration_frames(valid, stop)
    np.testing.assert_array_equal(frames, np.arange(6, 45))
    mesh = opening_curve(avatar.expression_coeffs[frames].double().numpy(), avatar.neutral.double().numpy(),
                         avatar.expression_basis.double().numpy())
    seen = {}

    def stand_in_tracker(images):
        seen["shapes"] = [np.asarray(image).shape for image in images]
        landmarks = np.zeros((len(images), 478, 3))
        landmarks[:, 263, 0] = 100.0  # eye corners 100 px apart
        landmarks[:, 14, 1] = 100.0 * (0.8 * mesh - 0.005)  # lip gap
        landmarks[2] = np.nan  # one frame not tracked
        return landmarks

    monkeypatch.setattr(metrics, "track_landmarks", stand_in_tracker)
    clip = SimpleNamespace(valid=valid, audio=np.zeros(0, np.float32), audio_sample_rate=16000)  # no audio: no offset
    assert calibrate_saved_mouth(avatar, tmp_path, clip, None, stop) is None  # no mouth model saved there yet
    _saved_model(tmp_path, avatar.num_expressions)
    gain = calibrate_saved_mouth(avatar, tmp_path, clip, None, stop)
    assert seen["shapes"] == [(64, 64, 3)] * len(frames)  # each calibration frame rendered at the avatar's size
    assert gain == pytest.approx(1.25, rel=1e-3)
    loaded = load_mouth_model(tmp_path, avatar.num_expressions, avatar.fps)
    assert loaded.facts.render_gain == pytest.approx(1.25, rel=1e-3)
    assert loaded.facts.render_slope == pytest.approx(0.8, abs=1e-4)
    inside = np.full((1, avatar.num_expressions), 0.1)  # intercept 0: the motion is scaled by 1.2 x 1.25
    np.testing.assert_allclose(loaded.amplify(inside), 1.5 * inside, rtol=1e-3)


def test_response_offset_is_the_rendered_shortfall_over_the_slope() -> None:
    assert response_offset(0.08, 0.07, 0.8) == pytest.approx(0.0125)
    assert response_offset(0.07, 0.08, 1.0) == 0.0  # a driven mouth drawn wider is not narrowed
    assert response_offset(0.2, 0.0, 1.0, max_offset=0.05) == 0.05
    assert response_offset(0.08, float("nan"), 1.0) == 0.0


def test_the_driven_mouth_is_widened_by_what_its_render_falls_short(tmp_path, monkeypatch) -> None:
    """The tracked training track renders with a lip gap of 0.8 x the mesh's; the same frames driven by their audio
    render 0.01 narrower on average: the model is widened by 0.01 / 0.8 along its opening direction."""
    import animation.lipsync_metrics as metrics

    avatar = tiny_avatar(t=40)
    k = avatar.num_expressions
    frames = np.arange(40)
    mesh = opening_curve(avatar.expression_coeffs.double().numpy(), avatar.neutral.double().numpy(),
                         avatar.expression_basis.double().numpy())
    calls = []

    def stand_in_tracker(images):
        calls.append(len(images))
        landmarks = np.zeros((len(images), 478, 3))
        landmarks[:, 263, 0] = 100.0
        landmarks[:, 14, 1] = 100.0 * (0.8 * mesh - (0.01 if len(calls) == 2 else 0.0))
        return landmarks

    monkeypatch.setattr(metrics, "track_landmarks", stand_in_tracker)
    monkeypatch.setattr(calibration, "driven_motion", lambda avatar, audio, rate, frames, shapes, model:
                        calibration.tracked_motion(avatar, frames))
    model = _saved_model(tmp_path, k)
    direction = np.linspace(-1.0, 1.0, k)
    model.facts.opening_direction = direction.tolist()
    calibration.calibrate_mouth_model(model, avatar, frames, np.zeros(16000), 16000, None)
    assert calls == [40, 40]  # the tracked and the driven renders
    assert model.facts.render_offset == pytest.approx(0.0125, abs=1e-4)
    still = np.zeros((3, k))  # at the intercept: only the offset moves it
    strength = np.array([1.0, 0.5, 0.0])
    np.testing.assert_allclose(model.amplify(still, strength), strength[:, None] * 0.0125 * direction[None],
                               atol=1e-5)
    closure = np.array([1.0, 0.0, 0.5])  # a p/b/m closure is not widened
    np.testing.assert_allclose(model.amplify(still, None, closure), np.array([0.0, 1.0, 0.5])[:, None] * 0.0125
                               * direction[None], atol=1e-5)
    calls.clear()
    calibration.calibrate_mouth_model(model, avatar, frames)  # without the audio: gain only, no offset
    assert calls == [40] and model.facts.render_offset == 0.0
