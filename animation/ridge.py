"""Ridge regression in closed form on standardised inputs, and the leading-components restriction of its weights.

Pure numpy; `animation.mouth_model` fits its audio -> expression models with these (many strengths and folds
per fit, so a closed-form solve of the D x D normal equations beats an iterative solver).
"""
from __future__ import annotations

import numpy as np


def ridge_fit(x: np.ndarray, y: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression on standardised inputs: x [N, D], y [N, K] -> (mean [D], scale [D], W [D, K], b [K]).

    Minimises |((x - mean) / scale) W + b - y|^2 + strength |W|^2 (b unpenalised), solved in closed form.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need x [N, D] and y [N, K] with N >= 2, got {x.shape} and {y.shape}")
    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    xs = (x - mean) / scale
    intercept = y.mean(0)
    weights = np.linalg.solve(xs.T @ xs + strength * np.eye(x.shape[1]), xs.T @ (y - intercept))
    return mean, scale, weights, intercept


def keep_components(weights: np.ndarray, components: int) -> np.ndarray:
    """Ridge weights [D, K] with the columns past the leading `components` zeroed (0 = keep all) -> [D, K].

    Those coefficients then stay at their training mean (the intercept). The basis is a PCA, largest first: the
    leading components carry the jaw and lips, which the audio predicts; the small ones mostly add noise."""
    weights = np.array(weights, dtype=np.float64)
    if weights.ndim != 2 or components < 0:
        raise ValueError(f"need weights [D, K] and components >= 0, got {weights.shape} and {components}")
    if components:
        weights[:, components:] = 0.0
    return weights
