"""`app.py train` / `app.py eval`: bad input gets one clear line (exit 2) and never costs a saved avatar."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import app


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKING_AVATAR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def existing_avatar(home):
    """A stand-in avatar folder whose files must survive every failed command."""
    folder = home / "avatars" / "alice"
    folder.mkdir(parents=True)
    (folder / "avatar.json").write_text('{"keep": true}')
    return folder


def run(argv, capsys) -> tuple[int, str]:
    code = app.main(argv)
    return code, capsys.readouterr().err


def image_file(path, face: bool = False):
    import imageio.v3 as iio
    import skimage.data

    picture = skimage.data.astronaut() if face else np.full((256, 256, 3), 90, np.uint8)
    iio.imwrite(path, picture)
    return path


@pytest.mark.parametrize("name, message", [("", "empty"), ("../x", "leave the data folder"), ("a b", "unsupported"),
                                           ("alice", "exists already")])
def test_bad_names_are_refused_before_any_work(name, message, existing_avatar, tmp_path, capsys):
    source = image_file(tmp_path / "face.png", face=True)
    code, err = run(["train", str(source), "--name", name], capsys)
    assert code == 2 and err.startswith("error:") and message in err
    assert (existing_avatar / "avatar.json").read_text() == '{"keep": true}'


def test_missing_empty_and_corrupt_files(existing_avatar, tmp_path, capsys):
    code, err = run(["train", str(tmp_path / "nope.mp4"), "--name", "bob"], capsys)
    assert code == 2 and "no such file" in err
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    code, err = run(["train", str(empty), "--name", "bob"], capsys)
    assert code == 2 and "empty" in err
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    code, err = run(["train", str(corrupt), "--name", "alice", "--overwrite"], capsys)
    assert code == 2 and err.startswith("error:")
    assert (existing_avatar / "avatar.json").read_text() == '{"keep": true}'
    assert not (existing_avatar.parent / "bob").exists()


def test_photo_without_a_face_is_rejected(home, tmp_path, capsys):
    code, err = run(["train", str(image_file(tmp_path / "wall.png")), "--name", "wall"], capsys)
    assert code == 2 and "face" in err.lower()
    assert not (home / "avatars" / "wall").exists()


def test_eval_wants_a_video_not_an_image(tmp_path, capsys):
    code, err = run(["eval", str(image_file(tmp_path / "face.png", face=True)), "--holdout-seconds", "4",
                     "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "video was expected" in err


def test_eval_rejects_a_holdout_longer_than_the_video(shared_data, tmp_path, capsys):
    video = shared_data / "video" / "retalking_face4_woman_6s.mp4"
    code, err = run(["eval", str(video), "--holdout-seconds", "30", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "too little to train on" in err


def test_eval_renders_the_held_out_tail_with_its_audio(shared_data, tmp_path, capsys, monkeypatch, home):
    import json
    import subprocess

    import imageio_ffmpeg

    from avatar import train

    # CI-sized: the real command path with a tiny preset standing in for "fast".
    monkeypatch.setitem(train.PRESETS, "fast", train.preset("tiny", preset="fast", resolution=64, iterations=30))
    out = tmp_path / "eval"
    video = shared_data / "video" / "retalking_face4_woman_6s.mp4"
    code, err = run(["eval", str(video), "--holdout-seconds", "2", "--out", str(out)], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tail_frames"] == 50 and metrics["held_out_frames"] > 0
    for key in ("psnr", "ssim", "psnr_mouth", "training_minutes", "gaussians", "render_fps"):
        assert metrics[key] > 0, key
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out / "reconstruction.mp4"))
    assert frames == 50 and abs(seconds - 2.0) < 0.1
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(out / "reconstruction.mp4")],
                           capture_output=True, text=True).stderr
    assert "Video: h264" in probe and "yuv420p" in probe and "Audio: aac" in probe
    # The talking path: the same tail driven by its audio alone, scored against the real frames.
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out / "lipsync.mp4"))
    assert frames == 50 and abs(seconds - 2.0) < 0.1
    assert -1.0 <= metrics["lipsync_open_r"] <= 1.0 and metrics["lipsync_lmd_pct"] > 0
    interval = metrics["lipsync_open_r_interval"]  # 50 frames: 5 blocks of 10
    assert interval is None or -1.0 <= interval[0] <= metrics["lipsync_open_r"] <= interval[1] <= 1.0
    assert metrics["lipsync"].endswith("lipsync.mp4")
    assert Path(metrics["lipsync_plot"]).stat().st_size > 10_000  # real vs driven opening over the tail
