"""Uploaded audio in: decode anything ffmpeg reads, downmix, resample, check, normalise and trim.

Users upload wav/mp3/flac/ogg/m4a files or the webm/opus a browser microphone records. We decode all of them
the same way, with the ffmpeg that `imageio-ffmpeg` ships (no ffprobe there), to float32 mono at the rate the
caller asks for (16 kHz for pocketsphinx). Then we reject what cannot be speech (empty, silent, too short, too
long), bring the loudness of the voiced part to a fixed level (so thresholds downstream see the same scale for a
whisper and a shout), and cut leading/trailing silence. The cut is reported (`trim_start_s`) so times found on
the trimmed audio can be mapped back to the original file.
"""
from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_DURATION_S = 600.0  # 10 minutes: longer uploads are refused (alignment and memory stay bounded)
MIN_SPEECH_S = 0.2  # shorter than one syllable: nothing to time
SILENCE_FLOOR_DBFS = -55.0  # loudest 20 ms frame quieter than this: the file is silent for our purpose
TARGET_RMS_DBFS = -20.0  # loudness of the voiced part after normalisation
PEAK_LIMIT = 0.98  # never louder than this after normalisation (no clipping)
FRAME_S = 0.02  # energy frame for trimming and loudness
TRIM_RANGE_DB = 40.0  # frames this far below the loudest frame count as silence (trimming, loudness)
NOISE_MARGIN_DB = 12.0  # when trimming, frames less than this above the noise floor also count as silence
MIN_TRIM_RANGE_DB = 20.0  # ... but the trim threshold stays at least this far below the loudest frame
TRIM_MARGIN_S = 0.1  # keep this much audio before the first and after the last voiced frame


@dataclass(frozen=True)
class AudioOptions:
    """How to prepare uploaded audio (per-call options)."""

    target_sr: int = 16000
    normalise: bool = True
    trim: bool = True
    max_duration_s: float = MAX_DURATION_S


@dataclass
class PreparedAudio:
    """Decoded, checked audio. `trim_start_s` is where `waveform[0]` lies in the original file (seconds)."""

    waveform: np.ndarray  # [S] float32, mono
    sample_rate: int
    trim_start_s: float
    original_duration_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / float(self.sample_rate)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def decode_audio(path: str | Path, target_sr: int = 16000, max_duration_s: float = MAX_DURATION_S
                 ) -> tuple[np.ndarray, list[str]]:
    """Decode the first audio stream of `path` to float32 mono at `target_sr` Hz (ffmpeg's downmix).

    Returns (waveform [S], notes). Raises FileNotFoundError for a missing file and ValueError for files that are
    empty, not audio, damaged beyond decoding, or longer than `max_duration_s` seconds.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name}: the file is empty (0 bytes)")
    if target_sr < 8000 or target_sr > 96000:
        raise ValueError(f"target sample rate must be 8000-96000 Hz, got {target_sr}")
    # Decode a little past the limit: enough to tell "too long" without decoding an hour of audio.
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-i", str(path), "-map", "0:a:0",
               "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(target_sr), "-t", f"{max_duration_s + 1.0:.3f}",
               "-f", "f32le", "-"]
    result = subprocess.run(command, capture_output=True, timeout=300)
    errors = result.stderr.decode("utf-8", "replace").strip()
    samples = np.frombuffer(result.stdout, dtype=np.float32)
    if result.returncode != 0 or samples.size == 0:
        if "matches no streams" in errors or "does not contain any stream" in errors:
            raise ValueError(f"{path.name}: the file has no audio track")
        reason = errors.splitlines()[-1] if errors else "ffmpeg decoded no audio"
        raise ValueError(f"{path.name}: could not decode audio (not an audio file, or corrupt/truncated): "
                         f"{reason}")
    notes = []
    if errors:
        # ffmpeg decoded something but complained: typically a truncated or partly damaged file.
        notes.append(f"{path.name}: the decoder reported errors (file may be truncated or damaged); "
                     f"used the {samples.size / target_sr:.2f} s it could read. First error: "
                     f"{errors.splitlines()[0][:200]}")
    if samples.size > max_duration_s * target_sr:
        raise ValueError(f"{path.name}: audio is longer than the {max_duration_s:.0f} s limit; "
                         f"cut it into shorter pieces")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{path.name}: decoded audio contains NaN/inf samples (corrupt file)")
    return samples.copy(), notes


def frame_rms_dbfs(waveform: np.ndarray, sample_rate: int, frame_s: float = FRAME_S) -> np.ndarray:
    """RMS level in dBFS of consecutive `frame_s` frames of waveform [S] -> [frames] (last partial frame kept)."""
    hop = max(1, int(round(frame_s * sample_rate)))
    n_frames = int(np.ceil(len(waveform) / hop))
    padded = np.zeros(n_frames * hop, dtype=np.float64)
    padded[: len(waveform)] = waveform
    rms = np.sqrt(np.mean(padded.reshape(n_frames, hop) ** 2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def check_not_silent(waveform: np.ndarray, sample_rate: int, name: str = "audio") -> None:
    """Raise ValueError when waveform [S] is silent/near-silent or holds too little sound to time."""
    levels = frame_rms_dbfs(waveform, sample_rate)
    if levels.size == 0 or levels.max() < SILENCE_FLOOR_DBFS:
        loudest = levels.max() if levels.size else -200.0
        raise ValueError(f"{name}: the audio is silent or nearly silent (loudest 20 ms frame {loudest:.0f} dBFS, "
                         f"need at least {SILENCE_FLOOR_DBFS:.0f} dBFS); check the microphone")
    voiced = levels > levels.max() - TRIM_RANGE_DB
    if voiced.sum() * FRAME_S < MIN_SPEECH_S:
        raise ValueError(f"{name}: too little sound to time ({voiced.sum() * FRAME_S:.2f} s above the noise; "
                         f"need at least {MIN_SPEECH_S} s of speech)")


def normalise_loudness(waveform: np.ndarray, sample_rate: int, target_dbfs: float = TARGET_RMS_DBFS
                       ) -> np.ndarray:
    """Scale waveform [S] so its voiced frames have RMS `target_dbfs`, then limit the peak to PEAK_LIMIT.

    "Voiced" = frames within TRIM_RANGE_DB of the loudest frame, so long pauses don't inflate the gain.
    """
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {waveform.shape}")
    levels = frame_rms_dbfs(waveform, sample_rate)
    voiced = levels > levels.max() - TRIM_RANGE_DB
    voiced_power = np.mean(10.0 ** (levels[voiced] / 10.0))
    gain = 10.0 ** (target_dbfs / 20.0) / np.sqrt(max(voiced_power, 1e-20))
    peak = float(np.max(np.abs(waveform))) * gain
    if peak > PEAK_LIMIT:
        gain *= PEAK_LIMIT / peak
    return (waveform * gain).astype(np.float32)


def trim_silence(waveform: np.ndarray, sample_rate: int, margin_s: float = TRIM_MARGIN_S
                 ) -> tuple[np.ndarray, float]:
    """Cut leading/trailing silence, keeping `margin_s` of context.

    Silence = frames below the noise floor (10th percentile of frame levels) + NOISE_MARGIN_DB, or below
    loudest - TRIM_RANGE_DB when the recording is clean; the threshold never comes closer than
    MIN_TRIM_RANGE_DB to the loudest frame (a file that is nearly all speech keeps its quiet phones).
    Returns (trimmed waveform [S'], start offset in seconds of the cut within the input).
    """
    levels = frame_rms_dbfs(waveform, sample_rate)
    loudest = levels.max()
    noise_floor = np.percentile(levels, 10)
    threshold = min(max(noise_floor + NOISE_MARGIN_DB, loudest - TRIM_RANGE_DB, SILENCE_FLOOR_DBFS),
                    loudest - MIN_TRIM_RANGE_DB)
    voiced = np.flatnonzero(levels > threshold)
    if voiced.size == 0:
        return waveform, 0.0
    hop = int(round(FRAME_S * sample_rate))
    margin = int(round(margin_s * sample_rate))
    start = max(0, voiced[0] * hop - margin)
    end = min(len(waveform), (voiced[-1] + 1) * hop + margin)
    return waveform[start:end], start / float(sample_rate)


def prepare_waveform(waveform: np.ndarray, sample_rate: int, options: AudioOptions = AudioOptions(),
                     name: str = "audio") -> PreparedAudio:
    """Check, normalise and trim an in-memory waveform [S] already at `sample_rate` (no resampling here)."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"{name}: waveform must be mono [S], got shape {waveform.shape}")
    if waveform.size == 0:
        raise ValueError(f"{name}: the audio is empty")
    if not np.all(np.isfinite(waveform)):
        raise ValueError(f"{name}: waveform contains NaN or inf samples")
    duration = waveform.size / float(sample_rate)
    if duration > options.max_duration_s:
        raise ValueError(f"{name}: audio is {duration:.0f} s long, over the {options.max_duration_s:.0f} s limit")
    check_not_silent(waveform, sample_rate, name)
    trim_start = 0.0
    if options.trim:
        waveform, trim_start = trim_silence(waveform, sample_rate)
    if options.normalise:
        waveform = normalise_loudness(waveform, sample_rate)
    return PreparedAudio(waveform=waveform, sample_rate=sample_rate, trim_start_s=trim_start,
                         original_duration_s=duration)


def prepare_audio(path: str | Path, options: AudioOptions = AudioOptions()) -> PreparedAudio:
    """Decode an uploaded file and prepare it (see `prepare_waveform`); decoder warnings land in `notes`."""
    samples, notes = decode_audio(path, options.target_sr, options.max_duration_s)
    prepared = prepare_waveform(samples, options.target_sr, options, name=Path(path).name)
    prepared.notes = notes + prepared.notes
    return prepared


def load_audio(path: str | Path, target_sr: int = 16000) -> tuple[np.ndarray, int]:
    """Decode, check, loudness-normalise and trim `path`: (waveform float32 [S], sample rate in Hz).

    Use `prepare_audio` when you also need the trim offset (to map times back to the original file).
    """
    prepared = prepare_audio(path, AudioOptions(target_sr=target_sr))
    return prepared.waveform, prepared.sample_rate


def resample_to(waveform: np.ndarray, sample_rate: int, target_rate: int = 16000) -> np.ndarray:
    """Polyphase resampling of [S] from sample_rate to target_rate (float32)."""
    if sample_rate == target_rate:
        return np.asarray(waveform, np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    common = gcd(int(sample_rate), int(target_rate))
    return resample_poly(waveform, target_rate // common, sample_rate // common).astype(np.float32)


def write_wav_pcm16(path: Path, waveform: np.ndarray,  # [S] float in [-1, 1]
                    sample_rate: int) -> None:
    """Mono float waveform [S] in [-1, 1] -> 16-bit PCM WAV."""
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {waveform.shape}")
    pcm = np.clip(np.round(waveform * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
