"""Rig fitting: Procrustes, projection, ray snapping, PCA, recovery of known poses from synthetic landmarks,
and the fit on a real clip (reprojection error, expression reconstruction)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from avatar import rig, tracking, video
from avatar.rig import Intrinsics, RigConfig


def random_rotation(rng, degrees: float) -> np.ndarray:
    return Rotation.from_rotvec(rng.normal(size=3) * np.radians(degrees)).as_matrix()


def test_similarity_procrustes_recovers_transform():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(40, 3))
    rotation, scale, shift = random_rotation(rng, 40), 2.5, rng.normal(size=3)
    target = scale * source @ rotation.T + shift
    found_scale, found_rotation, found_shift = rig.similarity_procrustes(source, target)
    assert found_scale == pytest.approx(scale, rel=1e-9)
    np.testing.assert_allclose(found_rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(found_shift, shift, atol=1e-9)
    with pytest.raises(ValueError):
        rig.similarity_procrustes(source[:2], target[:2])


def test_projection_matches_opencv():
    import cv2

    rng = np.random.default_rng(2)
    intrinsics = Intrinsics.from_fov(640, 480, 40.0)
    points = rng.normal(size=(1, 50, 3)) * 0.1
    rotation = random_rotation(rng, 20)[None]
    translation = np.array([[0.02, -0.01, 0.6]])
    ours = rig.project(rig.pose_points(points, rotation, translation), intrinsics)[0]
    theirs = cv2.projectPoints(points[0], cv2.Rodrigues(rotation[0])[0], translation[0], intrinsics.matrix(), None)[0]
    np.testing.assert_allclose(ours, theirs[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="behind the camera"):
        rig.project(np.array([[0.0, 0.0, -1.0]]), intrinsics)


def test_cropped_intrinsics_agree_with_cropping_pixels():
    intrinsics = Intrinsics.from_fov(700, 700, 35.0)
    point = np.array([[0.03, -0.02, 0.5]])
    full = rig.project(point, intrinsics)[0]
    crop = intrinsics.cropped(x0=112, y0=40, size=551, resolution=512)
    np.testing.assert_allclose(rig.project(point, crop)[0], (full - [112, 40]) * 512 / 551, atol=1e-9)


def test_expression_basis_reconstructs_residuals():
    rng = np.random.default_rng(4)
    modes = rng.normal(size=(5, 478 * 3))
    residuals = (rng.normal(size=(60, 5)) @ modes).reshape(60, 478, 3)
    valid = np.ones(60, bool)
    basis, coeffs, explained = rig.expression_basis(residuals, valid, num_components=8)
    assert basis.shape == (8, 478, 3) and coeffs.shape == (60, 8)
    flat = basis.reshape(8, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(8), atol=1e-9)
    np.testing.assert_allclose(np.einsum("tk,kvc->tvc", coeffs, basis), residuals, atol=1e-9)
    assert explained[:5].sum() == pytest.approx(1.0) and (np.diff(explained) <= 1e-12).all()
    truncated, coeffs3, _ = rig.expression_basis(residuals, valid, num_components=3)
    error = np.einsum("tk,kvc->tvc", coeffs3, truncated) - residuals
    assert 0 < (error**2).sum() < (residuals**2).sum()
    empty_basis, empty_coeffs, _ = rig.expression_basis(residuals[:1], valid[:1], num_components=8)
    assert empty_basis.shape == (0, 478, 3) and empty_coeffs.shape == (1, 0)


@pytest.fixture(scope="module")
def real_neutral() -> np.ndarray:
    """A head-frame neutral from a real face (the astronaut photo), canonicalised."""
    import skimage.data

    track = tracking.track_frames([skimage.data.astronaut()], static=True)
    return rig.canonicalise(track.landmarks[0].astype(np.float64))


def test_canonical_frame_conventions(real_neutral):
    right, left = rig._eye_centres(real_neutral)
    assert np.linalg.norm(left - right) == pytest.approx(rig.INTEROCULAR_M)
    assert left[0] > right[0] and abs(left[1] - right[1]) < 1e-9  # +x towards the subject's left
    assert real_neutral[rig.CHIN, 1] > real_neutral[rig.FOREHEAD_TOP, 1]  # +y down
    assert real_neutral[1, 2] < real_neutral[234, 2]  # nose tip nearer the camera (-z) than the cheek edge
    np.testing.assert_allclose(real_neutral[:468].mean(0), 0, atol=1e-12)
    assert 0.12 < np.ptp(real_neutral[:, 0]) < 0.2  # a head-sized face, in metres


def test_fit_rig_recovers_known_poses(real_neutral):
    """Synthetic frames: a known neutral moved along a smooth pose track; landmarks as MediaPipe would give them
    (pixels, weak-perspective depth). The fit must recover poses and reproject to the pixels."""
    frames, fps = 75, 25.0
    intrinsics = Intrinsics.from_fov(512, 512, 35.0)
    times = np.arange(frames) / fps
    rvecs = np.stack([0.15 * np.sin(2 * np.pi * 0.5 * times), 0.1 * np.sin(2 * np.pi * 0.3 * times + 1),
                      0.05 * np.cos(2 * np.pi * 0.4 * times)], 1)
    translation = np.stack([0.02 * np.sin(times), -0.01 * np.cos(times), 0.55 + 0.03 * np.sin(0.7 * times)], 1)
    rotation = Rotation.from_rotvec(rvecs).as_matrix()
    camera = rig.pose_points(np.repeat(real_neutral[None], frames, 0), rotation, translation)
    pixels = rig.project(camera, intrinsics)
    depth_px = (camera[..., 2] - camera[..., 2].mean(1, keepdims=True)) * intrinsics.fx / camera[..., 2].mean(1)[:, None]
    landmarks = np.concatenate([pixels, depth_px[..., None]], -1)
    fitted = rig.fit_rig(landmarks, np.ones(frames, bool), 512, 512, fps, RigConfig(fov_deg=35.0))
    angle_error = Rotation.from_matrix(fitted.rotation @ rotation.transpose(0, 2, 1)).magnitude()
    assert np.degrees(angle_error).max() < 0.5
    np.testing.assert_allclose(fitted.translation[:, :2], translation[:, :2], atol=0.001)  # metres
    np.testing.assert_allclose(fitted.translation[:, 2], translation[:, 2], rtol=0.03)  # depth via scale
    np.testing.assert_allclose(fitted.neutral, real_neutral, atol=0.003)  # metres; lifting keeps a small bias
    error = rig.reprojection_error_px(fitted, pixels)
    assert np.median(error) < 0.2 and error.max() < 1.0
    assert fitted.basis.shape[0] > 0 and fitted.explained_variance.sum() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def obama_rig(shared_data):
    path = shared_data / "video" / "obama_weekly_address_20s.mp4"
    track = tracking.track_frames(video.iter_video_frames(path, 25.0, max_seconds=3.0))
    checked = tracking.check_track(track)
    return rig.fit_rig(checked.landmarks, checked.valid, track.width, track.height, 25.0), checked


def test_real_clip_reprojection_and_expression(obama_rig):
    fitted, checked = obama_rig
    frames = checked.landmarks.shape[0]
    assert fitted.rotation.shape == (frames, 3, 3) and fitted.basis.shape == (24, 478, 3)
    np.testing.assert_allclose(np.linalg.det(fitted.rotation), 1.0, atol=1e-9)
    error = rig.reprojection_error_px(fitted, checked.landmarks[..., :2])
    assert np.median(error) < 1.0 and np.percentile(error, 95) < 3.0  # pixels in a 450x450 frame
    assert 0.3 < np.median(fitted.translation[:, 2]) < 1.5  # head-sized object at a plausible distance
    residuals = fitted.head_landmarks - fitted.neutral[None]
    rebuilt = np.einsum("tk,kvc->tvc", fitted.coeffs, fitted.basis)
    relative = np.linalg.norm(rebuilt - residuals) / np.linalg.norm(residuals)
    assert relative < 0.1 and fitted.explained_variance.sum() > 0.99
    right, left = rig._eye_centres(fitted.neutral)
    assert np.linalg.norm(left - right) == pytest.approx(rig.INTEROCULAR_M, rel=0.02)


def test_rig_input_checks():
    with pytest.raises(ValueError, match="478"):
        rig.fit_rig(np.zeros((3, 468, 3)), np.ones(3, bool), 100, 100, 25.0)
    bad = np.zeros((3, 478, 3))
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rig.fit_rig(bad, np.ones(3, bool), 100, 100, 25.0)


def test_real_clip_smoothing_keeps_lips_on_time(obama_rig):
    """The rig's landmarks jitter less than the raw track on stable points, while the mouth opening follows the
    raw track with no time shift."""
    fitted, checked = obama_rig
    raw = checked.landmarks[..., :2]
    posed = rig.project(rig.pose_points(fitted.expression_landmarks(), fitted.rotation, fitted.translation),
                        fitted.intrinsics)
    stable = list(rig.STABLE_POINTS)

    def jitter(track):  # median second difference, pixels
        return np.median(np.linalg.norm(track[2:] - 2 * track[1:-1] + track[:-2], axis=-1))

    assert jitter(posed[:, stable]) < 0.85 * jitter(raw[:, stable])
    opening_raw = np.linalg.norm(raw[:, 13] - raw[:, 14], axis=-1)  # inner lips, upper and lower
    opening_rig = np.linalg.norm(posed[:, 13] - posed[:, 14], axis=-1)
    a, b = opening_raw - opening_raw.mean(), opening_rig - opening_rig.mean()
    lags = list(range(-4, 5))
    scores = [np.dot(a[4:-4], np.roll(b, -lag)[4:-4]) for lag in lags]
    assert lags[int(np.argmax(scores))] == 0
    assert np.corrcoef(a, b)[0, 1] > 0.95


def test_neutral_has_a_closed_mouth(obama_rig):
    fitted, _ = obama_rig
    opening = np.linalg.norm(fitted.head_landmarks[:, 13] - fitted.head_landmarks[:, 14], axis=-1)
    neutral_opening = np.linalg.norm(fitted.neutral[13] - fitted.neutral[14])
    assert neutral_opening < np.percentile(opening, 30)
    mask = rig.mouth_closed_frames(fitted.head_landmarks, np.ones(len(opening), bool))
    assert mask.sum() == round(0.25 * len(opening)) and opening[mask].max() <= opening[~mask].min()
