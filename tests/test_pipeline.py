"""Render pipeline: backgrounds, Motion -> MP4 on a tiny avatar, the `say` command and its errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from animation.motion import MotionOptions, motion_from_speech
from audio.speech import Segment, Speech
from render.pipeline import BackgroundSpec, RenderOptions, background_image, motion_to_video, parse_color
from render.video import probe
from tests.talking_fixtures import tiny_avatar

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def avatar():
    return tiny_avatar(size=48)


def _speech(seconds: float = 1.0) -> Speech:
    sr = 16000
    wave = np.random.default_rng(0).normal(0, 0.1, int(seconds * sr)).astype(np.float32)
    phones = [Segment("sil", 0, 0.2), Segment("AA", 0.2, 0.6), Segment("M", 0.6, 0.7), Segment("sil", 0.7, seconds)]
    return Speech(wave, sr, "a", [], phones, "arpabet", "test")


def test_backgrounds(tmp_path):
    plate = np.zeros((200, 200, 3), np.uint8)
    plate[:, 100:] = 255
    color = background_image(BackgroundSpec("color", color="#ff8000"), plate, 16, 16)
    assert torch.allclose(color[3, 3], torch.tensor([1.0, 128 / 255, 0.0]))
    sharp = background_image(BackgroundSpec("plate"), plate, 200, 200)
    blurred = background_image(BackgroundSpec("blur"), plate, 200, 200)
    assert sharp.shape == (200, 200, 3) and float(sharp[0, 98:102].diff(dim=0).abs().max()) > 0.5
    assert float(blurred[0, 98:102].diff(dim=0).abs().max()) < 0.2  # sigma ~3 px: at most ~0.13 a pixel
    import cv2

    picture = np.zeros((30, 60, 3), np.uint8)
    picture[:, :, 2] = 255  # BGR red
    cv2.imwrite(str(tmp_path / "red.png"), picture)
    image = background_image(BackgroundSpec("image", image=str(tmp_path / "red.png")), plate, 24, 24)
    assert image.shape == (24, 24, 3) and float(image[..., 0].min()) == 1.0
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(ValueError, match="not an image"):
        background_image(BackgroundSpec("image", image=str(tmp_path / "text.png")), plate, 24, 24)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png is empty"):
        background_image(BackgroundSpec("image", image=str(tmp_path / "empty.png")), plate, 24, 24)
    with pytest.raises(FileNotFoundError, match="no such file"):
        background_image(BackgroundSpec("image", image=str(tmp_path / "missing.png")), plate, 24, 24)
    with pytest.raises(ValueError, match="#rrggbb"):
        parse_color("red")
    with pytest.raises(ValueError, match="unknown background"):
        BackgroundSpec("sky")


def test_motion_to_video_on_a_tiny_avatar(avatar, tmp_path):
    speech = _speech(1.0)
    motion = motion_from_speech(speech, avatar, MotionOptions(fps=25))
    seen = []
    result = motion_to_video(avatar, motion, speech.waveform, speech.sample_rate, tmp_path / "out.mp4",
                             BackgroundSpec("color", color="#000000"), RenderOptions(batch=8),
                             lambda stage, fraction, info: seen.append((stage, fraction)))
    info = probe(result.path)
    assert info.num_frames == motion.num_frames == 25
    assert (info.width, info.height) == (48, 48)
    assert ("frames", 1.0) in seen and seen[-1] == ("encoding", 1.0)


def test_frames_show_the_face_over_the_background(avatar):
    from render.pipeline import render_frames

    speech = _speech(0.8)
    motion = motion_from_speech(speech, avatar, MotionOptions(fps=25))
    frames = np.concatenate(list(render_frames(avatar, motion, BackgroundSpec("color", color="#00ff00"))))
    assert frames.shape == (motion.num_frames, 48, 48, 3)
    corner, centre = frames[0, 0, 0].astype(int), frames[0, 24, 24].astype(int)
    assert abs(corner[1] - 255) <= 2 and corner[0] <= 2  # background where no Gaussian covers
    assert centre[0] > 100  # skin-coloured face in the middle


def _say(*args, home):
    import os

    env = {**os.environ, "TALKING_AVATAR_HOME": str(home)}
    return subprocess.run([sys.executable, str(ROOT / "app.py"), "say", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_say_command(tmp_path):
    home = tmp_path / "home"
    tiny_avatar(size=48).save(home / "avatars" / "tiny")
    out = tmp_path / "hello.mp4"
    done = _say("--avatar", "tiny", "--text", "Hello there.", "--out", str(out), "--background", "blur",
                "--motion-out", str(tmp_path / "m.json"), home=home)
    assert done.returncode == 0, done.stderr[-2000:]
    info = probe(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    from animation.motion import Motion

    motion = Motion.load(tmp_path / "m.json")
    assert info.num_frames == motion.num_frames == round(motion.audio_seconds * motion.fps)
    for args, message in [(["--text", "  "], "script is empty"), (["--avatar", "nobody", "--text", "Hi"], "unknown avatar"),
                          (["--voice", "nobody", "--text", "Hi"], "unknown voice"),
                          (["--audio", str(tmp_path / "missing.wav")], "no such file")]:
        bad = _say("--avatar", "tiny", *args, "--out", str(tmp_path / "bad.mp4"), home=home) if "--avatar" not in args \
            else _say(*args, "--out", str(tmp_path / "bad.mp4"), home=home)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr[-500:])
    assert not (tmp_path / "bad.mp4").exists()
    for args in (["--out", str(tmp_path / "nowhere" / "a.mp4")],
                 ["--out", str(tmp_path / "bad.mp4"), "--motion-out", str(tmp_path / "nowhere" / "m.json")]):
        bad = _say("--avatar", "tiny", "--text", "Hi", *args, home=home)
        assert bad.returncode == 2 and "output folder does not exist" in bad.stderr, bad.stderr[-500:]
        assert "speech" not in bad.stderr  # refused before any stage ran
    assert not (tmp_path / "bad.mp4").exists()


def test_upscaled_render_matches_a_direct_render(avatar):
    from render.pipeline import render_frames

    motion = motion_from_speech(_speech(0.8), avatar, MotionOptions(fps=25, still=True))
    spec = BackgroundSpec("color", color="#00ff00")
    up = next(render_frames(avatar, motion, spec, RenderOptions(size=96, batch=2)))[0].astype(float)
    direct = next(render_frames(avatar, motion, spec, RenderOptions(size=96, batch=2, upscale=False)))[0].astype(float)
    assert up.shape == direct.shape == (96, 96, 3)
    assert np.abs(up - direct).mean() < 12  # same picture, only softer
    assert np.abs(up[0, 0] - [0, 255, 0]).max() <= 2
