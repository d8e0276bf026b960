"""Photometric refinement of tracked head poses against the avatar being trained (render and compare).

FaceMesh landmarks pose the head to within about a degree and a few millimetres of depth: enough to animate,
not to register 512 px pictures. Measured on the German clip with a 3,000-iteration avatar (frozen), a rigid
6-DOF correction per frame fitted by render-and-compare raised the head-region PSNR of training frames from
27.83 to 28.67 dB, of held-out frames between them from 27.92 to 28.80 and of the held-out last 4 s from 27.50
to 28.80: the corrections reach 1.2 degrees of pitch and 6 mm of depth, and the tail's are biased (its depth
from FaceMesh's scale reads 2-5 mm too far). Misregistered training frames also teach the avatar a blurred
average. So training refines the training frames' poses a few times (`TrainConfig.pose_refine_at`) and
continues on the refined ones, and held-out frames are tracked the same way, against the finished avatar, before
they are scored. The full `standard` run on German went from 28.29 dB / SSIM 0.880 to 29.72 / 0.914 held out
(bench/RESULTS.md, eighth session); the same avatar with the held-out frames' FaceMesh poses scores 28.19 / 0.877.

This is tracking, not training: per frame only the rigid head pose moves (3 rotation + 3 translation numbers
against tens of thousands of pixels); the Gaussians are frozen, the expression coefficients and body motion
stay as tracked. The correction rotates about the head-frame origin (the face's centroid): R' = exp(w) R,
t' = t + d. Each frame is fitted alone (Adam on the L1 error over the head region, at `resolution` px, over the
clip's background plate as the frame is scored), starting from the previous frame's correction, since the
tracker's errors drift slowly.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from avatar.evaluate import head_mask

ProgressCallback = Callable[[str, float, dict], None]


@dataclass(frozen=True)
class PoseRefineOptions:
    """How a refinement pass runs (per call)."""

    steps: int = 12  # Adam steps per frame
    resolution: int = 256  # render and compare at this width (the frame is filtered down to it)
    lr_rotation: float = 2e-3  # radians
    lr_translation: float = 4e-4  # head-frame units (metres)
    max_rotation: float = 0.1  # radians: a larger correction is a failed fit and is dropped
    max_translation: float = 0.03  # metres
    # at most this many frames are fitted per pass (0: all), spread evenly; the frames between them take the
    # corrections linearly interpolated from their fitted neighbours (the tracker's errors drift slowly), so a
    # 60 s video costs what a 20 s one does
    max_frames: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.resolution < 16:
            raise ValueError(f"steps must be >= 1 and resolution >= 16, got {self.steps} and {self.resolution}")
        if self.max_frames < 0 or self.max_frames == 1:
            raise ValueError(f"max_frames must be 0 (all) or at least 2, got {self.max_frames}")


@dataclass
class PoseTrack:
    """Everything that turns head poses into camera-space mesh vertices (`avatar.model.posed_vertices`).

    rotations: [T, 3, 3]; translations: [T, 3]; coeffs: [T, K]; body_warps: [T, 2, 3] or None.
    """

    neutral: Tensor  # [478, 3]
    basis: Tensor  # [K, 478, 3]
    rig: object  # avatar.mesh.ExtendedMeshRig
    rotations: Tensor
    translations: Tensor
    coeffs: Tensor
    body_warps: Tensor | None = None

    def __post_init__(self) -> None:
        t = self.rotations.shape[0]
        if self.rotations.shape != (t, 3, 3) or self.translations.shape != (t, 3) or self.coeffs.shape[0] != t:
            raise ValueError(f"rotations [T, 3, 3], translations [T, 3] and coeffs [T, K] must share T; got "
                             f"{tuple(self.rotations.shape)}, {tuple(self.translations.shape)}, {tuple(self.coeffs.shape)}")
        if self.body_warps is not None and self.body_warps.shape != (t, 2, 3):
            raise ValueError(f"body_warps must be [T={t}, 2, 3], got {tuple(self.body_warps.shape)}")

    def vertices(self, indices: list[int] | None = None, rotations: Tensor | None = None,
                 translations: Tensor | None = None) -> Tensor:
        """Camera-space vertices [len(indices), V, 3] (all frames when indices is None) with these poses
        ([len(indices), 3, 3] / [len(indices), 3]; default: the track's own)."""
        from avatar.model import posed_vertices

        rows = slice(None) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        rotations = self.rotations[rows] if rotations is None else rotations
        translations = self.translations[rows] if translations is None else translations
        warps = None if self.body_warps is None else self.body_warps[rows]
        return posed_vertices(self.neutral, self.basis, self.rig, rotations, translations, self.coeffs[rows], warps)


def axis_angle_to_matrix(rotation_vector: Tensor) -> Tensor:
    """Rodrigues' formula: [3] axis-angle (radians) -> [3, 3] rotation; differentiable, also at zero."""
    if rotation_vector.shape != (3,):
        raise ValueError(f"rotation_vector must be [3], got {tuple(rotation_vector.shape)}")
    angle_sq = (rotation_vector * rotation_vector).sum()
    angle = (angle_sq + 1e-24).sqrt()
    x, y, z = rotation_vector.unbind()
    zero = torch.zeros((), dtype=rotation_vector.dtype)
    cross = torch.stack([torch.stack([zero, -z, y]), torch.stack([z, zero, -x]), torch.stack([-y, x, zero])])
    # sin(a)/a and (1 - cos(a))/a^2 by their series below 1e-4 rad: exact to float precision, smooth at 0
    small = angle < 1e-4
    sinc = torch.where(small, 1 - angle_sq / 6, torch.sin(angle) / angle)
    cosc = torch.where(small, 0.5 - angle_sq / 24, (1 - torch.cos(angle)) / angle_sq.clamp_min(1e-24))
    return torch.eye(3, dtype=rotation_vector.dtype) + sinc * cross + cosc * (cross @ cross)


def _downsample(image: Tensor, size: tuple[int, int]) -> Tensor:
    """[H, W, C] -> [height, width, C] (size) by antialiased bilinear filtering."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    out = F.interpolate(image.permute(2, 0, 1)[None], size=tuple(size), mode="bilinear", antialias=True,
                        align_corners=False)
    return out[0].permute(1, 2, 0)


def refine_poses(params: dict[str, Tensor], parent: Tensor, track: PoseTrack, data, indices: list[int],
                 options: PoseRefineOptions = PoseRefineOptions(), backend: str = "auto",
                 progress: ProgressCallback | None = None) -> PoseTrack:
    """A copy of `track` whose poses of frames `indices` are refined against their pictures in `data`
    (`avatar.train.TrainingData`: frames, mattes, head boxes, plate, camera); other frames keep their poses.

    params / parent: the avatar's Gaussians (not changed; no gradient flows to them).
    """
    from render import Camera

    from avatar.train import render_frame

    if data.plate is None:
        raise ValueError("pose refinement compares over the clip's background plate; this data has none")
    scale = options.resolution / data.camera.width
    camera = Camera(data.camera.fx * scale, data.camera.fy * scale, data.camera.cx * scale, data.camera.cy * scale,
                    options.resolution, round(data.camera.height * scale), torch.eye(4))
    size = (camera.height, camera.width)
    plate = _downsample(data.plate.float() / 255.0, size)
    frozen = {k: v.detach() for k, v in params.items()}
    rotations, translations = track.rotations.clone(), track.translations.clone()
    warm_w, warm_d = torch.zeros(3), torch.zeros(3)
    every = sorted(set(int(i) for i in indices))
    order = spread_frames(every, options.max_frames)
    corrections: dict[int, tuple[Tensor, Tensor]] = {}  # fitted frame -> (rotation w, translation d)
    for step_index, index in enumerate(order):
        real = _downsample(data.frame(index), size)
        matte = _downsample(data.matte(index)[..., None], size)[..., 0]
        box = None if data.head_boxes is None else data.head_boxes[index] * scale
        mask = head_mask(matte, box)
        if not bool(mask.any()):
            continue
        w = warm_w.clone().requires_grad_(True)
        d = warm_d.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([{"params": [w], "lr": options.lr_rotation},
                                      {"params": [d], "lr": options.lr_translation}])
        base_rotation, base_translation = track.rotations[index], track.translations[index]
        for _ in range(options.steps):
            vertices = track.vertices([index], (axis_angle_to_matrix(w) @ base_rotation)[None],
                                      (base_translation + d)[None])[0]
            out, _ = render_frame(frozen, parent, vertices, data.faces, camera, plate, backend)
            loss = (out.color - real).abs()[mask].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        w, d = w.detach(), d.detach()
        if float(w.norm()) > options.max_rotation or float(d.norm()) > options.max_translation or \
                not bool(torch.isfinite(w).all() and torch.isfinite(d).all()):
            w, d = torch.zeros(3), torch.zeros(3)
        rotations[index] = axis_angle_to_matrix(w) @ base_rotation
        translations[index] = base_translation + d
        corrections[index] = (w, d)
        warm_w, warm_d = w, d
        if progress is not None and (step_index % 10 == 0 or step_index == len(order) - 1):
            progress("refining poses", (step_index + 1) / len(order), {"frame": index})
    for index in every:  # frames between the fitted ones (only when max_frames thinned them)
        if index not in corrections and corrections:
            w, d = interpolated_correction(corrections, index)
            rotations[index] = axis_angle_to_matrix(w) @ track.rotations[index]
            translations[index] = track.translations[index] + d
    return replace(track, rotations=rotations, translations=translations)


def spread_frames(frames: list[int], limit: int) -> list[int]:
    """At most `limit` of the sorted `frames` (all when limit is 0 or not below their count), evenly spread, the
    first and last included."""
    if limit <= 0 or len(frames) <= limit:
        return list(frames)
    picks = sorted(set(int(round(p)) for p in torch.linspace(0, len(frames) - 1, limit).tolist()))
    return [frames[p] for p in picks]


def interpolated_correction(corrections: dict[int, tuple[Tensor, Tensor]], frame: int) -> tuple[Tensor, Tensor]:
    """The (w [3], d [3]) correction of `frame` linearly interpolated between the fitted frames on either side
    (the nearest one's beyond the ends). Small rotations (<= max_rotation) interpolate well as axis-angle."""
    fitted = sorted(corrections)
    before = [f for f in fitted if f < frame]
    after = [f for f in fitted if f > frame]
    if not before or not after:
        return corrections[before[-1] if before else after[0]]
    low, high = before[-1], after[0]
    weight = (frame - low) / (high - low)
    (w0, d0), (w1, d1) = corrections[low], corrections[high]
    return w0 + weight * (w1 - w0), d0 + weight * (d1 - d0)
