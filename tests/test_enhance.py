"""Optional enhancers in the render pipeline (`render.enhance`) and the weight converter (`render.model_files`).

The models themselves are tested in test_gfpgan.py / test_realesrgan.py; here stand-ins with known behaviour
check what the pipeline hands them and what it does with their output.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from animation.motion import Motion
from render.enhance import Enhancers, chosen_models, enhance_parts, face_boxes, face_points, upscale_over
from render.pipeline import BackgroundSpec, RenderOptions, output_camera, render_frames
from tests.talking_fixtures import tiny_avatar


@pytest.fixture(scope="module")
def avatar():
    return tiny_avatar(size=64)


def _still_motion(avatar, frames: int = 3) -> Motion:
    coeffs = np.zeros((frames, avatar.num_expressions), np.float32)
    rotations = np.zeros((frames, 3))  # axis-angle: facing the camera
    translations = np.tile([0.0, 0.0, 0.5], (frames, 1))
    return Motion.from_expressions(avatar.fps, rotations, translations, coeffs)


class NearestUpscaler:
    """Stand-in Real-ESRGAN: nearest-neighbour x2, remembering its inputs."""

    scale = 2

    def __init__(self):
        self.inputs = []

    def upscale(self, frames):
        self.inputs.append(frames.copy())
        return frames.repeat(2, axis=1).repeat(2, axis=2)

    def describe(self):
        return "nearest x2"


class MarkingFaceModel:
    """Stand-in GFPGAN: paints each landmark's pixel white, remembering the landmarks."""

    def __init__(self):
        self.landmarks = []

    def restore(self, frames, landmarks, strength=0.7):
        self.landmarks.append(landmarks.copy())
        out = frames.copy()
        for b, points in enumerate(landmarks):
            for x, y in np.round(points).astype(int):
                out[b, y, x] = 255
        return out

    def describe(self):
        return "marks"


def test_face_points_project_the_mesh_in_image_order(avatar):
    motion = _still_motion(avatar)
    vertices = motion.vertices(avatar, 0, 3)
    camera = avatar.camera.to_camera()
    points = face_points(vertices, camera)
    assert points.shape == (3, 5, 2)
    direct = vertices[0, 1].double()  # the nose tip by hand: pinhole, pixel centres at i + 0.5
    u = camera.fx * direct[0] / direct[2] + camera.cx - 0.5
    v = camera.fy * direct[1] / direct[2] + camera.cy - 0.5
    assert np.allclose(points[0, 2], [float(u), float(v)], atol=1e-6)
    left_eye, right_eye, nose, left_mouth, right_mouth = points[0]
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])  # y grows downwards
    assert (points >= 0).all() and (points < 64).all()
    mirrored = vertices.clone()
    mirrored[..., 0] *= -1  # the same face seen mirrored: still ordered by x
    flipped = face_points(mirrored, camera)
    assert (flipped[:, 0, 0] < flipped[:, 1, 0]).all() and (flipped[:, 3, 0] < flipped[:, 4, 0]).all()
    with pytest.raises(ValueError, match="shape"):
        face_points(vertices[:, :100], camera)


def test_face_model_gets_the_output_frames_and_their_points(avatar):
    motion = _still_motion(avatar)
    face = MarkingFaceModel()
    options = RenderOptions(size=96, enhance="face", face_strength=0.5)
    plain = np.concatenate(list(render_frames(avatar, motion, BackgroundSpec("color", color="#000000"),
                                              RenderOptions(size=96))))
    timings = {}
    marked = np.concatenate(list(render_frames(avatar, motion, BackgroundSpec("color", color="#000000"), options,
                                               enhancers=Enhancers(face=face), timings=timings)))
    assert marked.shape == plain.shape == (3, 96, 96, 3)
    points = np.concatenate(face.landmarks)
    expected = face_points(motion.vertices(avatar, 0, 3), output_camera(avatar, RenderOptions(size=96)).to_camera())
    assert np.allclose(points, expected)
    marks = {(b, y, x) for b in range(3) for x, y in np.round(points[b]).astype(int)}
    changed = {tuple(index) for index in np.argwhere((marked != plain).any(-1))}
    assert changed and changed <= marks  # the face model's output is what reaches the video, nothing else moved
    assert timings["enhance"] >= 0.0


def test_upscaler_replaces_lanczos_and_keeps_a_picture_background_sharp(avatar):
    motion = _still_motion(avatar, 2)
    upscaler = NearestUpscaler()
    background = BackgroundSpec("color", color="#204060")
    lanczos = np.concatenate(list(render_frames(avatar, motion, background, RenderOptions(size=128))))
    timings = {}
    enhanced = np.concatenate(list(render_frames(avatar, motion, background, RenderOptions(size=128, enhance="upscale"),
                                                 enhancers=Enhancers(upscaler=upscaler), timings=timings)))
    assert enhanced.shape == lanczos.shape == (2, 128, 128, 3)
    assert len(upscaler.inputs) == 2 and upscaler.inputs[0].shape == (1, 64, 64, 3)  # drawn at the avatar's size
    assert np.abs(enhanced.astype(int) - lanczos.astype(int)).mean() < 6  # the same picture, other resampling
    assert (enhanced[:, 0, 0] == [0x20, 0x40, 0x60]).all()  # uncovered background exactly as given
    assert "enhance" in timings


class PaintingLipsModel:
    """Stand-in Wav2Lip: fills the lower half of each face box with one colour, remembering boxes and mels."""

    def __init__(self):
        self.boxes, self.mels = [], []

    def sync(self, frames, boxes, mels, strength=1.0):
        self.boxes.append(boxes.copy())
        self.mels.append(mels.copy())
        out = frames.copy()
        for b, (x0, y0, x1, y1) in enumerate(np.round(boxes).astype(int)):
            out[b, (y0 + y1) // 2:y1 + 1, x0:x1 + 1] = (255, 0, 255)
        return out

    def describe(self):
        return "paints"


def test_lips_get_the_face_box_and_the_speech_around_each_frame(avatar):
    from render.wav2lip import mel_spectrogram, mel_windows

    motion = _still_motion(avatar, 4)
    lips = PaintingLipsModel()
    sample_rate = 16000
    waveform = np.sin(np.linspace(0, 400 * np.pi, int(sample_rate * motion.num_frames / motion.fps))) * 0.3
    options = RenderOptions(size=96, enhance="lips")
    frames = np.concatenate(list(render_frames(avatar, motion, BackgroundSpec("color", color="#000000"), options,
                                               enhancers=Enhancers(lips=lips), audio=(waveform, sample_rate))))
    camera = output_camera(avatar, RenderOptions(size=96)).to_camera()
    boxes = np.concatenate(lips.boxes)
    assert np.allclose(boxes, face_boxes(motion.vertices(avatar, 0, 4), camera))
    points = face_points(motion.vertices(avatar, 0, 4), camera)
    x0, y0, x1, y1 = boxes[0]
    assert x0 < points[0, 0, 0] < points[0, 1, 0] < x1 and y0 < points[0, 0, 1] < points[0, 3, 1] < y1  # the face
    assert np.allclose(np.concatenate(lips.mels), mel_windows(mel_spectrogram(waveform, sample_rate), motion.fps, 4))
    assert (frames[:, int(y1) - 1, int((x0 + x1) / 2)] == (255, 0, 255)).all()  # its output reaches the video
    with pytest.raises(ValueError, match="needs the speech audio"):
        next(render_frames(avatar, motion, None, options, enhancers=Enhancers(lips=lips)))


def test_upscale_over_composites_by_coverage():
    small = np.full((16, 16, 3), 200, np.uint8)
    alpha = np.zeros((16, 16), np.float32)
    alpha[4:12, 4:12] = 1.0
    background = np.zeros((32, 32, 3), np.float32)
    out = upscale_over(small, alpha, background, NearestUpscaler())
    assert out.shape == (32, 32, 3)
    assert np.allclose(out[0, 0], 0.0) and np.allclose(out[16, 16], 200 / 255, atol=0.01)
    with pytest.raises(ValueError, match="uint8"):
        upscale_over(small.astype(np.float32), alpha, background, NearestUpscaler())


def test_enhance_options_are_checked():
    with pytest.raises(ValueError, match="enhance must be 'none' or parts"):
        RenderOptions(enhance="sharpen")
    with pytest.raises(ValueError, match="face strength"):
        RenderOptions(face_strength=1.5)
    assert chosen_models("none", None) == Enhancers()
    upscaler = NearestUpscaler()
    both = Enhancers(upscaler=upscaler, face=MarkingFaceModel())
    assert chosen_models("upscale", both) == Enhancers(upscaler=upscaler)
    with pytest.raises(ValueError, match="not loaded: face"):
        chosen_models("face+upscale", Enhancers(upscaler=upscaler))
    assert enhance_parts("face+lips+upscale") == enhance_parts("upscale+lips+face") == ("upscale", "lips", "face")
    for bad in ("face+face", "lips+", "sharpen", "", "None"):
        with pytest.raises(ValueError, match="joined by"):
            enhance_parts(bad)


# --- the converter -----------------------------------------------------------------------------------------

def test_convert_keeps_the_state_dict_tensors(tmp_path):
    from safetensors.torch import load_file

    from render.model_files import convert_checkpoint

    weights = {"conv_first.weight": torch.randn(4, 3, 3, 3), "conv_first.bias": torch.randn(4)}
    torch.save({"params_ema": weights, "params": {"conv_first.weight": torch.zeros(1)}, "iter": 7},
               tmp_path / "model.pth")
    target = tmp_path / "model.safetensors"
    assert convert_checkpoint(tmp_path / "model.pth", target) == 2
    loaded = load_file(str(target))
    assert set(loaded) == set(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)
    target.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="overwrite"):
        convert_checkpoint(tmp_path / "model.pth", target)
    assert target.read_bytes() == b"keep me"
    assert convert_checkpoint(tmp_path / "model.pth", target, overwrite=True) == 2


class _Exploit:
    def __reduce__(self):
        return (open, ("/tmp/should-not-exist-enhance-test", "w"))


def test_convert_refuses_code_and_non_checkpoints(tmp_path):
    from render.model_files import convert_checkpoint

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"params_ema": _Exploit()}, protocol=2))
    with pytest.raises(ValueError, match="not a PyTorch checkpoint of plain tensors"):
        convert_checkpoint(evil, tmp_path / "evil.safetensors")
    from pathlib import Path

    assert not Path("/tmp/should-not-exist-enhance-test").exists()
    assert not (tmp_path / "evil.safetensors").exists()
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError):
        convert_checkpoint(tmp_path / "junk.pth", tmp_path / "junk.safetensors")
    torch.save({"note": "no tensors"}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="no tensors"):
        convert_checkpoint(tmp_path / "empty.pth", tmp_path / "empty.safetensors")
    with pytest.raises(ValueError, match=".safetensors"):
        convert_checkpoint(tmp_path / "empty.pth", tmp_path / "out.bin")
    with pytest.raises(FileNotFoundError):
        convert_checkpoint(tmp_path / "missing.pth", tmp_path / "x.safetensors")


# --- end to end through the command line, with tiny real models ---------------------------------------------

def _say(tmp_path, *args, gfpgan_dir, esrgan_dir, wav2lip_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    home = tmp_path / "home"
    if not (home / "avatars" / "tiny").exists():
        tiny_avatar(size=48).save(home / "avatars" / "tiny")
    env = {**os.environ, "TALKING_AVATAR_HOME": str(home), "TALKING_AVATAR_GFPGAN_DIR": str(gfpgan_dir),
           "TALKING_AVATAR_REALESRGAN_DIR": str(esrgan_dir), "TALKING_AVATAR_WAV2LIP_DIR": str(wav2lip_dir),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(root / "app.py"), "say", "--avatar", "tiny", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_say_with_all_enhancers_and_without_their_weights(tmp_path):
    from safetensors.torch import save_file

    import render.realesrgan as esr
    from render.video import probe
    from tests.test_gfpgan import save_tiny
    from tests.test_wav2lip import save_tiny as save_tiny_wav2lip

    gfpgan_dir = save_tiny(tmp_path / "gfpgan")
    wav2lip_dir = save_tiny_wav2lip(tmp_path / "wav2lip")
    network = esr.build_network(esr.ESRGANConfig("srvgg", 2, num_feat=8, num_conv=2))
    (tmp_path / "esrgan").mkdir()
    save_file({k: v.contiguous() for k, v in network.state_dict().items()},
              str(tmp_path / "esrgan" / "tiny.safetensors"))
    out = tmp_path / "enhanced.mp4"
    done = _say(tmp_path, "--text", "Hello.", "--size", "96", "--enhance", "face+lips+upscale", "--out", str(out),
                gfpgan_dir=gfpgan_dir, esrgan_dir=tmp_path / "esrgan", wav2lip_dir=wav2lip_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    info = probe(out)
    assert (info.width, info.height) == (96, 96) and info.video_codec == "h264" and info.audio_codec == "aac"
    assert "enhance" in done.stdout  # timed as its own stage
    assert done.stdout.count("note: enhanced by") == 3

    empty = tmp_path / "no-weights"
    empty.mkdir()
    for kind, name in (("face", "GFPGAN"), ("upscale", "Real-ESRGAN"), ("lips", "Wav2Lip")):
        bad = _say(tmp_path, "--text", "Hello.", "--enhance", kind, "--out", str(tmp_path / "bad.mp4"),
                   gfpgan_dir=empty, esrgan_dir=empty, wav2lip_dir=empty)
        assert bad.returncode == 2 and f"{name} weights not found in {empty}" in bad.stderr, bad.stderr[-800:]
        assert "speech" not in bad.stderr  # refused before any stage ran
    assert not (tmp_path / "bad.mp4").exists()


def test_models_command_lists_what_is_found(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_gfpgan import save_tiny

    root = Path(__file__).resolve().parents[1]
    gfpgan_dir = save_tiny(tmp_path / "gfpgan")
    env = {**os.environ, "TALKING_AVATAR_GFPGAN_DIR": str(gfpgan_dir),
           "TALKING_AVATAR_REALESRGAN_DIR": str(tmp_path / "none"), "TALKING_AVATAR_F5TTS_DIR": str(tmp_path / "none"),
           "TALKING_AVATAR_WAV2LIP_DIR": str(tmp_path / "none")}
    done = subprocess.run([sys.executable, str(root / "app.py"), "models"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
    assert f"found: {gfpgan_dir / 'GFPGANv1.4.safetensors'}" in done.stdout
    assert done.stdout.count("absent:") == 3
