"""The mesh's mouth opening as a function of the expression coefficients, and the directions in coefficient space
that move it: what the audio -> mouth model (`animation.mouth_model`) measures, widens and calibrates.

- `opening_curve`: inner-lip gap (landmarks 13-14) over the inter-ocular distance (33-263) of the mesh, the
  same quantity `animation.lipsync_metrics.mouth_open_curve` reads off FaceMesh tracks;
- `opening_direction`: how this person's coefficients move as the mouth opens (least squares over their frames);
- `opening_gradient`: how the opening changes per unit of each coefficient around a face (its linearisation).
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
