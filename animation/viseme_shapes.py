"""Mouth shapes per viseme for one avatar, and the map from viseme weights [T, 15] to expression.

Two kinds of shape drive the face:
- the avatar's own expression basis (PCA of its training video, `Avatar.expression_basis` [K, 478, 3]):
  a viseme's shape there is the mean expression coefficient vector at the centre frames of that viseme in the
  training video, timed by the speech module (its audio recognised or aligned). This is the person's own way
  of saying "aa" or "oo", so it looks like them.
- generic shapes built on the avatar's neutral landmarks (`GENERIC`): jaw drop, lip spread, rounding, lip
  press, blink and smile as smooth landmark displacements in the head frame, scaled by the outer-eye
  distance. They stand in for visemes the training video shows too rarely (fewer than `min_frames` centre
  frames), for every viseme of a photo avatar (its basis is empty), and for blinks and emotions.

Rendering uses the extended basis `[avatar basis; generic shapes]` [K + G, 478, 3] with coefficients
`[coeffs, generic]`; `avatar.model.posed_vertices` accepts any basis, so nothing else changes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from animation.visemes import BILABIAL_CLASS, VISEME_INDEX, VISEMES, SILENCE, frame_viseme_classes, shape_table

GENERIC = ("jaw_open", "lip_spread", "lip_round", "lip_press", "blink", "smile")
GENERIC_INDEX = {name: i for i, name in enumerate(GENERIC)}
FORMAT_VERSION = 1
SHAPES_FILE = "viseme_shapes.json"
_UNKNOWN = -1  # a frame's viseme class while learning, when its (shifted) audio lies outside the clip

# MediaPipe FaceMesh landmark indices (478-point topology).
LIP_CORNERS = (61, 291, 78, 308)  # outer right, outer left, inner right, inner left
UPPER_INNER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_INNER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324)
LOWER_OUTER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375)
UPPER_OUTER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409)
CHEEKS = (50, 280)
# (upper lid, lower lid) pairs of both eyes.
EYELID_PAIRS = ((159, 145), (158, 153), (160, 144), (157, 154), (161, 163), (246, 7),
                (386, 374), (385, 380), (387, 373), (384, 381), (388, 390), (466, 249))
# Above each upper-lid point of EYELID_PAIRS, the next two rings of the lid's skin towards the brow (about 0.05 and
# 0.07 eye distances higher), and points on the brows, which stay put in a blink.
UPPER_LID_RINGS = ((27, 223), (28, 222), (29, 224), (56, 221), (30, 225), (247, 113),
                   (257, 443), (258, 442), (259, 444), (286, 441), (260, 445), (467, 342))
BROWS = (70, 63, 105, 66, 107, 300, 293, 334, 296, 336)
# In a blink the lid's skin unfolds evenly between the lid margin and the brow: the rings move these fractions of
# the margin's drop. Moving the margin alone stretched its one row of triangles about 4x, and the stretched
# Gaussians let the eye show through the closed lid.
LID_RING_FOLLOW = (0.6, 0.4)
# The jaw's turning axis passes through the face's edge at the mouth corners' height (both sides): lower than the
# jaw joint, because the joint also glides forward as the mouth opens, which keeps the chin from swinging back.
JAW_PIVOT = (58, 288)
# Generic amplitudes in outer-eye distances (about 9 cm on an adult). JAW_DROP: the built-in photo avatar speaking
# Piper sentences then opens to 0.168-0.177 at the 90th percentile (FaceMesh, two builds), where real speakers on
# the seven shared clips with video do 0.067-0.187, median 0.147. Smaller drops read more natural on the photo but
# less legible: video avatars driven by generic shapes alone lose opening correlation (bench/RESULTS.md).
JAW_DROP = 0.21
SPREAD = 0.06
ROUND_IN = 0.07
ROUND_FORWARD = 0.05
SMILE_UP = 0.05
SMILE_OUT = 0.04


def _head_frame(neutral: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    from avatar.mesh import head_axes

    origin, axes, unit = head_axes(neutral.float())
    return origin, axes, unit


def _spread(points: Tensor, anchors: list[int], moves: Tensor, sigma: float, exact: bool = False) -> Tensor:
    """Smoothly interpolate anchor displacements to all points -> [478, 3].

    points: [478, 3]; moves: [A, 3] displacement of each anchor. Shepard weights with a Gaussian kernel
    and a constant far-field term, so points far from every anchor stay put and anchors with zero moves pin
    their neighbourhood. The anchors themselves get a blend of their neighbours' moves; with `exact` they move
    by exactly `moves` (the weights are applied to the solution of weights[anchors] @ x = moves instead).
    """
    distances = torch.cdist(points, points[anchors])  # [478, A]
    kernel = torch.exp(-0.5 * (distances / sigma) ** 2)
    far = float(np.exp(-0.5 * 2.0 ** 2))
    weights = kernel / (kernel.sum(1, keepdim=True) + far)  # [478, A]
    if exact:
        moves = torch.linalg.solve(weights[anchors].double(), moves.double()).to(moves.dtype)
    return weights @ moves


def generic_shapes(neutral: Tensor) -> Tensor:
    """Generic expression shapes on this face -> [G, 478, 3] landmark displacements (metres, head frame).

    neutral: [478, 3] the avatar's neutral landmarks. Each shape at weight 1 is the full movement named in
    `GENERIC`; weights outside [0, 1] extrapolate linearly (lip_spread is signed: -1 pursed, +1 spread).
    """
    if not isinstance(neutral, Tensor) or tuple(neutral.shape) != (478, 3):
        raise ValueError(f"neutral must be a [478, 3] tensor, got {getattr(neutral, 'shape', type(neutral))}")
    p = neutral.float()
    _, axes, unit = _head_frame(p)
    across, up, forward = axes[:, 0], axes[:, 1], axes[:, 2]
    u = float(unit)
    local = (p - p[list(LIP_CORNERS)].mean(0)) @ axes  # [478, 3] coordinates about the mouth (across, up, fwd)
    shapes = torch.zeros(len(GENERIC), 478, 3)

    # Jaw: the lower face turns as one piece about an across axis through the face's edge at the mouth's height
    # (JAW_PIVOT), by the angle that drops the lower inner lip JAW_DROP; the cheeks above fade to still over
    # 0.12 eye distances below the mouth corners, the lower lip rides along fully and the corners half. (It moved
    # straight down before, fading out sideways, which pulled the chin into a point.)
    pivot = local[list(JAW_PIVOT)].mean(0)
    rel_up, rel_forward = local[:, 1] - pivot[1], local[:, 2] - pivot[2]  # [478] each
    lip = LOWER_INNER_LIP[len(LOWER_INNER_LIP) // 2]  # 14, the lower inner lip's middle
    radius = float(torch.hypot(rel_up[lip], rel_forward[lip]))
    start = math.asin(float(rel_up[lip]) / radius)  # its angle from the forward axis (< 0: below the pivot)
    angle = start - math.asin(max(-1.0, (float(rel_up[lip]) - JAW_DROP * u) / radius))
    drop_up = rel_up * (math.cos(angle) - 1) - rel_forward * math.sin(angle)
    drop_forward = rel_up * math.sin(angle) + rel_forward * (math.cos(angle) - 1)
    weight = ((-local[:, 1]) / (0.12 * u)).clamp(0, 1)
    weight[list(LOWER_INNER_LIP + LOWER_OUTER_LIP)] = 1.0
    weight[list(UPPER_INNER_LIP + UPPER_OUTER_LIP)] = 0.0
    weight[list(LIP_CORNERS)] = 0.45
    shapes[0] = weight[:, None] * (drop_up[:, None] * up + drop_forward[:, None] * forward)

    sides = torch.sign(local[list(LIP_CORNERS), 0])[:, None]  # +1 on the corner towards `across`
    corners = list(LIP_CORNERS)
    shapes[1] = _spread(p, corners + [0, 17], torch.cat([sides * across * SPREAD * u - forward * 0.02 * u,
                                                         torch.zeros(2, 3)]), 0.1 * u)
    lips = sorted(set(UPPER_INNER_LIP + LOWER_INNER_LIP + UPPER_OUTER_LIP + LOWER_OUTER_LIP))
    rounding = torch.cat([-sides * across * ROUND_IN * u + forward * 0.5 * ROUND_FORWARD * u,
                          forward.expand(len(lips), 3) * ROUND_FORWARD * u])
    shapes[2] = _spread(p, corners + lips, rounding, 0.06 * u)

    # Lip press: inner lips meet at their mid-line (closes whatever gap the neutral face has).
    press = torch.zeros(478, 3)
    for upper, lower in zip(UPPER_INNER_LIP, LOWER_INNER_LIP):
        gap = (p[upper] - p[lower]) @ up
        press[upper] = -up * gap / 2
        press[lower] = up * gap / 2
    for a, b in zip(UPPER_OUTER_LIP, UPPER_INNER_LIP):
        press[a] = press[b] * 0.5
    for a, b in zip(LOWER_OUTER_LIP, LOWER_INNER_LIP):
        press[a] = press[b] * 0.5
    shapes[3] = press

    # Blink: the upper lid's margin meets the lower one, its skin unfolding down from the still brow.
    upper_lids = [a for a, _ in EYELID_PAIRS]
    lower_lids = [b for _, b in EYELID_PAIRS]
    drop = p[lower_lids] - p[upper_lids]  # [12, 3]
    rings = [[ring[i] for ring in UPPER_LID_RINGS] for i in range(2)]
    lid_moves = torch.cat([drop, torch.zeros(len(lower_lids), 3), LID_RING_FOLLOW[0] * drop,
                           LID_RING_FOLLOW[1] * drop, torch.zeros(len(BROWS), 3)])
    shapes[4] = _spread(p, upper_lids + lower_lids + rings[0] + rings[1] + list(BROWS), lid_moves, 0.03 * u,
                        exact=True)

    smile_moves = torch.cat([sides * across * SMILE_OUT * u + up * SMILE_UP * u,
                             up.expand(2, 3) * 0.5 * SMILE_UP * u, torch.zeros(2, 3)])
    shapes[5] = _spread(p, corners + list(CHEEKS) + [0, 17], smile_moves, 0.1 * u)
    return shapes


def generic_viseme_table() -> np.ndarray:
    """Generic weights of each viseme -> [15, G] (jaw_open, signed spread, rounding, press; no blink/smile)."""
    table = shape_table()  # [15, 4]: jaw_open, lip_spread, lip_round, lips_closed
    out = np.zeros((len(VISEMES), len(GENERIC)))
    out[:, 0] = table[:, 0]
    out[:, 1] = 2.0 * (table[:, 1] - 0.5)
    out[:, 2] = table[:, 2]
    # every viseme presses the lips together first and lets the jaw alone open them: a face whose neutral mouth is
    # open (a portrait's toothy smile) would otherwise add that gap to every sound
    out[:, 3] = 1.0
    return out


@dataclass
class VisemeShapes:
    """Per-viseme expression of one avatar.

    coeffs: [15, K] coefficients in the avatar's basis; generic: [15, G] generic-shape weights; learned: [15]
    True where the row came from the avatar's own video; counts: [15] centre frames seen per viseme;
    closed_lips: [K] the person's own shut mouth (None: not learned), the p/b/m shape when the phones are known
    (`for_known_phones`).
    """

    coeffs: np.ndarray  # [15, K]
    generic: np.ndarray  # [15, G]
    learned: np.ndarray  # [15] bool
    counts: np.ndarray  # [15] int
    source: str = "generic"
    closed_lips: np.ndarray | None = None  # [K]

    def __post_init__(self) -> None:
        v = len(VISEMES)
        self.coeffs = np.asarray(self.coeffs, dtype=np.float64).reshape(v, -1)
        self.generic = np.asarray(self.generic, dtype=np.float64)
        self.learned = np.asarray(self.learned, dtype=bool)
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if self.generic.shape != (v, len(GENERIC)) or self.learned.shape != (v,) or self.counts.shape != (v,):
            raise ValueError(f"viseme shapes must be coeffs [{v}, K], generic [{v}, {len(GENERIC)}], learned and "
                             f"counts [{v}]; got {self.coeffs.shape}, {self.generic.shape}, {self.learned.shape}")
        if not (np.isfinite(self.coeffs).all() and np.isfinite(self.generic).all()):
            raise ValueError("viseme shapes contain NaN or infinite values")
        if self.closed_lips is not None:
            self.closed_lips = np.asarray(self.closed_lips, dtype=np.float64)
            if self.closed_lips.shape != (self.coeffs.shape[1],) or not np.isfinite(self.closed_lips).all():
                raise ValueError(f"closed_lips must be finite [{self.coeffs.shape[1]}], got {self.closed_lips.shape}")

    @property
    def num_coeffs(self) -> int:
        return int(self.coeffs.shape[1])

    def for_known_phones(self) -> "VisemeShapes":
        """These shapes with the p/b/m row set to the person's closed lips, for phones that are known (TTS, a
        forced-aligned transcript); itself when no closed lips were learned.

        The learned p/b/m row averages the face at *recognised* p/b/m, which are wrong on about a third of the
        frames and off by the recording's timing: the expected face given that recognition, the right row for
        recognised phones (replaying a recording scores the same with it), but half open (the shared Obama
        clip's: 0.073 of the eye distance, wider than its pauses' 0.061; its shut lips 0.008). A known p, b or m
        shuts the lips."""
        if self.closed_lips is None:
            return self
        bilabial = VISEME_INDEX[BILABIAL_CLASS]
        coeffs, generic, learned = self.coeffs.copy(), self.generic.copy(), self.learned.copy()
        coeffs[bilabial], generic[bilabial], learned[bilabial] = self.closed_lips, 0.0, True
        return VisemeShapes(coeffs, generic, learned, self.counts.copy(), self.source, self.closed_lips)

    def apply(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Viseme weights [T, 15] -> (coefficients [T, K], generic weights [T, G]), linear in the weights."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[1] != len(VISEMES):
            raise ValueError(f"viseme weights must be [T, {len(VISEMES)}], got {weights.shape}")
        return weights @ self.coeffs, weights @ self.generic

    def speak(self, weights: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Viseme weights [T, 15] and loudness gain [T] (0..1) -> (coefficients [T, K], generic [T, G]).

        Loud syllables open wider than quiet ones: while speaking, the deviation from the rest (silence)
        expression is scaled by 0.75 + 0.5 x gain."""
        gain = np.asarray(gain, dtype=np.float64)
        coeffs, generic = self.apply(weights)
        if gain.shape != (len(coeffs),):
            raise ValueError(f"gain must be [{len(coeffs)}], got {gain.shape}")
        silence = VISEME_INDEX[SILENCE]
        speaking = (1.0 - np.asarray(weights, dtype=np.float64)[:, silence])[:, None]
        loud = (0.75 + 0.5 * gain)[:, None] * speaking + (1 - speaking)
        return (self.coeffs[silence] + (coeffs - self.coeffs[silence]) * loud,
                self.generic[silence] + (generic - self.generic[silence]) * loud)

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "visemes": list(VISEMES), "generic_names": list(GENERIC),
                "source": self.source, "coeffs": self.coeffs.round(7).tolist(), "generic": self.generic.tolist(),
                "learned": self.learned.tolist(), "counts": self.counts.tolist(),
                "closed_lips": None if self.closed_lips is None else self.closed_lips.round(7).tolist()}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @staticmethod
    def load(path: str | Path, num_coeffs: int | None = None) -> "VisemeShapes":
        data = json.loads(Path(path).read_text())
        if data.get("format_version") != FORMAT_VERSION or data.get("visemes") != list(VISEMES) \
                or data.get("generic_names") != list(GENERIC):
            raise ValueError(f"{path}: viseme shapes were written by an incompatible version")
        shapes = VisemeShapes(np.array(data["coeffs"], dtype=np.float64).reshape(len(VISEMES), -1),
                              data["generic"], data["learned"], data["counts"], str(data.get("source", "")),
                              data.get("closed_lips"))  # absent in files saved before it
        if num_coeffs is not None and shapes.num_coeffs != num_coeffs:
            raise ValueError(f"{path}: viseme shapes have {shapes.num_coeffs} coefficients, the avatar {num_coeffs}")
        return shapes


def generic_viseme_shapes(num_coeffs: int) -> VisemeShapes:
    """Every viseme from the generic shapes (a photo avatar, or no usable training audio)."""
    v = len(VISEMES)
    return VisemeShapes(np.zeros((v, num_coeffs)), generic_viseme_table(), np.zeros(v, bool), np.zeros(v, int))


def centre_frames(classes: np.ndarray, fraction: float = 0.5) -> dict[int, list[int]]:
    """Frames in the middle `fraction` of each run of one class -> {class index: [frame, ...]}."""
    out: dict[int, list[int]] = {}
    start = 0
    for end in range(1, len(classes) + 1):
        if end == len(classes) or classes[end] != classes[start]:
            length = end - start
            keep = max(1, int(round(length * fraction)))
            first = start + (length - keep) // 2
            out.setdefault(int(classes[start]), []).extend(range(first, first + keep))
            start = end
    return out


def learn_viseme_shapes(coeffs: np.ndarray, fps: float, phones, phone_set: str, valid: np.ndarray | None = None,
                        min_frames: int = 6, gain: float = 1.4, phone_shift_frames: int = 0,
                        openings: np.ndarray | None = None, closed_quantile: float = 0.05) -> VisemeShapes:
    """Average the avatar's expression at each viseme's centre frames.

    coeffs: [T, K] the training video's expression coefficients; phones: timed phones of its audio (seconds
    from frame 0); valid: [T] frames allowed (tracked and not held out). Rows are deviations from the mean
    silence expression scaled by `gain` (averaging over coarticulated frames shrinks the extremes), plus that
    rest expression. Visemes with fewer than `min_frames` centre frames fall back to the generic shapes.
    phone_shift_frames: the mouth at frame t goes with the phones at frame t + shift. A recording whose audio
    lags its picture (the shared Obama clip: 4 frames beyond the natural lead, `animation.mouth_delay.
    measure_phone_shift`) must be learned that way, as `animation.motion` replays it; unshifted, each viseme
    averaged the face of a syllable later.
    openings: [T] the mouth opening of each frame (`animation.mouth_opening.opening_curve`; None: not known).
    When given, `closed_lips` is learned too: the mean expression of the valid frames whose opening is at or
    below its `closed_quantile` quantile (at least `min_frames` of them), the person's own shut mouth
    (`VisemeShapes.for_known_phones`).
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 2 or coeffs.shape[0] == 0:
        raise ValueError(f"coeffs must be [T, K] with T > 0, got {coeffs.shape}")
    t, k = coeffs.shape
    valid = np.ones(t, bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (t,):
        raise ValueError(f"valid must be [{t}], got {valid.shape}")
    shift = int(phone_shift_frames)
    audio_classes = frame_viseme_classes(phones, phone_set, fps, t)
    classes = np.full(t, _UNKNOWN, dtype=np.int64)  # frames whose audio lies outside the clip stay unknown
    index = np.arange(t)
    inside = (index + shift >= 0) & (index + shift < t)
    classes[inside] = audio_classes[index[inside] + shift]
    shapes = generic_viseme_shapes(k)
    groups = {c: [f for f in frames if valid[f]] for c, frames in centre_frames(classes).items() if c != _UNKNOWN}
    sil = VISEME_INDEX[SILENCE]
    rest = coeffs[groups[sil]].mean(0) if len(groups.get(sil, [])) >= min_frames else np.zeros(k)
    table = generic_viseme_table()
    for index in range(len(VISEMES)):
        frames = groups.get(index, [])
        shapes.counts[index] = len(frames)
        if k and len(frames) >= min_frames:
            shapes.coeffs[index] = rest + gain * (coeffs[frames].mean(0) - rest)
            shapes.generic[index] = 0.0
            shapes.learned[index] = True
        else:
            shapes.coeffs[index] = rest
            shapes.generic[index] = table[index]
    shapes.learned[sil] = len(groups.get(sil, [])) >= min_frames
    if openings is not None and k:
        shapes.closed_lips = closed_lips(coeffs, openings, valid, closed_quantile, min_frames)
    shapes.source = "learned" if shapes.learned.any() else "generic"
    return shapes


def closed_lips(coeffs: np.ndarray, openings: np.ndarray, valid: np.ndarray, quantile: float = 0.05,
                min_frames: int = 6) -> np.ndarray | None:
    """The mean expression [K] of the `closed_frames` of coeffs [T, K]; None when fewer than min_frames."""
    closed = closed_frames(openings, valid, quantile)
    return np.asarray(coeffs, np.float64)[closed].mean(0) if closed.sum() >= min_frames else None


def closed_frames(openings: np.ndarray, valid: np.ndarray, quantile: float = 0.05) -> np.ndarray:
    """The valid frames whose mouth opening [T] is at or below its `quantile` quantile over the valid frames -> [T]
    bool: the person's closed lips (none when no frame is valid)."""
    openings, valid = np.asarray(openings, dtype=np.float64), np.asarray(valid, bool)
    if openings.shape != valid.shape or openings.ndim != 1:
        raise ValueError(f"openings and valid must both be [T], got {openings.shape} and {valid.shape}")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    usable = valid & np.isfinite(openings)
    if not usable.any():
        return np.zeros_like(usable)
    return usable & (openings <= np.quantile(openings[usable], quantile))


def recognised_viseme_weights(waveform: np.ndarray, sample_rate: int, n_frames: int, fps: float) -> np.ndarray:
    """Viseme weights [n_frames, 15] of a stretch of audio [S] timed on its own, as new audio without a transcript
    is (phone recognition): the `time_segment` the mouth model's cross-validation uses for its blocks."""
    from animation.coarticulation import viseme_weights
    from audio.align import time_speech

    timed = time_speech(np.asarray(waveform, np.float32), None, sample_rate=sample_rate)
    return viseme_weights(timed.phones, timed.phone_set, fps, n_frames)


def learn_shapes_from_clip(clip, folder: str | Path, holdout_from_frame: int | None = None) -> VisemeShapes | None:
    """Learn an avatar's mouth from its training clip (`avatar.preprocess.TrackedClip`: audio, tracked
    expression coefficients, valid frames): the viseme shapes, saved as `folder/viseme_shapes.json`, and the
    audio -> expression model (`animation.mouth_model`), saved as `folder/mouth_model.*` when the clip has
    enough frames for it.

    holdout_from_frame: frames from here on (a held-out tail) are not used. Returns None, saving nothing,
    when the clip has no audio or its speech cannot be timed (the avatar then talks with generic shapes)."""
    from animation.mouth_model import (ARRAYS_FILE as MOUTH_ARRAYS_FILE, FACTS_FILE as MOUTH_FACTS_FILE,
                                       fit_mouth_model, recording_phone_shift)
    from animation.mouth_opening import opening_curve
    from audio.align import time_speech

    if clip.audio.size == 0:
        return None
    stop = clip.num_frames if holdout_from_frame is None else int(holdout_from_frame)
    samples = int(round(stop / clip.fps * clip.audio_sample_rate))
    valid = np.asarray(clip.valid[:stop])
    try:
        speech = time_speech(np.asarray(clip.audio[:samples], np.float32), None, sample_rate=clip.audio_sample_rate)
        shift = recording_phone_shift(clip.coeffs[:stop], clip.neutral, clip.basis, clip.fps, speech.phones,
                                      speech.phone_set, valid)
        shapes = learn_viseme_shapes(clip.coeffs[:stop], clip.fps, speech.phones, speech.phone_set, valid,
                                     phone_shift_frames=shift,
                                     openings=opening_curve(clip.coeffs[:stop], clip.neutral, clip.basis))
    except ValueError:
        return None
    shapes.save(Path(folder) / SHAPES_FILE)
    try:
        fit_mouth_model(clip.coeffs[:stop], clip.neutral, clip.basis, speech.waveform, speech.sample_rate,
                        clip.fps, speech.phones, speech.phone_set, valid,
                        time_segment=partial(recognised_viseme_weights, fps=clip.fps)).save(folder)
    except ValueError:  # too few frames: the viseme shapes alone drive the mouth; drop a stale model
        for name in (MOUTH_FACTS_FILE, MOUTH_ARRAYS_FILE):
            (Path(folder) / name).unlink(missing_ok=True)
    return shapes


def shapes_for_avatar(avatar, folder: str | Path | None = None) -> VisemeShapes:
    """The avatar's saved `viseme_shapes.json` when present and compatible, else generic shapes.

    Shapes saved before `closed_lips` existed get them from the avatar's own training expressions
    (`Avatar.expression_coeffs`), so an avatar trained earlier shuts its lips on known p/b/m too."""
    path = None if folder is None else Path(folder) / SHAPES_FILE
    if path is None or not path.is_file():
        return generic_viseme_shapes(avatar.num_expressions)
    try:
        shapes = VisemeShapes.load(path, avatar.num_expressions)
    except (ValueError, KeyError, json.JSONDecodeError):
        return generic_viseme_shapes(avatar.num_expressions)  # an outdated file: generic shapes still talk
    if shapes.closed_lips is None and shapes.learned.any() and avatar.expression_coeffs.numel():
        from animation.mouth_opening import opening_curve

        coeffs = avatar.expression_coeffs.double().numpy()
        openings = opening_curve(coeffs, avatar.neutral.double().numpy(), avatar.expression_basis.double().numpy())
        # frames with NaN coefficients have NaN openings, which `closed_frames` leaves out
        shapes.closed_lips = closed_lips(coeffs, openings, np.ones(len(coeffs), bool))
    return shapes


def extended_basis(avatar_basis: Tensor, neutral: Tensor) -> Tensor:
    """[avatar basis; generic shapes] -> [K + G, 478, 3]."""
    if avatar_basis.ndim != 3 or tuple(avatar_basis.shape[1:]) != (478, 3):
        raise ValueError(f"avatar basis must be [K, 478, 3], got {tuple(avatar_basis.shape)}")
    return torch.cat([avatar_basis.float(), generic_shapes(neutral)])
