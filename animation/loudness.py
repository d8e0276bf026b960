"""Per-frame mouth openness: the visemes' jaw opening, scaled by how loud the speech is at that frame.

Visemes say which shape the mouth makes; loudness says how much: shouted vowels open the jaw wider than
murmured ones, and a phone that the timing places over silence (a timing error, a breath) should not open
the mouth at all. The level is the RMS of the waveform in a window centred on each frame, in dB, normalised
robustly per clip: its `peak_percentile` over non-silent frames maps to 1 and `dynamic_range_db` below it to
0, so the result does not depend on the recording gain and a few clicks cannot set the scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from animation.visemes import VISEMES, shape_table


@dataclass(frozen=True)
class OpennessOptions:
    """window_frames: RMS window length in frame periods; dynamic_range_db: level range mapped to 0..1;
    peak_percentile: percentile of the non-silent frame levels that maps to full loudness;
    silence_dbfs: absolute level (dB re full scale 1.0) under which a frame counts as silent;
    gamma: exponent on the normalised level (< 1 lifts quieter syllables)."""

    window_frames: float = 1.5
    dynamic_range_db: float = 30.0
    peak_percentile: float = 95.0
    silence_dbfs: float = -55.0
    gamma: float = 0.6

    def __post_init__(self) -> None:
        if self.window_frames <= 0 or self.dynamic_range_db <= 0 or self.gamma <= 0:
            raise ValueError("window_frames, dynamic_range_db and gamma must be positive")
        if not 0 < self.peak_percentile <= 100:
            raise ValueError(f"peak_percentile must be in (0, 100], got {self.peak_percentile}")


def frame_rms(waveform: np.ndarray, sample_rate: int, fps: float, n_frames: int,
              window_frames: float = 1.5) -> np.ndarray:
    """RMS of `waveform` [S] in a window of `window_frames` frame periods centred on each frame -> [T].

    Samples outside the waveform count as zeros (audio shorter than the video is silent at the end).
    """
    wave = np.asarray(waveform, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {wave.shape}")
    if sample_rate <= 0 or not fps > 0:
        raise ValueError(f"sample_rate and fps must be positive, got {sample_rate} and {fps}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("waveform contains NaN or infinite samples")
    energy = np.concatenate([[0.0], np.cumsum(wave * wave)])
    centres = (np.arange(int(n_frames)) + 0.5) * sample_rate / float(fps)
    half = 0.5 * window_frames * sample_rate / float(fps)
    lo = np.clip(np.round(centres - half).astype(np.int64), 0, len(wave))
    hi = np.clip(np.round(centres + half).astype(np.int64), 0, len(wave))
    length = max(2.0 * half, 1.0)
    return np.sqrt(np.maximum(energy[hi] - energy[lo], 0.0) / length)


def loudness_gain(rms: np.ndarray, options: OpennessOptions | None = None) -> np.ndarray:
    """Per-frame RMS [T] -> loudness in 0..1 (0 for silent frames), normalised per clip as the module says."""
    options = options or OpennessOptions()
    level = 20.0 * np.log10(np.maximum(np.asarray(rms, dtype=np.float64), 1e-12))
    voiced = level > options.silence_dbfs
    if not voiced.any():
        return np.zeros_like(level)
    peak = np.percentile(level[voiced], options.peak_percentile)
    norm = np.clip((level - (peak - options.dynamic_range_db)) / options.dynamic_range_db, 0.0, 1.0)
    gain = norm ** options.gamma
    gain[~voiced] = 0.0
    return gain


def mouth_openness(weights: np.ndarray, waveform: np.ndarray, sample_rate: int, fps: float,
                   options: OpennessOptions | None = None) -> np.ndarray:
    """Mouth openness per frame in 0..1 -> [T].

    weights: [T, n_visemes] viseme weights (rows summing to 1, e.g. from `viseme_weights`); waveform: [S]
    mono samples of the same clip, starting at frame 0. Openness = (weights @ jaw_open) * loudness gain, so
    silence (jaw_open 0) and silent audio (gain 0) both give a closed mouth.
    """
    options = options or OpennessOptions()
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(VISEMES):
        raise ValueError(f"weights must be [T, {len(VISEMES)}], got shape {weights.shape}")
    if np.any(weights < -1e-9) or not np.allclose(weights.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("weights rows must be non-negative and sum to 1")
    jaw = weights @ shape_table()[:, 0]
    gain = loudness_gain(frame_rms(waveform, sample_rate, fps, len(weights), options.window_frames), options)
    return np.clip(jaw * gain, 0.0, 1.0)
