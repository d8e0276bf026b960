"""Per-frame motion of the shoulders and collar: a 2D affine warp of the region below the chin.

The face tracker follows the head only; the extended mesh's body part was posed once, at the training frames'
mean head pose. Real talkers sway: on the shared Obama clip the collar and tie move by 3.7 / 3.4 px (std, x / y,
512 px crop), up to 12 px, and not rigidly with the head (correlation 0.7 with the nose, slope 0.2). A still
body smears the tie and collar edges into the average of their positions, which is most of the error below the
chin. So the body is tracked like the head: each frame's strip below the lowest chin is registered to a
reference frame by ECC (`cv2.findTransformECC`, affine, person pixels only), started from the neighbouring
frame's warp and from a matte-weighted phase correlation. Measured on that clip (every 5th frame against one
reference, person pixels of the strip): unaligned 18.9 dB, translation 23.5 dB, affine 27.2 dB, so the warp
is affine (shoulders also turn and lean).

The warps are re-centred on their mean over the reference (training) frames, so warp = identity is the mean
body the model learns, and expressed in normalised image coordinates (u = x/z, v = y/z) so they hold at any
render resolution. `avatar.mesh.extend_vertices` applies them to the body end of the neck blend. Animation from
speech has no video to track: there the warps are predicted from the head poses by the avatar's sway map
(`fit_body_sway`, used by `avatar.model.posed_vertices`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CHIN_LANDMARK = 152  # MediaPipe FaceMesh: the lowest point of the chin


@dataclass(frozen=True)
class BodyTrackingConfig:
    """How the body strip is chosen and registered."""

    margin_below_chin: float = 0.02  # strip starts this fraction of the crop height below the lowest chin
    min_rows: int = 24  # a shorter strip (tight crop, photo) is not tracked: identity warps
    min_person_fraction: float = 0.15  # of the reference strip; less (no shoulders in view): identity warps
    ecc_iterations: int = 60
    ecc_epsilon: float = 1e-4
    ecc_blur: int = 5  # Gaussian pre-blur of ECC (odd pixels)
    max_refine_fraction: float = 0.05  # ECC moving a strip corner further than this (of the width) from the
    # phase-correlation start has diverged: the start is kept


def identity_warps(num_frames: int) -> np.ndarray:  # [T, 2, 3] float32
    return np.tile(np.eye(2, 3, dtype=np.float32), (num_frames, 1, 1))


def _weighted(gray: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """Zero-mean grey strip [R, W] weighted by the person matte [R, W] in [0, 1] (the still background drops out)."""
    mean = float((gray * matte).sum() / max(float(matte.sum()), 1e-6))
    return ((gray - mean) * matte).astype(np.float32)


def _register(template: np.ndarray, template_mask: np.ndarray, image: np.ndarray, starts: list[np.ndarray],
              config: BodyTrackingConfig) -> np.ndarray | None:
    """Affine [2, 3] mapping template pixels to `image` pixels (x_image = A [x, y, 1]): ECC from each start
    (the neighbouring frame's warp, a phase-correlation shift), the best-correlated result that stayed near its
    start; None when none converged."""
    import cv2

    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, config.ecc_iterations, config.ecc_epsilon)
    rows, width = template.shape
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, rows, 1], [width, rows, 1]], np.float32)
    best, best_score = None, -np.inf
    for start in starts:
        try:
            score, warp = cv2.findTransformECC(template, image, start.astype(np.float32), cv2.MOTION_AFFINE,
                                               criteria, template_mask, config.ecc_blur)
        except cv2.error:  # did not converge (blank strip, occlusion)
            continue
        moved = np.abs(corners @ (warp - start).T).max()
        if np.isfinite(warp).all() and moved <= config.max_refine_fraction * width and score > best_score:
            best, best_score = warp, score
    return best


def track_body(frames: np.ndarray, mattes: np.ndarray, landmarks_2d: np.ndarray, camera, reference: np.ndarray,
               config: BodyTrackingConfig = BodyTrackingConfig()) -> tuple[np.ndarray, dict]:
    """Body warps [T, 2, 3] float32 in normalised image coordinates, and a summary for the clip's notes.

    frames: [T, H, W, 3] uint8 crops; mattes: [T, H, W] uint8 (person = 255); landmarks_2d: [T, 478, 2] crop
    pixels; camera: the crop's `avatar.rig.Intrinsics`; reference: [T] bool, the frames the warps are centred
    on (the training frames: held-out frames must not shape the mean body). Identity where the crop shows no
    body below the chin.
    """
    import cv2

    t, height, width = frames.shape[:3]
    if mattes.shape != (t, height, width) or landmarks_2d.shape[0] != t or reference.shape != (t,):
        raise ValueError(f"need mattes [T, H, W], landmarks [T, 478, 2], reference [T] for {t} frames of "
                         f"{height}x{width}; got {mattes.shape}, {landmarks_2d.shape}, {reference.shape}")
    reference = reference.astype(bool)
    if t < 2:
        return identity_warps(t), {"tracked": False, "reason": "fewer than two frames"}
    if not reference.any():
        return identity_warps(t), {"tracked": False, "reason": "no reference frame to centre on"}
    chin = float(np.nanmax(landmarks_2d[reference, CHIN_LANDMARK, 1]))
    top = int(np.ceil(chin + config.margin_below_chin * height))
    if height - top < config.min_rows:
        return identity_warps(t), {"tracked": False, "reason": "no body below the chin in the crop"}
    grey = [cv2.cvtColor(frame[top:], cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0 for frame in frames]
    person = mattes[:, top:].astype(np.float32) / 255.0
    candidates = np.flatnonzero(reference)
    ref = int(candidates[len(candidates) // 2])
    template_mask = (person[ref] > 0.5).astype(np.uint8)
    if template_mask.mean() < config.min_person_fraction:
        return identity_warps(t), {"tracked": False, "reason": "too little of the body in view"}
    window = cv2.createHanningWindow((width, height - top), cv2.CV_32F)
    weighted_template = _weighted(grey[ref], person[ref])
    warps = identity_warps(t)  # [T, 2, 3] template -> frame, strip pixels
    failed = 0
    # outwards from the reference frame, each frame starting from its neighbour's warp (motion between frames
    # is small) and from a matte-weighted phase correlation (recovers after a jump or a failed frame)
    for order in (range(ref + 1, t), range(ref - 1, -1, -1)):
        previous = warps[ref]
        for i in order:
            (dx, dy), _ = cv2.phaseCorrelate(weighted_template, _weighted(grey[i], person[i]), window)
            shift = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
            found = _register(grey[ref], template_mask, grey[i], [previous, shift], config)
            if found is None:
                failed += 1
                found = previous
            warps[i] = previous = found
    full = np.tile(np.eye(3), (t, 1, 1))
    full[:, :2] = warps
    strip_to_crop = np.array([[1, 0, 0], [0, 1, top], [0, 0, 1]], np.float64)
    full = strip_to_crop @ full @ np.linalg.inv(strip_to_crop)  # crop pixels
    # centre: the model's still body is the mean over the reference frames; warp_t maps it to frame t
    mean = full[reference].mean(0)
    centred = full @ np.linalg.inv(mean)
    pixels_from_normalised = np.array([[camera.fx, 0, camera.cx], [0, camera.fy, camera.cy], [0, 0, 1]], np.float64)
    normalised = np.linalg.inv(pixels_from_normalised) @ centred @ pixels_from_normalised
    strip_centre = np.array([width / 2, (top + height) / 2])
    centre_shift = centred[:, :2, 2] + centred[:, :2, :2] @ strip_centre - strip_centre  # [T, 2] pixels
    summary = {"tracked": True, "strip_top_px": top, "reference_frame": ref, "failed_frames": failed,
               "shift_std_px": [round(float(v), 2) for v in centre_shift[reference].std(0)],
               "shift_max_px": round(float(np.abs(centre_shift).max()), 2)}
    return normalised[:, :2].astype(np.float32), summary


def warp_points(points: Tensor, warps: Tensor) -> Tensor:
    """Camera-space points [..., P, 3] moved by normalised image-plane affines [..., 2, 3] at their own depth:
    (x, y, z) -> (u' z, v' z, z) with [u', v'] = A [x/z, y/z, 1]. Differentiable; z must be positive."""
    z = points[..., 2:3]
    uv = points[..., :2] / z
    moved = uv @ warps[..., :2].transpose(-1, -2) + warps[..., None, :, 2]
    return torch.cat([moved * z, z], dim=-1)


def _pose_features(rotations: Tensor, translations: Tensor, body_rotation: Tensor, body_translation: Tensor) -> Tensor:
    """[T, 7]: 1, the head's translation from the body pose (metres) and the vector part of its rotation
    quaternion relative to the body's (about half the rotation vector), for rotations [T, 3, 3], translations
    [T, 3]."""
    from avatar.binding import rotation_matrix_to_quaternion

    q = rotation_matrix_to_quaternion(body_rotation.to(rotations).T @ rotations)  # [T, 4] w, x, y, z
    q = q * torch.where(q[:, :1] < 0, -1.0, 1.0).to(q)
    return torch.cat([torch.ones_like(q[:, :1]), translations - body_translation.to(translations), q[:, 1:]], -1)


def fit_body_sway(rotations: Tensor, translations: Tensor, body_rotation: Tensor, body_translation: Tensor,
                  warps: Tensor, ridge: float = 1e-3) -> Tensor:
    """Linear map [7, 6] from head pose to body warp, least squares over tracked frames (rotations [T, 3, 3],
    translations [T, 3], warps [T, 2, 3]), so animation without a video (speech) sways the shoulders with the
    head as the recording did. Ridge on the standardised features (the intercept unpenalised)."""
    t = rotations.shape[0]
    if rotations.shape != (t, 3, 3) or translations.shape != (t, 3) or warps.shape != (t, 2, 3):
        raise ValueError(f"need rotations [T, 3, 3], translations [T, 3], warps [T, 2, 3]; got "
                         f"{tuple(rotations.shape)}, {tuple(translations.shape)}, {tuple(warps.shape)}")
    x = _pose_features(rotations.double(), translations.double(), body_rotation.double(), body_translation.double())
    y = (warps.double() - torch.eye(2, 3, dtype=torch.float64)).reshape(t, 6)
    scale = x.std(0).clamp_min(1e-9)
    scale[0] = 1.0
    xs = x / scale
    penalty = torch.full((7,), ridge * t, dtype=torch.float64)
    penalty[0] = 0.0
    weights = torch.linalg.solve(xs.T @ xs + torch.diag(penalty), xs.T @ y) / scale[:, None]
    return weights.to(warps.dtype)


def sway_warps(sway: Tensor, rotations: Tensor, translations: Tensor, body_rotation: Tensor,
               body_translation: Tensor) -> Tensor:
    """Body warps [T, 2, 3] predicted by `fit_body_sway`'s map sway [7, 6] for head poses [T, 3, 3], [T, 3]."""
    x = _pose_features(rotations, translations, body_rotation, body_translation)
    return torch.eye(2, 3, dtype=x.dtype) + (x @ sway.to(x)).reshape(-1, 2, 3)
