"""The whole preprocessing pipeline on real media: video and photo paths, rejections, the TrackedClip
save/load round trip and its validation, progress reporting and the debug picture."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avatar import rig, video
from avatar.matting import CropConfig
from avatar.preprocess import Holdout, PreprocessConfig, TrackedClip, preprocess, preprocess_photo, preprocess_video


@pytest.fixture(scope="module")
def obama_clip(shared_data):
    stages = []
    clip = preprocess_video(shared_data / "video" / "obama_weekly_address_20s.mp4",
                            PreprocessConfig(max_seconds=3.0, min_seconds=3.0),
                            progress=lambda stage, fraction: stages.append((stage, fraction)), show_bar=False,
                            holdout=Holdout(seconds=1.0, every=10))
    return clip, stages


def test_video_clip_contents(obama_clip):
    clip, _ = obama_clip
    assert clip.num_frames == 75 and clip.frames.shape == (75, 512, 512, 3)
    assert clip.mattes.shape == (75, 512, 512) and clip.valid.all()
    assert clip.background.shape == (512, 512, 3)
    assert clip.audio.dtype == np.float32 and abs(len(clip.audio) - 3 * 16000) <= 16
    assert (clip.camera.width, clip.camera.height) == (512, 512)
    # the matte covers the face: landmarks inside the crop fall on person pixels
    inside = clip.landmarks_2d[:, :468].round().astype(int).clip(0, 511)
    person = clip.mattes[np.arange(75)[:, None], inside[..., 1], inside[..., 0]]
    assert (person > 128).mean() > 0.95
    # and the corners of the crop are background
    assert np.median(clip.mattes[:, :20, :20]) < 30


def test_video_clip_reprojection(obama_clip):
    clip, _ = obama_clip
    posed = rig.pose_points(clip.expression_landmarks(), clip.rotation, clip.translation)
    error = np.linalg.norm(rig.project(posed, clip.camera) - clip.landmarks_2d, axis=-1)
    assert np.median(error) < 1.0 and np.percentile(error, 95) < 3.0  # pixels of the 512 crop
    assert clip.meta["reprojection_px"]["median"] == pytest.approx(float(np.median(error)), rel=1e-3)


def test_progress_reports_stages_in_order(obama_clip):
    _, stages = obama_clip
    names = list(dict.fromkeys(stage for stage, _ in stages))
    assert names == ["probe", "track", "rig", "crop", "body", "background", "audio"]
    track = [fraction for stage, fraction in stages if stage == "track"]
    assert track == sorted(track) and track[-1] == pytest.approx(1.0)


def test_save_load_round_trip(obama_clip, tmp_path):
    clip, _ = obama_clip
    clip.save(tmp_path / "clip")
    loaded = TrackedClip.load(tmp_path / "clip")
    for name in ("frames", "mattes", "landmarks_2d", "head_landmarks", "neutral", "rotation", "translation", "basis",
                 "coeffs", "explained_variance", "audio", "background", "valid", "body_warp"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(clip, name), err_msg=name)
    assert loaded.camera == clip.camera and loaded.fps == clip.fps and loaded.meta == json.loads(json.dumps(clip.meta))
    assert sorted(path.name for path in (tmp_path / "clip").iterdir()) == ["audio.wav", "clip.json", "clip.safetensors"]


def test_load_validates(obama_clip, tmp_path):
    from safetensors.numpy import load_file, save_file

    clip, _ = obama_clip
    clip.save(tmp_path / "clip")
    arrays = load_file(str(tmp_path / "clip" / "clip.safetensors"))
    arrays["coeffs"] = arrays["coeffs"][:, :3]
    save_file(arrays, str(tmp_path / "clip" / "clip.safetensors"))
    with pytest.raises(ValueError, match="coeffs"):
        TrackedClip.load(tmp_path / "clip")
    (tmp_path / "clip" / "clip.json").unlink()
    with pytest.raises(FileNotFoundError, match="clip.json"):
        TrackedClip.load(tmp_path / "clip")


def test_clip_saved_before_body_tracking_loads_with_a_still_body(obama_clip, tmp_path):
    from safetensors.numpy import load_file, save_file

    clip, _ = obama_clip
    clip.save(tmp_path / "clip")
    arrays = load_file(str(tmp_path / "clip" / "clip.safetensors"))
    del arrays["body_warp"]
    save_file(arrays, str(tmp_path / "clip" / "clip.safetensors"))
    loaded = TrackedClip.load(tmp_path / "clip")
    np.testing.assert_array_equal(loaded.body_warp, np.tile(np.eye(2, 3, dtype=np.float32), (clip.num_frames, 1, 1)))


def test_body_motion_is_tracked_on_a_real_clip(obama_clip):
    clip, _ = obama_clip
    summary = clip.meta["body_motion"]
    assert summary["tracked"] and clip.body_warp.shape == (clip.num_frames, 2, 3)
    # centred on the training frames: their mean warp is the identity, and the body does move in 3 s
    held = Holdout(seconds=1.0, every=10).mask(clip.num_frames, clip.fps)
    np.testing.assert_allclose(clip.body_warp[~held].mean(0), np.eye(2, 3), atol=1e-5)
    assert 0.3 < max(summary["shift_std_px"]) < 10 and summary["shift_max_px"] < 40


def test_debug_png(obama_clip, tmp_path):
    from avatar.preprocess import save_debug_png

    clip, _ = obama_clip
    save_debug_png(clip, tmp_path / "debug.png")
    import cv2

    image = cv2.imread(str(tmp_path / "debug.png"))
    assert image is not None and image.shape[0] > 500 and image.std() > 20


@pytest.mark.parametrize("source", ["astronaut", "biden_official_portrait.jpg"])
def test_photo_path(source, shared_data, tmp_path):
    if source == "astronaut":
        import cv2
        import skimage.data

        path = tmp_path / "astronaut.png"
        cv2.imwrite(str(path), skimage.data.astronaut()[:, :, ::-1])
    else:
        path = shared_data / "portrait" / source
    clip = preprocess(path, show_bar=False)  # dispatches on content
    assert clip.num_frames == 1 and clip.basis.shape == (0, 478, 3) and clip.coeffs.shape == (1, 0)
    assert clip.audio.shape == (0,) and clip.meta["source"]["kind"] == "image"
    assert not clip.meta["body_motion"]["tracked"] and np.array_equal(clip.body_warp[0], np.eye(2, 3))
    right, left = rig._eye_centres(clip.neutral)
    assert np.linalg.norm(left - right) == pytest.approx(rig.INTEROCULAR_M, rel=0.02)
    posed = rig.pose_points(clip.expression_landmarks(), clip.rotation, clip.translation)
    assert np.abs(rig.project(posed, clip.camera) - clip.landmarks_2d).max() < 0.01  # exact by construction
    clip.save(tmp_path / "photo_clip")
    assert TrackedClip.load(tmp_path / "photo_clip").num_frames == 1


def test_rejections(tmp_path, shared_data):
    import cv2
    import skimage.data

    black = tmp_path / "black.mp4"
    subprocess.run([video.ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=320x240:d=4:r=25",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(black)], check=True)
    with pytest.raises(ValueError, match="too dark"):
        preprocess(black, show_bar=False)
    coffee = tmp_path / "coffee.jpg"
    cv2.imwrite(str(coffee), skimage.data.coffee()[:, :, ::-1])
    with pytest.raises(ValueError, match="no face found in the photo"):
        preprocess(coffee, show_bar=False)
    with pytest.raises(ValueError, match="still image, but a video was expected"):
        preprocess_video(coffee, show_bar=False)
    with pytest.raises(ValueError, match="is a video"):
        preprocess_photo(shared_data / "video" / "aoc_wda_8s.mp4", show_bar=False)
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        preprocess(empty, show_bar=False)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(ValueError, match="not a readable"):
        preprocess(corrupt, show_bar=False)


def test_video_with_hidden_face_gap(shared_data, tmp_path):
    """A real clip with the face covered for 0.6 s (15 frames, longer than the 12-frame gap limit): the pipeline
    completes, bridges the gap and marks exactly those frames invalid."""
    covered = tmp_path / "covered.mp4"
    subprocess.run([video.ffmpeg_exe(), "-v", "error", "-i", str(shared_data / "video" / "aoc_wda_8s.mp4"), "-t", "4",
                    "-vf", "drawbox=x=0:y=0:w=iw:h=ih:color=gray:t=fill:enable='between(t,2,2.59)'",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(covered)], check=True)
    clip = preprocess(covered, PreprocessConfig(crop=CropConfig(resolution=128)),
                      show_bar=False)
    assert clip.num_frames == 100
    assert not clip.valid[50:65].any() and clip.valid[:50].all() and clip.valid[65:].all()
    assert any("50-64" in note for note in clip.meta["notes"])
    assert np.isfinite(clip.coeffs).all() and np.isfinite(clip.translation).all()


def _synthetic_talking_landmarks(frames: int = 75, fps: float = 25.0, seed: int = 0) -> np.ndarray:
    """MediaPipe-like landmarks [T, 478, 3] (pixels + weak-perspective depth) of the astronaut's face moving
    along a smooth pose track with a smooth random expression (mouth and brow points displaced)."""
    import skimage.data
    from scipy.spatial.transform import Rotation

    from avatar import tracking

    neutral = rig.canonicalise(tracking.track_frames([skimage.data.astronaut()], static=True).landmarks[0].astype(float))
    rng = np.random.default_rng(seed)
    times = np.arange(frames) / fps
    modes = rng.normal(0.0, 0.002, (3, 478, 3)) * (np.arange(478) % 3 == 0)[None, :, None]  # metres
    weights = np.stack([np.sin(2 * np.pi * f * times + p) for f, p in ((1.1, 0), (0.7, 1), (1.9, 2))], 1)
    heads = neutral[None] + np.einsum("tk,kvc->tvc", weights, modes)
    rvecs = np.stack([0.1 * np.sin(2 * np.pi * 0.5 * times), 0.08 * np.sin(2 * np.pi * 0.3 * times + 1),
                      0.03 * np.cos(2 * np.pi * 0.4 * times)], 1)
    translation = np.stack([0.02 * np.sin(times), -0.01 * np.cos(times), 0.55 + 0.02 * np.sin(0.7 * times)], 1)
    camera = rig.pose_points(heads, Rotation.from_rotvec(rvecs).as_matrix(), translation)
    intrinsics = rig.Intrinsics.from_fov(512, 512, 35.0)
    pixels = rig.project(camera, intrinsics)
    depth_px = (camera[..., 2] - camera[..., 2].mean(1, keepdims=True)) * intrinsics.fx / camera[..., 2].mean(1)[:, None]
    return np.concatenate([pixels, depth_px[..., None]], -1)


def test_rig_fit_ignores_held_out_landmarks():
    """With a holdout, the neutral, the expression basis and the training frames' poses and coefficients must
    not move when the held-out frames' landmarks change (a plain fit on the other frames would: its temporal
    smoothing carries them into their neighbours); held-out frames are still posed and projected on that basis."""
    from avatar.preprocess import Holdout, fit_rig_excluding

    frames, fps = 75, 25.0
    landmarks = _synthetic_talking_landmarks(frames, fps)
    valid = np.ones(frames, bool)
    held = Holdout(seconds=0.8, every=10).mask(frames, fps)
    assert held[[0, 10, 50]].all() and held[-20:].all() and not held[[1, 11, 54]].any()
    changed = landmarks.copy()
    rng = np.random.default_rng(1)
    changed[held] += rng.normal(0.0, 4.0, changed[held].shape)  # pixels: a very different held-out face
    a = fit_rig_excluding(landmarks, valid, held, 512, 512, fps)
    b = fit_rig_excluding(changed, valid, held, 512, 512, fps)
    np.testing.assert_array_equal(a.neutral, b.neutral)
    np.testing.assert_array_equal(a.basis, b.basis)
    train = ~held
    np.testing.assert_array_equal(a.coeffs[train], b.coeffs[train])
    np.testing.assert_array_equal(a.rotation[train], b.rotation[train])
    np.testing.assert_array_equal(a.translation[train], b.translation[train])
    assert np.abs(a.coeffs[held] - b.coeffs[held]).max() > 1e-4  # held-out frames use their own landmarks
    # the naive fit (held frames only dropped from the medians and the PCA) is influenced: the test can fail
    plain_a = rig.fit_rig(landmarks, valid & train, 512, 512, fps)
    plain_b = rig.fit_rig(changed, valid & train, 512, 512, fps)
    assert np.abs(plain_a.basis - plain_b.basis).max() > 1e-6
    # held-out frames are still well explained by a basis fitted without them
    error = rig.reprojection_error_px(a, landmarks[..., :2])
    assert np.median(error[held]) < 0.5


def test_rig_fit_without_holdout_is_the_plain_fit():
    from avatar.preprocess import fit_rig_excluding

    landmarks = _synthetic_talking_landmarks(30)
    valid = np.ones(30, bool)
    a = fit_rig_excluding(landmarks, valid, np.zeros(30, bool), 512, 512, 25.0)
    b = rig.fit_rig(landmarks, valid, 512, 512, 25.0)
    np.testing.assert_array_equal(a.basis, b.basis)
    np.testing.assert_array_equal(a.coeffs, b.coeffs)
    with pytest.raises(ValueError, match="held must be"):
        fit_rig_excluding(landmarks, valid, np.zeros(29, bool), 512, 512, 25.0)


def test_prepare_clip_knows_whether_the_rig_saw_held_out_frames(obama_clip):
    from avatar.build import _rig_excludes

    clip, _ = obama_clip  # preprocessed with Holdout(1.0 s, every 10)
    assert clip.meta["holdout"] == {"seconds": 1.0, "every": 10}
    assert _rig_excludes(clip, []) and _rig_excludes(clip, [0, 10, 74]) and not _rig_excludes(clip, [0, 5])
    saved = clip.meta["holdout"]
    clip.meta["holdout"] = None  # fitted on every frame
    try:
        assert _rig_excludes(clip, []) and not _rig_excludes(clip, [0, 10])
    finally:
        clip.meta["holdout"] = saved
