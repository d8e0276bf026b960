"""How a recording's mouth lines up with its sound: the lag of a per-frame audio or phone signal behind the
tracked mouth opening, measured by cross-correlation over the training frames (`animation.mouth_model` starts its
delay search from `estimate_delay` and moves the phone track by `measure_phone_shift`)."""
from __future__ import annotations

import numpy as np

from animation.visemes import VISEMES, shape_table


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two curves [n]; 0 when either is (nearly) constant or n < 3."""
    if len(a) < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def estimate_delay(loudness: np.ndarray, opening: np.ndarray, valid: np.ndarray, min_lag: int, max_lag: int) -> int:
    """Lag d (frames) maximising corr(loudness[t + d], opening[t]) over valid frames; loudness, opening,
    valid: [T]."""
    best_lag, best_r = 0, -np.inf
    t = len(opening)
    for lag in range(min_lag, max_lag + 1):
        frames = np.arange(max(0, -lag), min(t, t - lag))
        frames = frames[valid[frames] & valid[frames + lag]]
        r = pearson(loudness[frames + lag], opening[frames])
        if r > best_r:
            best_lag, best_r = lag, r
    return best_lag


def measure_phone_shift(weights: np.ndarray, opening: np.ndarray, valid: np.ndarray, min_lag: int, max_lag: int,
                        speech_delay: int) -> int:
    """How far a recording's phone track lags its mouth beyond the natural lead -> frames.

    weights: [T, 15] viseme weights of the phones timed on its audio; opening, valid: [T]. The phones' generic
    jaw opening (weights x the generic shapes' jaw_open) is cross-correlated with the tracked opening
    (`estimate_delay`), less `speech_delay`: on the German clip (audio and picture in sync) that lag is one frame,
    the natural lead, and on the Obama clip five. Measured apart from the audio features' delay, which the
    cross-validation moves to where spectral features line up best (Obama 7): there the phones were two frames
    late, and a phone-based mouth two frames off loses a third of its correlation (0.46 -> 0.32 at lag 7).
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(VISEMES) or weights.shape[0] != len(opening):
        raise ValueError(f"weights must be [{len(opening)}, {len(VISEMES)}], got {weights.shape}")
    jaw = weights @ shape_table()[:, 0]
    return estimate_delay(jaw, opening, valid, min_lag, max_lag) - int(speech_delay)
