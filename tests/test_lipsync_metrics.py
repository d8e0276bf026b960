"""Lip-sync metrics: mouth-opening curve, correlation, and LMD after similarity alignment."""
from __future__ import annotations

import numpy as np
import pytest

from animation.lipsync_metrics import (LIP_LANDMARKS, bootstrap_block_starts, interval_for_json, lip_landmark_distance,
                                       mouth_open_curve, open_correlation, open_r_interval, similarity_align)


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


def _correlated_curves(t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 'real' opening [t] and a noisy prediction of it [t] (r about 0.6)."""
    rng = np.random.default_rng(seed)
    real = np.convolve(rng.standard_normal(t + 8), np.ones(8) / 8, mode="valid")[:t]
    driven = real + np.convolve(rng.standard_normal(t + 4), np.ones(4) / 4, mode="valid")[:t] * 1.3 * real.std() / 0.5
    return driven, real


def test_open_r_interval_matches_a_plain_loop_over_the_same_blocks():
    driven, real = _correlated_curves(97, seed=int(np.random.default_rng().integers(1 << 30)))
    block, draws, seed = 10, 300, 5
    low, high = open_r_interval(driven, real, block=block, draws=draws, level=0.8, seed=seed)
    rs = []
    for starts in bootstrap_block_starts(len(real), block, draws, seed):
        frames = [f for start in starts for f in range(start, start + block)][:len(real)]
        rs.append(np.corrcoef(driven[frames], real[frames])[0, 1])
    assert (low, high) == pytest.approx(tuple(np.percentile(rs, [10, 90])), abs=1e-12)


def test_open_r_interval_brackets_r_and_narrows_with_more_frames():
    short = _correlated_curves(100, seed=1)
    long = _correlated_curves(2000, seed=1)
    low, high = open_r_interval(*short)
    assert low < open_correlation(*short) < high and high - low > 0.1
    low_long, high_long = open_r_interval(*long)
    assert low_long < open_correlation(*long) < high_long
    assert (high_long - low_long) < 0.5 * (high - low)
    same = short[1]
    assert open_r_interval(same, 3 * same + 1) == pytest.approx((1.0, 1.0))
    assert open_r_interval(short[0], short[1]) == open_r_interval(short[0], short[1])  # seeded


def test_open_r_interval_drops_untracked_frames_and_refuses_bad_input():
    driven, real = _correlated_curves(100, seed=2)
    gappy = real.copy()
    gappy[[5, 50]] = np.nan
    keep = np.isfinite(gappy)
    assert open_r_interval(driven, gappy) == open_r_interval(driven[keep], real[keep])
    assert np.isnan(open_r_interval(driven[:15], real[:15])).all()  # under two blocks
    assert interval_for_json((float("nan"), float("nan"))) is None
    assert interval_for_json((0.41234, 0.7)) == [0.412, 0.7]
    with pytest.raises(ValueError, match="one length"):
        open_r_interval(driven, real[:-1])
    with pytest.raises(ValueError, match="level"):
        open_r_interval(driven, real, level=1.0)
    with pytest.raises(ValueError, match="block"):
        bootstrap_block_starts(10, 20, 5)


def test_bilabial_minima_take_each_p_b_m_and_its_neighbouring_frames():
    from animation.lipsync_metrics import bilabial_minima
    from audio.speech import Segment

    fps = 25.0
    openings = np.full(50, 0.1)
    openings[9] = 0.004  # one frame before "M" (0.4-0.48 s: frames 10-11), within reach 1
    openings[30] = 0.0  # inside "AA": not a bilabial
    openings[41] = np.nan  # "B" (1.6-1.68 s: frames 40-41) keeps its finite neighbours
    phones = [Segment("sil", 0.0, 0.4), Segment("M", 0.4, 0.48), Segment("AA", 0.48, 1.6), Segment("B", 1.6, 1.68),
              Segment("sil", 1.68, 2.0)]
    np.testing.assert_allclose(bilabial_minima(openings, phones, "arpabet", fps), [0.004, 0.1])
    np.testing.assert_allclose(bilabial_minima(openings, phones, "arpabet", fps, reach=0), [0.1, 0.1])
    assert bilabial_minima(openings, phones[:1], "arpabet", fps).shape == (0,)
    with pytest.raises(ValueError):
        bilabial_minima(openings[:, None], phones, "arpabet", fps)


def test_shut_frames_count_the_closure_at_each_bilabial_and_runs_in_real_video():
    from animation.lipsync_metrics import bilabial_shut_frames, shut_run_lengths
    from audio.speech import Segment

    fps = 25.0
    openings = np.full(50, 0.1)
    openings[[9, 10, 11]] = 0.01  # "M" (frames 10-11) shut for three frames, one of them just before it
    openings[13] = 0.0  # outside the "M"'s window (frames 9-12)
    openings[[40, 41]] = [0.03, np.nan]  # "B" never shut: 0.03 > 0.02, NaN is not shut
    phones = [Segment("sil", 0.0, 0.4), Segment("M", 0.4, 0.48), Segment("AA", 0.48, 1.6), Segment("B", 1.6, 1.68),
              Segment("sil", 1.68, 2.0)]
    np.testing.assert_array_equal(bilabial_shut_frames(openings, phones, "arpabet", fps), [3, 0])
    np.testing.assert_array_equal(bilabial_shut_frames(openings, phones, "arpabet", fps, reach=0), [2, 0])
    np.testing.assert_array_equal(bilabial_shut_frames(openings, phones, "arpabet", fps, closed=0.05), [3, 1])

    runs = np.full(30, 0.1)
    runs[0:2] = 0.0  # a run at the start
    runs[5:8] = 0.01
    runs[10:22] = 0.0  # a pause
    runs[23] = np.nan
    runs[29] = 0.02  # a run at the end (0.02 counts as shut)
    np.testing.assert_array_equal(shut_run_lengths(runs), [2, 3, 12, 1])
    np.testing.assert_array_equal(shut_run_lengths(runs, longest=6), [2, 3, 1])
    assert shut_run_lengths(np.full(5, 0.1)).shape == (0,)
