"""Lip sync measured on video: track rendered and real frames with FaceMesh and compare the mouths.

- `mouth_open_curve`: inner-lip distance (landmarks 13-14) over the inter-ocular distance (outer eye corners
  33-263), per frame. `open_correlation`: Pearson r of two such curves. `open_r_interval`: how far that r could
  move on another stretch as long (a moving-block bootstrap; a 4-s tail is 100 frames, about 20 syllables).
- `lip_landmark_distance` (LMD): each rendered frame's landmarks are aligned to the real frame's by a
  similarity transform fitted on stable points (eye corners, nose bridge, forehead), then the mean distance
  of the 40 lip landmarks is taken, in % of the real inter-ocular distance, averaged over frames.
- `bilabial_minima` / `bilabial_shut_frames`: the smallest opening at each p, b and m of timed speech and how
  many frames read shut there (`CLOSED_LIPS`), to tell whether and for how long the lips shut; for speech whose
  phones are known (TTS), where no real video says how the mouth moved. `shut_run_lengths` gives the real video's
  closures to compare with.
- `lipsync_tail_motion` / `render_lipsync_tail`: the held-out tail of a training video driven by its audio
  alone (phones recognised from that audio; head poses from tracking), for `python app.py eval` and
  `bench.lipsync`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# The 40 distinct landmarks of MediaPipe's FACEMESH_LIPS (outer and inner lip contours).
LIP_LANDMARKS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
                 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)
# Points that do not move with expression: eye corners, nose bridge and tip, forehead.
STABLE_LANDMARKS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 10, 151, 9, 8)
UPPER_INNER, LOWER_INNER, EYE_RIGHT, EYE_LEFT = 13, 14, 33, 263
# An opening (inner-lip gap / eye distance) at or below this reads as shut lips: FaceMesh reads the lowest tenth of
# the shared clips' frames at 0.001-0.003, and half of them above 0.03 (German) and 0.09 (Obama)
CLOSED_LIPS = 0.02


def _check(landmarks: np.ndarray, name: str) -> np.ndarray:
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1] != 478 or landmarks.shape[2] not in (2, 3):
        raise ValueError(f"{name} must be [T, 478, 2|3] landmarks, got {landmarks.shape}")
    return landmarks[..., :2]


def mouth_open_curve(landmarks: np.ndarray) -> np.ndarray:
    """[T, 478, 2|3] pixels -> [T] inner-lip gap / inter-ocular distance (NaN where tracking failed)."""
    points = _check(landmarks, "landmarks")
    gap = np.linalg.norm(points[:, UPPER_INNER] - points[:, LOWER_INNER], axis=-1)
    eyes = np.linalg.norm(points[:, EYE_RIGHT] - points[:, EYE_LEFT], axis=-1)
    return gap / eyes


def _bilabial_windows(openings: np.ndarray, phones, phone_set: str, fps: float, reach: int) -> list[np.ndarray]:
    """The openings over each p/b/m phone's frames and `reach` frames either side, in the phones' order."""
    from animation.visemes import BILABIAL_CLASS, viseme_class_of

    if openings.ndim != 1 or not fps > 0 or reach < 0:
        raise ValueError(f"need openings [T], fps > 0 and reach >= 0; got {openings.shape}, {fps}, {reach}")
    windows = []
    for phone in phones:
        if viseme_class_of(phone.label, phone_set) == BILABIAL_CLASS:
            first = max(0, int(np.floor(phone.start_s * fps)) - reach)
            windows.append(openings[first:min(len(openings), int(np.ceil(phone.end_s * fps)) + reach)])
    return windows


def bilabial_minima(openings: np.ndarray, phones, phone_set: str, fps: float, reach: int = 1) -> np.ndarray:
    """The smallest finite opening over each p/b/m phone's frames and `reach` frames either side -> [P] (NaN where
    none is finite), in the phones' order. openings: [T] per video frame, frame 0 at the phones' time 0."""
    minima = []
    for window in _bilabial_windows(np.asarray(openings, np.float64), phones, phone_set, fps, reach):
        values = window[np.isfinite(window)]
        minima.append(float(values.min()) if values.size else float("nan"))
    return np.array(minima)


def bilabial_shut_frames(openings: np.ndarray, phones, phone_set: str, fps: float, reach: int = 1,
                         closed: float = CLOSED_LIPS) -> np.ndarray:
    """How many frames read shut (opening <= `closed`) over each p/b/m phone's frames and `reach` frames either
    side -> [P] ints, in the phones' order. openings: [T] per video frame, frame 0 at the phones' time 0."""
    windows = _bilabial_windows(np.asarray(openings, np.float64), phones, phone_set, fps, reach)
    return np.array([int(np.count_nonzero(window <= closed)) for window in windows], dtype=np.int64)


def shut_run_lengths(openings: np.ndarray, closed: float = CLOSED_LIPS, longest: int | None = None) -> np.ndarray:
    """Lengths of the runs of consecutive frames read shut (opening <= `closed`; NaN ends a run) -> [R] ints;
    with `longest`, only runs up to that many frames (closures in speech rather than the mouth shut in a pause)."""
    openings = np.asarray(openings, np.float64)
    if openings.ndim != 1:
        raise ValueError(f"openings must be [T], got {openings.shape}")
    shut = np.concatenate([[0], (openings <= closed).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(shut))
    lengths = edges[1::2] - edges[0::2]
    return lengths if longest is None else lengths[lengths <= longest]


def open_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two mouth-opening curves [T] over frames where both are finite."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"curves differ in length: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def bootstrap_block_starts(frames: int, block: int, draws: int, seed: int = 0) -> np.ndarray:
    """Random start frames of the blocks of a moving-block bootstrap -> [draws, ceil(frames / block)] ints in
    [0, frames - block]: each draw strings that many `block`-frame stretches together (cut to `frames`)."""
    if frames < 2 or not 1 <= block <= frames or draws < 1:
        raise ValueError(f"need frames >= 2, 1 <= block <= frames and draws >= 1; got {frames}, {block}, {draws}")
    return np.random.default_rng(seed).integers(0, frames - block + 1, size=(draws, -(-frames // block)))


def open_r_interval(a: np.ndarray, b: np.ndarray, block: int = 10, draws: int = 2000, level: float = 0.9,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `open_correlation` (a, b: curves [T]) under a moving-block bootstrap -> (low, high).

    Frames of an opening curve are not independent (a syllable spans 5-10 frames at 25 fps), so whole stretches
    of `block` frames are resampled, keeping each frame of a with its frame of b. The interval says how much the
    same lip sync would score differently on another stretch of the same length. NaN frames are dropped first;
    (nan, nan) when fewer than 2 blocks' worth of frames remain."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two curves [T] of one length, got {a.shape} and {b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2 * block:
        return float("nan"), float("nan")
    starts = bootstrap_block_starts(len(a), block, draws, seed)  # [draws, blocks]
    index = (starts[:, :, None] + np.arange(block)[None, None]).reshape(draws, -1)[:, :len(a)]  # [draws, T]
    x, y = a[index], b[index]
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    denominator = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    r = np.where(denominator > 0, (x * y).sum(1) / np.where(denominator > 0, denominator, 1.0), np.nan)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.nanpercentile(r, [tail, 100.0 - tail])
    return float(low), float(high)


def interval_for_json(interval: tuple[float, float]) -> list[float] | None:
    """`open_r_interval`'s (low, high) -> [low, high] rounded to 3 places, or None when undefined (JSON has no NaN)."""
    if not np.all(np.isfinite(interval)):
        return None
    return [round(float(v), 3) for v in interval]


def similarity_align(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R [2, 2], shift t minimising |s R source + t - target|^2 (Umeyama). [P, 2] each."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(xt.T @ xs)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = float((sigma * np.diag(d)).sum() / max((xs ** 2).sum(), 1e-12))
    return scale, rotation, mu_t - scale * rotation @ mu_s


def lip_landmark_distance(rendered: np.ndarray, real: np.ndarray) -> float:
    """LMD in % of the real inter-ocular distance, mean over frames where both were tracked."""
    a, b = _check(rendered, "rendered"), _check(real, "real")
    if a.shape != b.shape:
        raise ValueError(f"rendered and real tracks differ: {a.shape} vs {b.shape}")
    values = []
    for frame_a, frame_b in zip(a, b):
        if not (np.isfinite(frame_a).all() and np.isfinite(frame_b).all()):
            continue
        s, rotation, shift = similarity_align(frame_a[list(STABLE_LANDMARKS)], frame_b[list(STABLE_LANDMARKS)])
        aligned = (s * frame_a[list(LIP_LANDMARKS)] @ rotation.T) + shift
        eyes = np.linalg.norm(frame_b[EYE_RIGHT] - frame_b[EYE_LEFT])
        values.append(np.linalg.norm(aligned - frame_b[list(LIP_LANDMARKS)], axis=-1).mean() / eyes * 100)
    if not values:
        raise ValueError("no frame had a face tracked in both videos")
    return float(np.mean(values))


def track_landmarks(frames) -> np.ndarray:
    """FaceMesh landmarks [T, 478, 3] (pixels, NaN where no face) of uint8 RGB frames [H, W, 3]."""
    from avatar.tracking import track_frames

    return track_frames(frames, static=False).landmarks


def lipsync_scores(rendered_frames, real_frames) -> dict:
    """Track both frame sequences and compare: {"open_r", "open_r_interval", "lmd_pct", "tracked_frames", "frames",
    "open_rendered", "open_real"}: open_r_interval is `open_r_interval`'s 90 % (low, high); the last two are the
    opening curves [T] (NaN where untracked), for plots."""
    rendered = track_landmarks(rendered_frames)
    real = track_landmarks(real_frames)
    both = np.isfinite(rendered).all(axis=(1, 2)) & np.isfinite(real).all(axis=(1, 2))
    open_rendered, open_real = mouth_open_curve(rendered), mouth_open_curve(real)
    return {"open_r": open_correlation(open_rendered, open_real),
            "open_r_interval": open_r_interval(open_rendered, open_real),
            "lmd_pct": lip_landmark_distance(rendered, real), "tracked_frames": int(both.sum()),
            "frames": int(len(real)), "open_rendered": open_rendered, "open_real": open_real}


def lipsync_tail_motion(avatar, tail_audio: np.ndarray, sample_rate: int,
                        tail_poses: tuple[np.ndarray, np.ndarray], shapes=None, text: str | None = None, mouth=None):
    """The Motion that drives `avatar` over a held-out tail by its audio alone -> (Motion, audio [S']).

    tail_audio: [S] mono; tail_poses: (rotations [T, 3, 3], translations [T, 3]) tracked head poses of the
    tail, T = its frame count at avatar.fps; shapes: viseme shapes learned from the training part only (None:
    generic); mouth: the audio -> expression model fitted on the training part only (None: phone visemes
    alone), applied with the recording's own audio delay since this replays the training recording. The
    returned audio is the tail's, padded or cut to T frames.
    """
    from animation.motion import MotionOptions, motion_from_speech
    from audio.align import time_speech
    from render.video import fit_audio

    rotations, translations = (np.asarray(p) for p in tail_poses)
    n = len(rotations)
    audio = fit_audio(tail_audio, sample_rate, n, avatar.fps)
    speech = time_speech(audio, text, sample_rate=sample_rate)
    options = MotionOptions(fps=avatar.fps, blinks_per_minute=0.0, head_motion=0.0, still=True)
    delay = None if mouth is None else mouth.facts.recording_delay_frames
    motion = motion_from_speech(speech, avatar, options, shapes, poses=(rotations, translations), mouth=mouth,
                                mouth_delay_frames=delay)
    if motion.num_frames != n:
        raise ValueError(f"the tail has {n} poses but its audio gives {motion.num_frames} frames")
    return motion, audio


def render_lipsync_tail(avatar, tail_audio: np.ndarray, sample_rate: int, tail_poses: tuple[np.ndarray, np.ndarray],
                        out_path: str | Path, shapes=None, text: str | None = None, background=None,
                        keep_frames: bool = True, mouth=None, motion=None):
    """Drive `avatar` over a held-out tail by its audio alone and write `out_path` (MP4 with that audio).

    Arguments as `lipsync_tail_motion`; motion: render this Motion instead (e.g. one from the tail's tracked
    expressions, for the ceiling of what the render and re-tracking keep). Returns (VideoResult, frames
    [T, H, W, 3] uint8 or None).
    """
    from render.pipeline import BackgroundSpec, RenderOptions, motion_to_video, render_frames
    from render.video import fit_audio

    if motion is None:
        motion, audio = lipsync_tail_motion(avatar, tail_audio, sample_rate, tail_poses, shapes, text, mouth)
    else:
        audio = fit_audio(tail_audio, sample_rate, motion.num_frames, avatar.fps)
    background = background or BackgroundSpec("plate")
    result = motion_to_video(avatar, motion, audio, sample_rate, out_path, background, RenderOptions())
    frames = None
    if keep_frames:
        frames = np.concatenate(list(render_frames(avatar, motion, background, RenderOptions())))
    return result, frames
