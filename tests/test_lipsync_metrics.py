"""Lip-sync metrics: mouth-opening curve, correlation, and LMD after similarity alignment."""
from __future__ import annotations

import numpy as np
import pytest

from animation.lipsync_metrics import (LIP_LANDMARKS, lip_landmark_distance, mouth_open_curve, open_correlation,
                                       similarity_align)


def _faces(t: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(100, 300, (478, 2))
    base[33], base[263] = (150, 200), (250, 200)  # inter-ocular distance 100 px
    faces = np.repeat(base[None], t, 0)
    faces[:, 14, 1] = faces[:, 13, 1] + np.linspace(0, 30, t)  # the mouth opens over time
    return faces


def test_mouth_open_curve_is_gap_over_eye_distance():
    faces = _faces()
    gap = np.linalg.norm(faces[:, 13] - faces[:, 14], axis=-1)
    np.testing.assert_allclose(mouth_open_curve(faces), gap / 100.0)
    with pytest.raises(ValueError, match="478"):
        mouth_open_curve(np.zeros((3, 10, 2)))


def test_correlation():
    a = np.sin(np.linspace(0, 6, 50))
    assert open_correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert open_correlation(a, -a) == pytest.approx(-1.0)
    b = a.copy()
    b[3] = np.nan
    assert open_correlation(a, b) == pytest.approx(1.0)


def test_lmd_ignores_a_similarity_transform_and_measures_lip_error():
    real = _faces()
    angle, scale, shift = 0.2, 1.3, np.array([15.0, -7.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = scale * real @ rotation.T + shift
    assert lip_landmark_distance(moved, real) == pytest.approx(0.0, abs=1e-9)
    s, r, t = similarity_align(moved[:, :][0], real[0])
    assert s == pytest.approx(1 / scale)
    wrong = real.copy()
    wrong[:, list(LIP_LANDMARKS), 1] += 3.0  # every lip point 3 px off = 3 % of the eye distance
    assert lip_landmark_distance(wrong, real) == pytest.approx(3.0, rel=1e-6)
