"""Decoding user media: probe a file, tell image from video by content, decode video at a constant frame rate,
load a photo, extract the audio track.

Everything goes through the ffmpeg binary that `imageio_ffmpeg` ships (there is no ffprobe): probing parses
`ffmpeg -i` stderr, decoding pipes raw rgb24 frames through `-vf fps=F`, so variable-frame-rate clips and
MPEG-4 Part 2 clips come out as a constant-rate frame sequence (frame i is the picture shown at i / fps).
ffmpeg applies the container's rotation metadata (phone videos) by default; the probe reports the rotated size.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

# Shortest video accepted at all, and the length below which the result is noted as likely poor.
MIN_VIDEO_SECONDS = 3.0
RECOMMENDED_VIDEO_SECONDS = 10.0

# ffmpeg demuxer names that mean "a still image" (image2 for files, *_pipe for content-sniffed streams).
_IMAGE_DEMUXERS = ("image2", "_pipe", "webp", "gif_pipe")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class MediaInfo:
    """What `probe_media` found in a file. Sizes in pixels after rotation metadata, times in seconds."""

    path: str
    kind: str  # "image" or "video"
    width: int
    height: int
    duration_s: float  # 0 for images
    source_fps: float  # average rate reported by the container (0 when unknown)
    video_codec: str
    has_audio: bool
    audio_sample_rate: int  # 0 without audio
    rotation_deg: int  # container display rotation ffmpeg applies while decoding


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes); upload the video or photo again")


def _parse_duration(text: str) -> float:
    match = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if not match:
        return 0.0
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def probe_media(path: str | Path) -> MediaInfo:
    """Read a file's streams with `ffmpeg -i` and decide by content whether it is an image or a video.

    Raises FileNotFoundError for a missing file and ValueError (a readable sentence) for an empty, corrupt or
    unreadable file, or one without a picture.
    """
    path = Path(path)
    _check_file(path)
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True, errors="replace"
    )
    text = result.stderr
    input_match = re.search(r"Input #0, ([^,]+(?:,[^,]+)*?), from", text)
    video_match = re.search(r"Stream #0:\d+[^:]*: Video: (\w+)[^\n]*?, (\d{2,5})x(\d{2,5})", text)
    if input_match is not None and video_match is None:
        raise ValueError(f"{path.name} has no picture (audio only?); a video or a photo is needed")
    if input_match is None or video_match is None:
        last_line = text.strip().splitlines()[-1] if text.strip() else "no output"
        raise ValueError(f"{path.name} is not a readable video or image (corrupt or unsupported file: {last_line})")
    demuxer = input_match.group(1)
    codec, width, height = video_match.group(1), int(video_match.group(2)), int(video_match.group(3))
    rotation_match = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", text)
    rotation = int(round(float(rotation_match.group(1)))) % 360 if rotation_match else 0
    if rotation in (90, 270):
        width, height = height, width
    fps_match = re.search(r"Video: [^\n]*?, (\d+(?:\.\d+)?) fps", text)
    audio_match = re.search(r"Stream #0:\d+[^:]*: Audio: [^\n]*?(\d+) Hz", text)
    still_codecs = ("mjpeg", "png", "bmp", "webp", "tiff", "jpeg2000", "gif")
    is_image = any(name in demuxer for name in _IMAGE_DEMUXERS) or (
        codec in still_codecs and _parse_duration(text) <= 0.05 and audio_match is None
    )
    return MediaInfo(
        path=str(path),
        kind="image" if is_image else "video",
        width=width,
        height=height,
        duration_s=0.0 if is_image else _parse_duration(text),
        source_fps=float(fps_match.group(1)) if fps_match else 0.0,
        video_codec=codec,
        has_audio=audio_match is not None and not is_image,
        audio_sample_rate=int(audio_match.group(1)) if audio_match and not is_image else 0,
        rotation_deg=rotation,
    )


def require_video(info: MediaInfo, min_seconds: float = MIN_VIDEO_SECONDS) -> None:
    """Raise a clear ValueError unless `info` is a video at least `min_seconds` long."""
    if info.kind != "video":
        raise ValueError(f"{Path(info.path).name} is a still image, but a video was expected (use the photo path)")
    if info.duration_s < min_seconds:
        raise ValueError(
            f"{Path(info.path).name} is {info.duration_s:.2f} s long; a training video needs at least "
            f"{min_seconds:g} s ({RECOMMENDED_VIDEO_SECONDS:g}-60 s recommended)"
        )


TURN_FILTERS = {0: "", 90: ",transpose=clock", 180: ",hflip,vflip", 270: ",transpose=cclock"}


def iter_video_frames(
    path: str | Path, fps: float = 25.0, max_seconds: float | None = None, info: MediaInfo | None = None,
    turn: int = 0,
) -> Iterator[np.ndarray]:
    """Yield frames [H, W, 3] uint8 RGB at a constant `fps` (ffmpeg's fps filter: frame i = time i / fps, the
    picture on screen at that time; rotation metadata applied), then turned `turn` degrees clockwise (0, 90,
    180, 270: for files filmed sideways without rotation metadata, see `avatar.preprocess.upright_turn`).

    Streams through a pipe, so a long clip never sits in memory whole. Raises ValueError if ffmpeg fails
    before producing a single frame (a corrupt file).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if turn not in TURN_FILTERS:
        raise ValueError(f"turn must be one of {sorted(TURN_FILTERS)} degrees, got {turn}")
    info = info or probe_media(path)
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path)]
    if max_seconds is not None:
        command += ["-t", f"{max_seconds:.3f}"]
    # start_time=0: frame i shows container time i / fps, the clock the audio track starts on (a VFR clip's
    # first picture may come 33 ms after its first audio sample).
    command += ["-an", "-sn", "-vf", f"fps={fps}:start_time=0{TURN_FILTERS[turn]}", "-f", "rawvideo", "-pix_fmt",
                "rgb24", "-"]
    height, width = (info.width, info.height) if turn in (90, 270) else (info.height, info.width)
    frame_bytes = width * height * 3
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    count = 0
    try:
        assert process.stdout is not None
        while True:
            buffer = process.stdout.read(frame_bytes)
            if len(buffer) < frame_bytes:
                break
            count += 1
            yield np.frombuffer(buffer, np.uint8).reshape(height, width, 3)
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate()
    if count == 0:
        message = stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"could not decode any frame of {Path(path).name}: {message[-1] if message else 'no output'}")


def decode_video(path: str | Path, fps: float = 25.0, max_seconds: float | None = None) -> np.ndarray:
    """All frames [T, H, W, 3] uint8 RGB at a constant `fps` (see `iter_video_frames`). Use for short clips."""
    info = probe_media(path)
    require_video(info, min_seconds=0.0)
    return np.stack(list(iter_video_frames(path, fps, max_seconds, info)))


def load_image(path: str | Path) -> np.ndarray:
    """One photo as [H, W, 3] uint8 RGB (EXIF orientation applied). ValueError for a video or unreadable file."""
    import cv2

    path = Path(path)
    info = probe_media(path)
    if info.kind != "image":
        raise ValueError(f"{path.name} is a video ({info.duration_s:.1f} s), but a photo was expected")
    image = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if image is None:  # formats OpenCV lacks but ffmpeg reads (e.g. some WebP/GIF): one frame through ffmpeg
        result = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
             "-pix_fmt", "rgb24", "-"],
            capture_output=True,
        )
        if len(result.stdout) != info.width * info.height * 3:
            raise ValueError(f"{path.name} could not be decoded as an image (corrupt file?)")
        return np.frombuffer(result.stdout, np.uint8).reshape(info.height, info.width, 3).copy()
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def extract_audio(
    path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None
) -> np.ndarray | None:
    """The first audio track as mono float32 [S] at `sample_rate` (channels averaged), or None without audio."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    info = probe_media(path)
    if not info.has_audio:
        return None
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path)]
    if max_seconds is not None:
        command += ["-t", f"{max_seconds:.3f}"]
    command += ["-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        raise ValueError(f"could not decode the audio of {Path(path).name}: {result.stderr.decode(errors='replace')}")
    return np.frombuffer(result.stdout, np.float32).copy()


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write mono float32 [S] audio as a 32-bit float WAV (IEEE float; readable by scipy, soundfile, ffmpeg)."""
    from scipy.io import wavfile

    if waveform.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {waveform.shape}")
    wavfile.write(str(path), int(sample_rate), waveform.astype(np.float32))
