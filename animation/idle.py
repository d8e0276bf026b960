"""Life between the words: head motion, nods on stressed words, and blinks.

- Head motion comes from the avatar's own pose track (its training video), so the avatar moves the way the
  person moved: a stretch of the track's deviations from its mean pose, played forwards and backwards
  (ping-pong) as long as needed, low-passed so tracking noise never shows as jitter. A photo avatar has no
  track; it gets a slow sum of sines of about one degree instead.
- Nods: a small raised-cosine pitch dip at the loudest word onsets (prosody: where a speaker stresses).
- Blinks: about `rate_per_minute` a minute, at random but never closer than 1.2 s, each ~0.25 s with a fast
  close and a slower opening.
All functions are pure: same inputs and seed, same output.
"""
from __future__ import annotations

import numpy as np

BLINK_CLOSE_S = 0.08
BLINK_HOLD_S = 0.03
BLINK_OPEN_S = 0.15
MIN_BLINK_GAP_S = 1.2
NOD_DEGREES = 1.6
NOD_SECONDS = 0.45


def rotation_to_axis_angle(rotations: np.ndarray) -> np.ndarray:
    """[T, 3, 3] rotation matrices -> [T, 3] axis-angle vectors (radians)."""
    from scipy.spatial.transform import Rotation

    rotations = np.asarray(rotations, dtype=np.float64)
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
        raise ValueError(f"rotations must be [T, 3, 3], got {rotations.shape}")
    return Rotation.from_matrix(rotations).as_rotvec()


def axis_angle_to_rotation(vectors: np.ndarray) -> np.ndarray:
    """[T, 3] axis-angle (radians) -> [T, 3, 3]."""
    from scipy.spatial.transform import Rotation

    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[1] != 3:
        raise ValueError(f"axis-angle vectors must be [T, 3], got {vectors.shape}")
    return Rotation.from_rotvec(vectors).as_matrix() if len(vectors) else np.zeros((0, 3, 3))


def smooth(signal: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian low-pass along time of [T, ...] with edge padding (no phase lag)."""
    signal = np.asarray(signal, dtype=np.float64)
    if sigma_frames <= 0 or len(signal) < 2:
        return signal.copy()
    radius = int(np.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(signal[:1], radius, 0), signal, np.repeat(signal[-1:], radius, 0)])
    out = np.empty_like(signal)
    flat = padded.reshape(len(padded), -1)
    result = np.stack([np.convolve(flat[:, j], kernel, mode="valid") for j in range(flat.shape[1])], axis=1)
    out[...] = result.reshape(signal.shape)
    return out


def ping_pong(track: np.ndarray, n_frames: int, start: int) -> np.ndarray:
    """Frames of `track` [L, ...] from `start`, bouncing at both ends, for `n_frames` frames."""
    length = len(track)
    if length == 1:
        return np.repeat(track, n_frames, 0)
    period = 2 * (length - 1)
    phase = (start + np.arange(n_frames)) % period
    index = np.where(phase < length, phase, period - phase)
    return track[index]


def head_motion(rotations: np.ndarray, translations: np.ndarray, n_frames: int, fps: float, scale: float = 1.0,
                seed: int = 0, smooth_s: float = 0.12) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Idle head pose for `n_frames` frames from the avatar's pose track.

    rotations: [L, 3, 3] and translations: [L, 3] the training video's head poses. Returns (base axis-angle
    [3], base translation [3], rotation offsets [T, 3] radians, translation offsets [T, 3] metres); the pose
    at frame t is R(offset_t) R(base), base + translation offset_t. `scale` multiplies the offsets.
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    translations = np.asarray(translations, dtype=np.float64)
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3) or translations.shape != (len(rotations), 3):
        raise ValueError(f"pose track must be [L, 3, 3] and [L, 3], got {rotations.shape}, {translations.shape}")
    if len(rotations) == 0:
        raise ValueError("the avatar's pose track is empty")
    rng = np.random.default_rng(seed)
    base_rot = _mean_rotation(rotations)
    base_t = np.median(translations, axis=0)
    if len(rotations) >= max(8, int(fps)):
        from scipy.spatial.transform import Rotation

        relative = (Rotation.from_matrix(rotations) * Rotation.from_matrix(base_rot).inv()).as_rotvec()
        sigma = smooth_s * fps
        relative = smooth(relative, sigma)
        shift = smooth(translations - base_t, sigma)
        start = int(rng.integers(0, len(rotations)))
        rot_off = ping_pong(relative, n_frames, start)
        t_off = ping_pong(shift, n_frames, start)
    else:
        # A photo: slow, small sway (about a degree) from incommensurate sines with random phases.
        time = np.arange(n_frames) / fps
        periods = np.array([[7.3, 5.1, 9.7], [4.3, 6.7, 8.9]])
        phases = rng.uniform(0, 2 * np.pi, periods.shape)
        amplitude = np.deg2rad([0.9, 1.2, 0.5])  # pitch, yaw, roll about the camera axes
        rot_off = sum(np.sin(2 * np.pi * time[:, None] / periods[i] + phases[i]) for i in range(2)) * amplitude / 2
        t_off = np.zeros((n_frames, 3))
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(base_rot).as_rotvec(), base_t, rot_off * scale, t_off * scale


def _mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations [L, 3, 3] -> [3, 3]."""
    u, _, vt = np.linalg.svd(rotations.mean(0))
    mean = u @ vt
    if np.linalg.det(mean) < 0:
        u[:, -1] *= -1
        mean = u @ vt
    return mean


def nod_curve(word_starts_s: list[float], loudness: np.ndarray, fps: float, n_frames: int, max_nods_per_s: float = 0.4,
              degrees: float = NOD_DEGREES) -> np.ndarray:
    """Pitch offsets [T] (radians, positive = chin down in the camera frame's x axis) at stressed words.

    word_starts_s: onset times of words; loudness: [T] per-frame loudness 0..1. The loudest onsets (by the
    loudness over the next 0.2 s) get a nod, at most `max_nods_per_s` a second and never two within 1.5 s.
    """
    curve = np.zeros(n_frames)
    if not word_starts_s or n_frames == 0:
        return curve
    loudness = np.asarray(loudness, dtype=np.float64)
    span = max(1, int(round(0.2 * fps)))
    scored = []
    for start in word_starts_s:
        f = int(start * fps)
        if 0 <= f < n_frames:
            scored.append((float(loudness[f:f + span].mean()) if len(loudness) > f else 0.0, start))
    budget = max(1, int(max_nods_per_s * n_frames / fps))
    chosen: list[float] = []
    for score, start in sorted(scored, reverse=True):
        if score <= 0.3 or len(chosen) >= budget:
            break
        if all(abs(start - c) >= 1.5 for c in chosen):
            chosen.append(start)
    times = np.arange(n_frames) / fps
    for start in chosen:
        phase = (times - start) / NOD_SECONDS
        inside = (phase >= 0) & (phase <= 1)
        curve[inside] += np.deg2rad(degrees) * 0.5 * (1 - np.cos(2 * np.pi * phase[inside]))
    return curve


def blink_times(duration_s: float, rate_per_minute: float = 17.0, seed: int = 0) -> list[float]:
    """Blink onsets (seconds) in [0.5, duration - 0.3): gaps are 1.2 s plus an exponential with the rest of
    the mean gap, so the rate is `rate_per_minute` on average and blinks never bunch up."""
    if rate_per_minute <= 0 or duration_s <= 0.8:
        return []
    rng = np.random.default_rng(seed + 7919)
    mean_gap = 60.0 / rate_per_minute
    extra = max(mean_gap - MIN_BLINK_GAP_S, 0.1)
    times, t = [], float(rng.uniform(0.5, 0.5 + mean_gap))
    while t < duration_s - 0.3:
        times.append(t)
        t += MIN_BLINK_GAP_S + float(rng.exponential(extra))
    return times


def blink_curve(times_s: list[float], fps: float, n_frames: int) -> np.ndarray:
    """Lid closure [T] in 0..1 for blinks at `times_s`: fast close, short hold, slower opening (sampled at
    frame centres)."""
    centres = (np.arange(n_frames) + 0.5) / fps
    curve = np.zeros(n_frames)
    for start in times_s:
        x = centres - start
        closing = np.clip(x / BLINK_CLOSE_S, 0, 1)
        opening = np.clip(1 - (x - BLINK_CLOSE_S - BLINK_HOLD_S) / BLINK_OPEN_S, 0, 1)
        shape = np.where(x < BLINK_CLOSE_S + BLINK_HOLD_S, closing, opening)
        shape[(x < 0)] = 0
        curve = np.maximum(curve, np.sin(0.5 * np.pi * shape) ** 2)
    return curve
