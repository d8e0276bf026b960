"""The head rig fitted to tracked landmarks: a pinhole camera, a per-avatar neutral 3D shape, a rigid head pose
per frame and a PCA expression basis with per-frame coefficients.

Conventions (shared with `render/camera.py`):
- Camera: OpenCV pinhole, +x right, +y down, +z forward (into the scene), camera at the origin, pixel centres at
  integer + 0.5. The camera is fixed; the head moves.
- Head frame (the avatar's "world"): units of metres (the landmark cloud is scaled so the distance between the
  two eye centres, each the midpoint of its eye corners, is 63 mm, an average adult interpupillary distance),
  origin at the centroid of the 468 face-mesh points of the neutral shape, +x towards the subject's left (image
  right for a frontal face), +y down (towards the chin), +z away from the camera (into the head). A frontal head
  therefore has a rotation near identity.
- Pose per frame: `rotation[t] @ p + translation[t]` maps head-frame points to camera coordinates, i.e.
  world_to_camera[t] = [[R, t], [0, 0, 0, 1]].
- Landmarks per frame in the head frame = neutral + sum_k coeffs[t, k] * basis[k]; the basis rows are
  orthonormal when flattened to [478 * 3], so coefficients are in metres (the norm of the displacement).
- Pose: each frame's MediaPipe landmarks are lifted to camera space (pixel rays; depth from the face's scale
  against the neutral plus MediaPipe's relative depth, `lift_to_camera`), then the neutral's stable points
  are fitted rigidly (Procrustes) and the pose track is low-passed without lag. Head-frame landmarks are the
  lifted points mapped back through the smoothed pose, so they reproject exactly onto the tracked pixels; the
  expression basis truncation is the only reprojection error. (A first version built the neutral from the
  weak-perspective clouds and posed it by PnP on the 2D points; on the synthetic test its rotations were off
  by ~3 degrees, because an off-centre face looks turned under weak perspective. Lifting first removed that.)
  On synthetic data with a known neutral and focal length the fit recovers rotations to < 0.5 degrees,
  x/y translation to < 1 mm and depth to ~2 %.
- Focal length: not observable from MediaPipe's weak-perspective landmarks, so it is assumed from a field of
  view (35 degrees across the longer image side by default: a typical webcam or phone selfie framed at
  arm's length). It only changes perspective strength and the head's distance, not the fit quality.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from avatar.tracking import NUM_LANDMARKS, zero_phase_smooth

INTEROCULAR_M = 0.063
RIGHT_EYE_CORNERS, LEFT_EYE_CORNERS = (33, 133), (362, 263)
CHIN, FOREHEAD_TOP = 152, 10
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
# Points that move little with expression: forehead, nose bridge, eye corners, temples, upper cheekbones.
# Lips, jaw and eyebrows are left out so speech does not tilt the head.
STABLE_POINTS = (
    10, 151, 9, 108, 337, 69, 299, 67, 297, 109, 338,  # forehead
    168, 6, 197, 195, 5,  # nose bridge
    33, 133, 362, 263,  # eye corners
    127, 356, 162, 389, 21, 251, 54, 284, 139, 368, 34, 264,  # temples
    116, 345, 117, 346, 234, 454,  # upper cheekbones, face edge at ear level
)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of width x height (pixel centres at integer + 0.5)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @staticmethod
    def from_fov(width: int, height: int, fov_deg: float) -> "Intrinsics":
        """Square pixels, principal point at the image centre, `fov_deg` across the longer side."""
        if not 1.0 < fov_deg < 170.0:
            raise ValueError(f"fov_deg must be between 1 and 170 degrees, got {fov_deg}")
        focal = 0.5 * max(width, height) / np.tan(np.radians(fov_deg) / 2)
        return Intrinsics(float(focal), float(focal), width / 2.0, height / 2.0, int(width), int(height))

    def cropped(self, x0: float, y0: float, size: float, resolution: int) -> "Intrinsics":
        """Intrinsics of the square crop [x0, x0 + size) x [y0, y0 + size) resized to resolution x resolution."""
        scale = resolution / size
        return Intrinsics(self.fx * scale, self.fy * scale, (self.cx - x0) * scale, (self.cy - y0) * scale,
                          resolution, resolution)

    def matrix(self) -> np.ndarray:  # [3, 3]
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)

    def to_dict(self) -> dict:
        return asdict(self)

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same view at another resolution (intrinsics scale with the image)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))

    def to_camera(self):
        """The renderer's `render.camera.Camera` for this view, camera at the origin looking down +z."""
        import torch

        from render.camera import Camera

        return Camera(self.fx, self.fy, self.cx, self.cy, self.width, self.height, torch.eye(4))

    @staticmethod
    def from_dict(data: dict) -> "Intrinsics":
        """Intrinsics read from JSON (an avatar's or a clip's), validated: ValueError with a sentence if not."""
        try:
            spec = Intrinsics(*(float(data[k]) for k in ("fx", "fy", "cx", "cy")), int(data["width"]),
                              int(data["height"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"camera intrinsics are malformed: {error}") from None
        values = (spec.fx, spec.fy, spec.cx, spec.cy)
        if not all(math.isfinite(v) for v in values) or spec.fx <= 0 or spec.fy <= 0:
            raise ValueError(f"camera has invalid intrinsics {values}")
        if not (8 <= spec.width <= 4096 and 8 <= spec.height <= 4096):
            raise ValueError(f"camera size {spec.width}x{spec.height} is out of range")
        return spec


@dataclass(frozen=True)
class RigConfig:
    """Options for fitting the rig (saved with the artefact)."""

    fov_deg: float = 35.0
    num_components: int = 24  # expression basis size K (fewer when the clip has fewer frames)
    pose_cutoff_hz: float = 4.0  # zero-phase low-pass on the rigid pose (head motion is slow)
    expression_cutoff_hz: float = 8.0  # lighter low-pass on the expression (lips move fast; >= Nyquist = off)
    neutral_iterations: int = 2


@dataclass
class HeadRig:
    """A fitted rig for T frames (see the module docstring for conventions and units)."""

    intrinsics: Intrinsics
    neutral: np.ndarray  # [478, 3] metres, head frame
    rotation: np.ndarray  # [T, 3, 3] head to camera
    translation: np.ndarray  # [T, 3] metres
    head_landmarks: np.ndarray  # [T, 478, 3] metres, head frame, before the PCA truncation
    basis: np.ndarray  # [K, 478, 3] orthonormal when flattened
    coeffs: np.ndarray  # [T, K]
    explained_variance: np.ndarray  # [K] fraction of the residual energy each component explains

    def expression_landmarks(self) -> np.ndarray:  # [T, 478, 3]
        """Head-frame landmarks rebuilt from the neutral and the truncated basis."""
        return self.neutral[None] + np.einsum("tk,kvc->tvc", self.coeffs, self.basis)

    def world_to_camera(self) -> np.ndarray:  # [T, 4, 4]
        frames = self.rotation.shape[0]
        matrices = np.tile(np.eye(4), (frames, 1, 1))
        matrices[:, :3, :3] = self.rotation
        matrices[:, :3, 3] = self.translation
        return matrices


def similarity_procrustes(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares scale s, rotation R [3, 3] and translation t [3] with target ~ s * R @ source + t (Umeyama).

    source, target: [N, 3] corresponding points, N >= 3.
    """
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3 or source.shape[0] < 3:
        raise ValueError(f"need two [N, 3] point sets with N >= 3, got {source.shape} and {target.shape}")
    mean_s, mean_t = source.mean(0), target.mean(0)
    centred_s, centred_t = source - mean_s, target - mean_t
    u, sigma, vt = np.linalg.svd(centred_t.T @ centred_s)
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float((sigma * np.diag(sign)).sum() / (centred_s**2).sum())
    return scale, rotation, mean_t - scale * rotation @ mean_s


def project(points: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:  # points: [..., 3] camera -> [..., 2]
    """Pinhole projection of camera-space points to pixels."""
    z = points[..., 2:3]
    if np.any(z <= 0):
        raise ValueError("cannot project points at or behind the camera (z <= 0)")
    xy = points[..., :2] / z
    return np.concatenate([xy[..., :1] * intrinsics.fx + intrinsics.cx, xy[..., 1:] * intrinsics.fy + intrinsics.cy], -1)


def pose_points(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Head-frame points [T, V, 3] to camera space with rotation [T, 3, 3] and translation [T, 3]."""
    return np.einsum("tij,tvj->tvi", rotation, points) + translation[:, None, :]


def _eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [..., 478, 3]
    right = points[..., list(RIGHT_EYE_CORNERS), :].mean(-2)
    left = points[..., list(LEFT_EYE_CORNERS), :].mean(-2)
    return right, left


def canonicalise(points: np.ndarray) -> np.ndarray:  # [478, 3] -> [478, 3] metres, head frame
    """Scale, rotate and centre one landmark cloud into the head frame (module docstring)."""
    right, left = _eye_centres(points)
    scale = INTEROCULAR_M / float(np.linalg.norm(left - right))
    x_axis = (left - right) / np.linalg.norm(left - right)
    down = points[CHIN] - points[FOREHEAD_TOP]
    y_axis = down - x_axis * (down @ x_axis)
    y_axis /= np.linalg.norm(y_axis)
    axes = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)])  # rows = head axes in the input frame
    centred = points - points[:468].mean(0)
    return (centred @ axes.T) * scale


def _align_to(clouds: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each cloud [T, 478, 3] mapped onto reference [478, 3] by a similarity fitted on STABLE_POINTS."""
    stable = list(STABLE_POINTS)
    aligned = np.empty_like(clouds, dtype=np.float64)
    for index, cloud in enumerate(clouds):
        scale, rotation, shift = similarity_procrustes(cloud[stable], reference[stable])
        aligned[index] = scale * cloud @ rotation.T + shift
    return aligned


def fit_neutral(clouds: np.ndarray, valid: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Per-avatar neutral shape [478, 3] (metres, head frame): the per-point median of the valid frames'
    landmark clouds after aligning them rigidly (with scale) on the stable points. clouds: [T, 478, 3]."""
    if clouds.ndim != 3 or clouds.shape[1:] != (NUM_LANDMARKS, 3):
        raise ValueError(f"clouds must be [T, 478, 3], got {clouds.shape}")
    if not valid.any():
        raise ValueError("no valid frame to build a neutral shape from")
    used = clouds[valid].astype(np.float64)
    reference = canonicalise(np.median(used, axis=0))
    for _ in range(max(iterations, 1)):
        reference = canonicalise(np.median(_align_to(used, reference), axis=0))
    return reference


def lift_to_camera(clouds: np.ndarray, neutral: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """MediaPipe landmark clouds [T, 478, 3] (pixels, relative depth in pixels) -> camera-space points
    [T, 478, 3] in metres, each on the camera ray through its pixel.

    MediaPipe gives image positions plus a relative depth at the image's scale (weak perspective). The frame's
    scale against the neutral (pixels per metre, from a similarity fit on the stable points) gives the face's
    depth, Z = fx / scale; each point's depth adds its relative depth / scale; X, Y follow from the pixel ray.
    The result is perspective-correct, so off-centre faces are not mistaken for turned ones.
    """
    stable = list(STABLE_POINTS)
    lifted = np.empty(clouds.shape, np.float64)
    for index, cloud in enumerate(clouds):
        scale, _, _ = similarity_procrustes(neutral[stable], cloud[stable].astype(np.float64))
        depth = intrinsics.fx / scale + (cloud[:, 2] - cloud[stable, 2].mean()) / scale
        lifted[index, :, 0] = (cloud[:, 0] - intrinsics.cx) / intrinsics.fx * depth
        lifted[index, :, 1] = (cloud[:, 1] - intrinsics.cy) / intrinsics.fy * depth
        lifted[index, :, 2] = depth
    return lifted


def fit_poses(neutral: np.ndarray, lifted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation vectors [T, 3] and translations [T, 3] (metres): rigid Procrustes of the neutral's stable points
    onto each frame's lifted camera-space points (lifted [T, 478, 3])."""
    from scipy.spatial.transform import Rotation

    stable = list(STABLE_POINTS)
    rvecs, tvecs = [], []
    source = neutral[stable]
    for points in lifted:
        target = points[stable]
        u, _, vt = np.linalg.svd((target - target.mean(0)).T @ (source - source.mean(0)))
        rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0]) @ vt
        rvecs.append(Rotation.from_matrix(rotation).as_rotvec())
        tvecs.append(target.mean(0) - rotation @ source.mean(0))
    # Head rotations stay far below 180 degrees, so rotation vectors vary continuously and can be low-passed.
    return np.array(rvecs), np.array(tvecs)


def rotvec_to_matrix(rvecs: np.ndarray) -> np.ndarray:  # [T, 3] -> [T, 3, 3]
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rvecs).as_matrix()


def mouth_closed_frames(head: np.ndarray, valid: np.ndarray, fraction: float = 0.25, minimum: int = 5) -> np.ndarray:
    """Mask [T] of the valid frames whose inner lips (landmarks 13, 14) are closest together: the lowest
    `fraction` of them, or all valid frames when that would be fewer than `minimum` (e.g. a photo).

    The neutral shape is their median, so expression coefficients 0 mean a closed mouth (what visemes for
    p/b/m and silence need), not the half-open average of a talking clip. head: [T, 478, 3].
    """
    opening = np.linalg.norm(head[:, UPPER_INNER_LIP] - head[:, LOWER_INNER_LIP], axis=-1)
    indices = np.flatnonzero(valid)
    count = int(round(fraction * len(indices)))
    if count < minimum:
        return valid.copy()
    chosen = indices[np.argsort(opening[indices])[:count]]
    mask = np.zeros_like(valid)
    mask[chosen] = True
    return mask


def expression_basis(residuals: np.ndarray, valid: np.ndarray, num_components: int) -> tuple:
    """PCA (uncentred SVD, so coefficients 0 = the neutral face) of residuals [T, 478, 3] over valid frames.

    Returns basis [K, 478, 3], coeffs [T, K] for every frame, explained-variance fractions [K].
    K = min(num_components, number of valid frames); K = 0 for a single frame.
    """
    frames = residuals.shape[0]
    flat = residuals.reshape(frames, -1)
    used = flat[valid]
    count = min(num_components, used.shape[0] if used.shape[0] > 1 else 0)
    if count == 0:
        return np.zeros((0, NUM_LANDMARKS, 3)), np.zeros((frames, 0)), np.zeros(0)
    _, sigma, vt = np.linalg.svd(used, full_matrices=False)
    energy = (sigma**2).sum()
    basis = vt[:count]
    explained = sigma[:count] ** 2 / energy if energy > 0 else np.zeros(count)
    return basis.reshape(count, NUM_LANDMARKS, 3), flat @ basis.T, explained


def pose_in_head_frame(clouds: np.ndarray, neutral: np.ndarray, intrinsics: Intrinsics, fps: float,
                       config: RigConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head poses of tracked landmarks clouds [T, 478, 3] (pixels) against `neutral` [478, 3], smoothed over time
    (more than one frame) -> rotation [T, 3, 3], translation [T, 3] and the landmarks in the head frame
    [T, 478, 3] (lifted on their pixel rays, so they reproject exactly)."""
    lifted = lift_to_camera(clouds, neutral, intrinsics)
    rvecs, tvecs = fit_poses(neutral, lifted)
    if len(clouds) > 1:
        rvecs = zero_phase_smooth(rvecs, fps, config.pose_cutoff_hz)
        tvecs = zero_phase_smooth(tvecs, fps, config.pose_cutoff_hz)
    rotation = rotvec_to_matrix(rvecs)
    return rotation, tvecs, np.einsum("tji,tvj->tvi", rotation, lifted - tvecs[:, None, :])


def expression_residuals(head: np.ndarray, neutral: np.ndarray, fps: float, config: RigConfig) -> np.ndarray:
    """Head-frame landmarks [T, 478, 3] minus the neutral [478, 3], smoothed over time (more than one frame)."""
    residuals = head - neutral[None]
    if len(head) > 1:
        residuals = zero_phase_smooth(residuals, fps, config.expression_cutoff_hz)
    return residuals


def fit_rig(
    landmarks: np.ndarray, valid: np.ndarray, width: int, height: int, fps: float,
    config: RigConfig = RigConfig(), progress: Callable[[float], None] | None = None,
) -> HeadRig:
    """Fit camera, neutral, poses and expression basis to tracked landmarks [T, 478, 3] (pixels, gaps filled)
    of a width x height image sequence at `fps`. A single frame (photo) gets a zero-size expression basis."""
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 3):
        raise ValueError(f"landmarks must be [T, 478, 3], got {landmarks.shape}")
    if valid.shape != (landmarks.shape[0],):
        raise ValueError(f"valid must be [T] = [{landmarks.shape[0]}], got {valid.shape}")
    if not np.isfinite(landmarks).all():
        raise ValueError("landmarks contain NaN; fill gaps first (tracking.check_track)")
    intrinsics = Intrinsics.from_fov(width, height, config.fov_deg)
    clouds = landmarks.astype(np.float64)
    neutral = fit_neutral(clouds, valid, config.neutral_iterations)
    rounds = 3  # alternate: lift with the neutral's scale, pose, re-estimate the neutral in the head frame
    for round_index in range(rounds):
        rotation, tvecs, head = pose_in_head_frame(clouds, neutral, intrinsics, fps, config)
        if round_index < rounds - 1:
            neutral = canonicalise(np.median(head[mouth_closed_frames(head, valid)], axis=0))
        if progress:
            progress((round_index + 1) / (rounds + 1))
    if len(clouds) == 1:  # a photo has no expression basis: its own landmarks are the neutral
        neutral = head[0]
    residuals = expression_residuals(head, neutral, fps, config)
    basis, coeffs, explained = expression_basis(residuals, valid, config.num_components)
    if progress:
        progress(1.0)
    return HeadRig(intrinsics, neutral, rotation, tvecs, neutral[None] + residuals, basis, coeffs, explained)


def reprojection_error_px(rig: HeadRig, pixels: np.ndarray, truncated: bool = True) -> np.ndarray:
    """Per-frame, per-landmark distance [T, 478] in pixels between the posed rig landmarks (neutral + PCA
    expression when `truncated`, else the full head-frame landmarks) and tracked pixels [T, 478, 2]."""
    points = rig.expression_landmarks() if truncated else rig.head_landmarks
    projected = project(pose_points(points, rig.rotation, rig.translation), rig.intrinsics)
    return np.linalg.norm(projected - pixels, axis=-1)
