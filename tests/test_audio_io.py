"""audio.io: decoding every upload format, loudness, trimming, and clear errors for bad files."""
from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from audio.io import (AudioOptions, decode_audio, ffmpeg_exe, frame_rms_dbfs, load_audio, normalise_loudness,
                      prepare_audio, prepare_waveform, trim_silence)

SR = 16000
CLIP = "speech/librispeech_61-70968-0000.flac"  # 4.91 s, 16 kHz mono


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SR) -> Path:
    """float samples [S] or [S, C] in [-1, 1] -> 16-bit PCM wav."""
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float64).T).T
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(samples.shape[1])
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True, timeout=60)


def voiced_rms_dbfs(waveform: np.ndarray) -> float:
    levels = frame_rms_dbfs(waveform, SR)
    voiced = levels > levels.max() - 40
    return 10 * np.log10(np.mean(10 ** (levels[voiced] / 10)))


def test_frame_rms_matches_direct_computation():
    rng = np.random.default_rng(1)
    wave_ = rng.normal(0, 0.1, 1000).astype(np.float32)
    levels = frame_rms_dbfs(wave_, 1000, frame_s=0.1)  # 100-sample frames
    direct = [20 * np.log10(np.sqrt(np.mean(wave_[i:i + 100].astype(np.float64) ** 2))) for i in range(0, 1000, 100)]
    np.testing.assert_allclose(levels, direct, rtol=1e-6)


def test_normalise_brings_voiced_part_to_target_and_limits_peak():
    t = np.arange(SR * 2) / SR
    quiet = (0.01 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    quiet[: SR // 2] = 0  # a long pause must not raise the gain
    out = normalise_loudness(quiet, SR)
    assert abs(voiced_rms_dbfs(out) - (-20.0)) < 0.5
    spiky = quiet.copy()
    spiky[SR] = 0.5  # one click: the peak limiter, not the RMS target, decides the gain
    out = normalise_loudness(spiky, SR)
    assert np.max(np.abs(out)) <= 0.98 + 1e-6


def test_trim_cuts_silence_and_reports_offset():
    rng = np.random.default_rng(2)
    speech = rng.normal(0, 0.1, SR).astype(np.float32)
    padded = np.concatenate([np.zeros(SR), speech, np.zeros(SR // 2)]).astype(np.float32)
    trimmed, offset = trim_silence(padded, SR)
    assert offset == pytest.approx(0.9, abs=0.021)  # 1 s of silence minus the 0.1 s margin
    assert len(trimmed) / SR == pytest.approx(1.2, abs=0.041)


def test_loads_shared_clip(shared_data):
    waveform, sr = load_audio(shared_data / CLIP)
    assert sr == SR and waveform.dtype == np.float32 and waveform.ndim == 1
    assert 3.5 < len(waveform) / SR < 5.0
    assert abs(voiced_rms_dbfs(waveform) - (-20.0)) < 1.0


@pytest.mark.parametrize("suffix, codec", [("mp3", "libmp3lame"), ("ogg", "libvorbis"), ("webm", "libopus"),
                                           ("m4a", "aac"), ("flac", "flac")])
def test_every_upload_format_decodes_to_the_same_audio(shared_data, tmp_path, suffix, codec):
    source = shared_data / CLIP
    encoded = tmp_path / f"clip.{suffix}"
    # Stereo at 48 kHz, as a browser or phone records it: decoding must downmix and resample.
    ffmpeg("-i", str(source), "-ac", "2", "-ar", "48000", "-c:a", codec, str(encoded))
    reference, _ = decode_audio(source)
    decoded, _ = decode_audio(encoded)
    assert abs(len(decoded) - len(reference)) / SR < 0.1  # codec priming/padding only
    prepared = prepare_audio(encoded)
    assert prepared.sample_rate == SR and prepared.duration_s > 3.5


def test_stereo_is_downmixed(tmp_path):
    t = np.arange(SR) / SR
    left = 0.3 * np.sin(2 * np.pi * 300 * t)
    right = 0.3 * np.sin(2 * np.pi * 500 * t)
    samples, _ = decode_audio(write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1)))
    # ffmpeg's downmix is a weighted sum (its gain does not matter: loudness is normalised next).
    gain = np.dot(samples, left + right) / np.dot(left + right, left + right)
    assert 0.4 < gain < 1.5
    np.testing.assert_allclose(samples, gain * (left + right), atol=3e-3)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_audio(tmp_path / "empty.wav")


def test_not_audio_and_corrupt(tmp_path):
    (tmp_path / "notes.mp3").write_text("this is a text file, not audio\n" * 20)
    with pytest.raises(ValueError, match="could not decode"):
        load_audio(tmp_path / "notes.mp3")
    (tmp_path / "noise.ogg").write_bytes(np.random.default_rng(3).bytes(5000))
    with pytest.raises(ValueError, match="could not decode"):
        load_audio(tmp_path / "noise.ogg")


def test_truncated_file_is_refused_or_flagged(shared_data, tmp_path):
    encoded = tmp_path / "clip.mp3"
    ffmpeg("-i", str(shared_data / CLIP), "-c:a", "libmp3lame", str(encoded))
    data = encoded.read_bytes()
    (tmp_path / "header_only.mp3").write_bytes(data[:300])
    with pytest.raises(ValueError):
        load_audio(tmp_path / "header_only.mp3")
    (tmp_path / "half.mp3").write_bytes(data[: len(data) // 2])
    prepared = prepare_audio(tmp_path / "half.mp3")  # the readable half is usable speech
    assert 1.0 < prepared.original_duration_s < 3.5


def test_video_without_audio_track(tmp_path):
    video = tmp_path / "silent_video.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1", "-c:v", "libx264", str(video))
    with pytest.raises(ValueError, match="no audio track"):
        load_audio(video)


def test_silent_and_near_silent(tmp_path):
    with pytest.raises(ValueError, match="silent"):
        load_audio(write_wav(tmp_path / "zeros.wav", np.zeros(SR * 2)))
    hiss = np.random.default_rng(4).normal(0, 10 ** (-70 / 20), SR * 2)  # -70 dBFS: a muted microphone
    with pytest.raises(ValueError, match="silent"):
        load_audio(write_wav(tmp_path / "hiss.wav", hiss))


def test_too_short_and_too_long(shared_data, tmp_path):
    t = np.arange(int(0.08 * SR)) / SR
    blip = np.concatenate([np.zeros(SR), 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros(SR)])
    with pytest.raises(ValueError, match="too little sound"):
        load_audio(write_wav(tmp_path / "blip.wav", blip))
    with pytest.raises(ValueError, match="longer than"):
        prepare_audio(shared_data / CLIP, AudioOptions(max_duration_s=2.0))
    with pytest.raises(ValueError, match="limit"):
        prepare_waveform(np.full(SR * 3, 0.1, np.float32), SR, AudioOptions(max_duration_s=2.0))


def test_bad_waveform_arguments():
    with pytest.raises(ValueError, match="mono"):
        prepare_waveform(np.zeros((2, SR), np.float32), SR)
    with pytest.raises(ValueError, match="NaN"):
        prepare_waveform(np.full(SR, np.nan, np.float32), SR)
