"""Decoding: probing, image-vs-video by content, constant-fps decode of VFR and MPEG-4 Part 2 clips, audio,
and clear messages for bad files."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from avatar import video


def make_video(path: Path, seconds: float, source: str = "testsrc", audio: bool = False) -> Path:
    """A small synthetic clip made with the bundled ffmpeg (lavfi sources)."""
    command = [video.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"{source}=s=160x120:d={seconds}:r=25"]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-shortest", str(path)]
    subprocess.run(command, check=True)
    return path


def test_probe_real_clips(shared_data):
    vfr = video.probe_media(shared_data / "video" / "retalking_face1_man_suit_6s.mp4")
    assert (vfr.kind, vfr.width, vfr.height, vfr.has_audio) == ("video", 700, 700, True)
    assert vfr.duration_s == pytest.approx(6.13, abs=0.01)
    mpeg4 = video.probe_media(shared_data / "video" / "aoc_wda_8s.mp4")
    assert (mpeg4.video_codec, mpeg4.audio_sample_rate) == ("mpeg4", 16000)
    photo = video.probe_media(shared_data / "portrait" / "obama_official_portrait.jpg")
    assert (photo.kind, photo.width, photo.height, photo.has_audio) == ("image", 910, 1137, False)


@pytest.mark.parametrize("name,seconds", [("retalking_face1_man_suit_6s.mp4", None), ("aoc_wda_8s.mp4", None),
                                          ("obama_weekly_address_20s.mp4", 2.0)])
def test_constant_fps_decode_frame_count(shared_data, name, seconds):
    path = shared_data / "video" / name
    info = video.probe_media(path)
    frames = video.decode_video(path, fps=25.0, max_seconds=seconds)
    duration = info.duration_s if seconds is None else seconds
    assert frames.shape == (round(duration * 25), info.height, info.width, 3)
    assert frames.dtype == np.uint8
    assert frames.std() > 10  # real pictures, not a blank pipe


def test_vfr_decode_is_evenly_timed(shared_data):
    """Frames at 25 fps from the VFR clip match frames at 50 fps taken at the same instants (even indices)."""
    path = shared_data / "video" / "retalking_face1_man_suit_6s.mp4"
    at_25 = video.decode_video(path, fps=25.0, max_seconds=2.0)
    at_50 = video.decode_video(path, fps=50.0, max_seconds=2.0)
    assert len(at_50) == 2 * len(at_25)
    difference = np.abs(at_25.astype(np.int16) - at_50[::2].astype(np.int16)).mean()
    assert difference < 1.0


def test_image_detected_by_content_not_extension(tmp_path):
    import cv2
    import skimage.data

    disguised = tmp_path / "coffee.mp4"
    cv2.imwrite(str(tmp_path / "coffee.png"), skimage.data.coffee()[:, :, ::-1])
    disguised.write_bytes((tmp_path / "coffee.png").read_bytes())
    assert video.probe_media(disguised).kind == "image"
    image = video.load_image(disguised)
    assert image.shape == (400, 600, 3)
    np.testing.assert_array_equal(image, skimage.data.coffee())
    with pytest.raises(ValueError, match="still image, but a video was expected"):
        video.decode_video(disguised)


def test_video_passed_as_photo(shared_data):
    with pytest.raises(ValueError, match="is a video"):
        video.load_image(shared_data / "video" / "aoc_wda_8s.mp4")


def test_bad_files(tmp_path, shared_data):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        video.probe_media(empty)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes((shared_data / "video" / "aoc_wda_8s.mp4").read_bytes()[:5000])
    with pytest.raises(ValueError, match="not a readable video or image"):
        video.probe_media(corrupt)
    with pytest.raises(FileNotFoundError):
        video.probe_media(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="no picture"):
        video.probe_media(shared_data / "speech" / "obama_5s.wav")


def test_too_short_and_no_audio(tmp_path):
    short = make_video(tmp_path / "short.mp4", 1.0)
    info = video.probe_media(short)
    assert not info.has_audio
    with pytest.raises(ValueError, match="at least 3 s"):
        video.require_video(info)
    assert video.extract_audio(short) is None


def test_extract_audio(tmp_path, shared_data):
    clip = make_video(tmp_path / "tone.mp4", 2.0, audio=True)
    tone = video.extract_audio(clip, sample_rate=16000)
    assert tone.dtype == np.float32 and abs(len(tone) - 32000) < 1600
    spectrum = np.abs(np.fft.rfft(tone[4000:20000]))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(440, abs=2)  # 1 Hz bins
    speech = video.extract_audio(shared_data / "video" / "aoc_wda_8s.mp4", sample_rate=22050, max_seconds=3.0)
    assert abs(len(speech) - 3 * 22050) < 100 and 0.01 < np.abs(speech).max() <= 1.0
    video.write_wav(tmp_path / "speech.wav", speech, 22050)
    from scipy.io import wavfile

    rate, written = wavfile.read(str(tmp_path / "speech.wav"))
    assert rate == 22050 and written.dtype == np.float32
    np.testing.assert_array_equal(written, speech)
