"""The mesh's mouth opening as a function of the expression coefficients, and the directions in coefficient space
that move it: what the audio -> mouth model (`animation.mouth_model`) measures, widens and calibrates.

- `opening_curve`: inner-lip gap (landmarks 13-14) over the inter-ocular distance (33-263) of the mesh, the
  same quantity `animation.lipsync_metrics.mouth_open_curve` reads off FaceMesh tracks;
- `opening_direction`: how this person's coefficients move as the mouth opens (least squares over their frames);
- `opening_gradient`: how the opening changes per unit of each coefficient around a face (its linearisation);
- `opening_gain`: how much further than least squares the driven mouth opens and closes.
"""
from __future__ import annotations

import numpy as np

from animation.lipsync_metrics import EYE_LEFT, EYE_RIGHT, LOWER_INNER, UPPER_INNER


def opening_curve(coeffs: np.ndarray, neutral: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Inner-lip gap over inter-ocular distance -> [T], from coefficients [T, K] in `basis` [K, 478, 3]."""
    neutral = np.asarray(neutral, dtype=np.float64)
    basis = np.asarray(basis, dtype=np.float64)
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if neutral.shape != (478, 3) or basis.ndim != 3 or basis.shape[1:] != (478, 3) \
            or coeffs.ndim != 2 or coeffs.shape[1] != basis.shape[0]:
        raise ValueError(f"need coeffs [T, K], neutral [478, 3], basis [K, 478, 3]; got {coeffs.shape}, "
                         f"{neutral.shape}, {basis.shape}")
    points = neutral[None, [UPPER_INNER, LOWER_INNER, EYE_RIGHT, EYE_LEFT]] + np.einsum(
        "tk,kpc->tpc", coeffs, basis[:, [UPPER_INNER, LOWER_INNER, EYE_RIGHT, EYE_LEFT]])
    return np.linalg.norm(points[:, 0] - points[:, 1], axis=-1) / np.linalg.norm(points[:, 2] - points[:, 3], axis=-1)


def opening_direction(coeffs: np.ndarray, opening: np.ndarray, centre: np.ndarray, neutral: np.ndarray,
                      basis: np.ndarray) -> np.ndarray:
    """How a face's coefficients move as its mouth opens -> [K]: the least-squares slope of each coefficient on the
    mesh opening over frames (coeffs [T, K], opening [T]), scaled so that a unit step along it from `centre` [K]
    opens the mesh by one unit (a person's own way of opening, jaw and lips together, not just the lip points)."""
    coeffs, opening = np.asarray(coeffs, np.float64), np.asarray(opening, np.float64)
    if coeffs.ndim != 2 or opening.shape != coeffs.shape[:1] or opening.var() < 1e-12:
        raise ValueError(f"need coeffs [T, K] and a moving opening [T], got {coeffs.shape} and {opening.shape}")
    direction = ((coeffs - coeffs.mean(0)) * (opening - opening.mean())[:, None]).mean(0) / opening.var()
    step = 0.01
    change = np.diff(opening_curve(np.stack([centre, centre + step * direction]), neutral, basis))[0]
    return direction * step / change if abs(change) > 1e-9 else direction


def opening_gradient(centre: np.ndarray, neutral: np.ndarray, basis: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """d opening / d coefficient at `centre` [K] (central differences of `opening_curve`) -> [K]: the opening of
    a face near `centre` is opening(centre) + gradient . (coeffs - centre) to first order."""
    centre = np.asarray(centre, np.float64)
    if centre.ndim != 1:
        raise ValueError(f"centre must be [K], got {centre.shape}")
    moves = step * np.eye(len(centre))  # [K, K]
    return (opening_curve(centre + moves, neutral, basis) - opening_curve(centre - moves, neutral, basis)) / (2 * step)


def opening_gain(cv_open_r: float, max_gain: float) -> float:
    """How much more the driven mouth opens and closes than the least-squares scale -> 1 / sqrt(r) in [1, max_gain].

    Least squares (the calibration slope) is the scale that minimises the opening's squared error, which LMD
    rewards; it leaves a prediction with cross-validated r moving about r times as much as the real mouth, and
    the render and re-tracking add their own noise to whatever moves, so the smaller the motion the more of its
    rendered r is lost (tracked expressions shrunk to 0.6 of their motion lose 0.05-0.07 of rendered r). Matching
    the real spread (1 / r) removes that loss but enlarges every wrong opening. Chosen on the training windows
    (`bench.lipsync_windows --render`, 2026-12-05, bench/RESULTS.md): 1, 1 / sqrt(r) and 1 / r gave rendered
    opening r 0.614 / 0.629 / 0.645 (Obama) and 0.573 / 0.608 / 0.623 (German), LMD 2.28 / 2.33 / 2.45 % and
    1.61 / 1.61 / 1.64 % (1 / r in a prototype); scaling all coefficients by 1 / r instead of the opening alone
    gave 0.627 / 0.619 at 2.63 / 1.74 %."""
    return float(np.clip(1.0 / np.sqrt(max(float(cv_open_r), 1e-6)), 1.0, max_gain))
