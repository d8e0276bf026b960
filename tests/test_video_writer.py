"""MP4 writer: streams, frame count, audio fitted to the video, clean failure."""
from __future__ import annotations

import numpy as np
import pytest

from render.video import VideoWriter, fit_audio, probe


def _frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.stack([np.full((h, w, 3), (i * 7) % 256, np.uint8) for i in range(n)])


@pytest.mark.parametrize("audio_seconds", [1.9, 2.0, 2.3])
def test_streams_frame_count_and_sync(tmp_path, audio_seconds):
    sr, fps, n = 16000, 25.0, 50
    wave = (0.3 * np.sin(np.arange(int(audio_seconds * sr)) * 2 * np.pi * 300 / sr)).astype(np.float32)
    with VideoWriter(tmp_path / "a.mp4", 64, 48, fps, wave, sr, expected_frames=n) as out:
        frames = _frames(n)
        out.write(frames[:20])
        out.write(frames[20:])
    info = probe(tmp_path / "a.mp4")
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
    assert (info.width, info.height, info.fps, info.num_frames) == (64, 48, 25.0, n)
    assert info.video_start_s == 0.0 and info.audio_start_s == 0.0
    assert info.duration_s == pytest.approx(n / fps, abs=0.05)  # audio cut or padded to the video


def test_video_without_audio(tmp_path):
    with VideoWriter(tmp_path / "v.mp4", 32, 32, 30) as out:
        out.write(_frames(7, 32, 32))
    info = probe(tmp_path / "v.mp4")
    assert info.audio_codec is None and info.num_frames == 7


def test_fit_audio_pads_and_cuts():
    assert len(fit_audio(np.ones(100), 1000, 5, 25.0)) == 200
    padded = fit_audio(np.ones(100), 1000, 10, 25.0)
    assert len(padded) == 400 and padded[99] == 1 and padded[100] == 0
    assert len(fit_audio(np.ones(1000), 1000, 5, 25.0)) == 200


def test_bad_input_and_failure_leave_no_file(tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        VideoWriter(tmp_path / "odd.mp4", 33, 32, 25)
    target = tmp_path / "x.mp4"
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(target, 32, 32, 25) as out:
            out.write(np.zeros((32, 32, 3), np.float32))
    assert not target.exists() and not list(tmp_path.glob(".*partial*"))
    with pytest.raises(RuntimeError, match="expected 3"):
        with VideoWriter(target, 32, 32, 25, expected_frames=3) as out:
            out.write(_frames(2, 32, 32))
    assert not target.exists()
