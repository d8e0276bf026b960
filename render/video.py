"""MP4 writing and checking with the ffmpeg binary that `imageio-ffmpeg` ships (no ffprobe needed).

`VideoWriter` pipes raw RGB frames into ffmpeg as they are rendered (memory stays at one batch) and muxes
the audio: H.264 yuv420p + AAC, `+faststart` so browsers can play it while it downloads. The audio is cut or
padded to exactly frames / fps seconds and both streams start at 0, so they start and end together.
`probe` reads stream facts back by parsing `ffmpeg -i` (and counts frames by decoding with `-f null`).
"""
from __future__ import annotations

import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CRF = 20
DEFAULT_PRESET = "veryfast"  # 512x512 encodes several times faster than real time on one core


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> Path:
    """Mono float waveform [S] in [-1, 1] -> 16-bit PCM WAV."""
    waveform = np.asarray(waveform, dtype=np.float64)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got {waveform.shape}")
    pcm = (np.clip(np.nan_to_num(waveform), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        handle.writeframes(pcm.tobytes())
    return Path(path)


def fit_audio(waveform: np.ndarray, sample_rate: int, n_frames: int, fps: float) -> np.ndarray:
    """Cut or zero-pad the audio to n_frames / fps seconds -> [S']."""
    samples = int(round(n_frames / fps * sample_rate))
    out = np.zeros(samples, np.float32)
    waveform = np.asarray(waveform, dtype=np.float32)
    out[: min(samples, len(waveform))] = waveform[:samples]
    return out


class VideoWriter:
    """Stream frames into an MP4: `with VideoWriter(path, w, h, fps, audio, sr) as out: out.write(batch)`.

    Frames are uint8 [H, W, 3] or [B, H, W, 3]; width and height must be even (yuv420p). The file appears only
    when the writer closes cleanly (written to a temporary name first), so a failed job leaves no broken MP4.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, waveform: np.ndarray | None = None,
                 sample_rate: int = 16000, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET,
                 expected_frames: int | None = None) -> None:
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise ValueError(f"H.264 yuv420p needs an even frame size, got {width}x{height}")
        if not 1 <= fps <= 240:
            raise ValueError(f"fps must be in [1, 240], got {fps}")
        self.path = Path(path)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.waveform, self.sample_rate = waveform, int(sample_rate)
        self.expected_frames = expected_frames
        self.frames_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._scratch = tempfile.TemporaryDirectory(prefix="video-")
        self._partial = self.path.with_name(f".{self.path.stem}.partial.mp4")
        self._video_only = Path(self._scratch.name) / "video.mp4"
        command = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-s", f"{self.width}x{self.height}", "-r", f"{self.fps}", "-i", "-",
                   "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                   "-r", f"{self.fps}", str(self._video_only)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [B, {self.height}, {self.width}, 3], got {frames.dtype} "
                             f"{list(frames.shape)}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError:
            raise RuntimeError(f"ffmpeg stopped accepting frames: {self._stderr()}") from None
        self.frames_written += len(frames)

    def _stderr(self) -> str:
        try:
            return self._process.stderr.read().decode(errors="replace")[-800:]
        except (ValueError, OSError):
            return ""

    def close(self) -> Path:
        """Finish encoding and mux the audio; returns the final path."""
        self._process.stdin.close()
        code = self._process.wait()
        if code != 0:
            raise RuntimeError(f"ffmpeg failed to encode {self.path}: {self._stderr()}")
        if self.frames_written == 0:
            raise ValueError("no frames were written")
        if self.expected_frames is not None and self.frames_written != self.expected_frames:
            raise RuntimeError(f"wrote {self.frames_written} frames, expected {self.expected_frames}")
        command = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(self._video_only)]
        if self.waveform is not None and np.asarray(self.waveform).size:
            wav = write_wav(Path(self._scratch.name) / "audio.wav",
                            fit_audio(self.waveform, self.sample_rate, self.frames_written, self.fps), self.sample_rate)
            command += ["-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "128k"]
        command += ["-c:v", "copy", "-movflags", "+faststart", "-f", "mp4", str(self._partial)]
        result = subprocess.run(command, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to mux {self.path}: {result.stderr.decode(errors='replace')[-800:]}")
        self._partial.replace(self.path)
        self._scratch.cleanup()
        return self.path

    def abort(self) -> None:
        try:
            self._process.stdin.close()
        except OSError:
            pass
        self._process.kill()
        self._process.wait()
        self._partial.unlink(missing_ok=True)
        self._scratch.cleanup()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


@dataclass
class StreamInfo:
    """What `ffmpeg -i` says about a media file."""

    duration_s: float | None
    video_codec: str | None
    pix_fmt: str | None
    width: int | None
    height: int | None
    fps: float | None
    audio_codec: str | None
    audio_sample_rate: int | None
    video_start_s: float | None
    audio_start_s: float | None
    num_frames: int | None = None


def probe(path: str | Path, count_frames: bool = True) -> StreamInfo:
    """Parse `ffmpeg -i PATH` (and, with count_frames, decode once to count the video frames)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True).stderr.decode(errors="replace")
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    video = re.search(r"Stream #\S+?(?:\[\w+\])?(?:\(\w+\))?: Video: (\w+)[^,\n]*, (\w+)[^\n]*?, (\d+)x(\d+)[^\n]*?, ([\d.]+) fps", text)
    audio = re.search(r"Stream #\S+?(?:\[\w+\])?(?:\(\w+\))?: Audio: (\w+)[^\n]*?, (\d+) Hz", text)
    info = StreamInfo(
        duration_s=int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]) if duration else None,
        video_codec=video[1] if video else None, pix_fmt=video[2] if video else None,
        width=int(video[3]) if video else None, height=int(video[4]) if video else None,
        fps=float(video[5]) if video else None, audio_codec=audio[1] if audio else None,
        audio_sample_rate=int(audio[2]) if audio else None, video_start_s=None, audio_start_s=None)
    if count_frames and video:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                             capture_output=True).stderr.decode(errors="replace")
        counts = re.findall(r"frame=\s*(\d+)", out)
        info.num_frames = int(counts[-1]) if counts else None
    starts = _stream_starts(path)
    info.video_start_s, info.audio_start_s = starts.get("video"), starts.get("audio")
    return info


def _stream_starts(path: Path) -> dict[str, float]:
    """Presentation time (seconds) of the first packet of the first video and audio streams, read from
    ffmpeg's `framecrc` listing of the remuxed packets (stream index, dts, pts per packet; time bases in the
    header)."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:v:0?",
                           "-map", "0:a:0?", "-c", "copy", "-f", "framecrc", "-"], capture_output=True).stdout.decode()
    bases = {int(m[1]): int(m[2]) / int(m[3]) for m in re.finditer(r"#tb (\d+): (\d+)/(\d+)", text)}
    kinds = {int(m[1]): m[2] for m in re.finditer(r"#media_type (\d+): (\w+)", text)}
    starts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        stream, pts = int(fields[0]), int(fields[2])
        kind = kinds.get(stream, "video" if stream == 0 else "audio")
        if "Skip Samples" in line and pts < 0:
            pts += int(fields[3])  # the AAC encoder's priming packet: decoders drop it (edit list)
        if kind not in starts:
            starts[kind] = pts * bases.get(stream, 0.0)
    return starts
