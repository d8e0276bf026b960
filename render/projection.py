"""EWA projection of 3D Gaussians to screen-space 2D Gaussians, vectorised in torch (differentiable).

The torch twin of `render.cpu_projection` (numba, hand-written backward), which tests compare against
this module's outputs and autograd gradients; also handy for anyone needing screen-space footprints.
Rules (shared with `render.reference`, which re-derives them per Gaussian, and with gsplat):
- camera space: p = R @ mean + t (OpenCV: +z forward); Gaussians with z < NEAR_PLANE (0.01 scene units,
  i.e. 1 cm for a scene in metres) are culled (gsplat's default near plane).
- covariance: Sigma = R_q diag(exp(log_scale))^2 R_q^T, with the quaternion (w, x, y, z) normalised here.
- 2D covariance: J W Sigma W^T J^T + LOW_PASS * I (0.3 px^2 low-pass, as 3DGS and gsplat's eps2d).
  J is the perspective Jacobian at the mean with x/z and y/z clamped to 1.3x the field of view, as in
  3DGS and gsplat (keeps the footprint of Gaussians far outside the image from exploding).
- mean in pixels: (fx x/z + cx, fy y/z + cy); pixel (row i, column j) has its centre at (j + 0.5, i + 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from render.camera import Camera

NEAR_PLANE = 0.01
LOW_PASS = 0.3
FOV_CLAMP_MARGIN = 0.3  # J is evaluated with x/z clamped to the image edges plus 30% of tan(fov/2)


@dataclass
class ScreenGaussians:
    """Gaussians projected to the image plane (all [N, ...], same order as the input)."""

    means2d: Tensor  # [N, 2] pixels (x right, y down)
    conics: Tensor  # [N, 3] inverse 2D covariance (a, b, c) = [[a, b], [b, c]], 1/px^2
    depths: Tensor  # [N] camera-space z
    in_front: Tensor  # [N] bool, z >= NEAR_PLANE


def quaternion_to_rotation(quats: Tensor) -> Tensor:  # [N, 4] (w, x, y, z) -> [N, 3, 3]
    """Rotation matrices of (not necessarily unit) quaternions; normalised here, differentiably."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def project_gaussians(
    means: Tensor,  # [N, 3] world space
    quats: Tensor,  # [N, 4] (w, x, y, z)
    log_scales: Tensor,  # [N, 3]
    camera: Camera,
) -> ScreenGaussians:
    """EWA-project Gaussians through `camera` (rules in the module docstring)."""
    w2c = camera.world_to_camera.to(device=means.device, dtype=means.dtype)
    rotation_wc, translation = w2c[:3, :3], w2c[:3, 3]
    p_cam = means @ rotation_wc.T + translation
    x, y, z = p_cam.unbind(-1)
    in_front = z >= NEAR_PLANE
    # Culled Gaussians get z = 1 so that no inf/NaN enters the graph (NaN * 0 would poison gradients).
    z_safe = torch.where(in_front, z, torch.ones_like(z))

    tan_x = 0.5 * camera.width / camera.fx
    tan_y = 0.5 * camera.height / camera.fy
    lim_x_pos = (camera.width - camera.cx) / camera.fx + FOV_CLAMP_MARGIN * tan_x
    lim_x_neg = camera.cx / camera.fx + FOV_CLAMP_MARGIN * tan_x
    lim_y_pos = (camera.height - camera.cy) / camera.fy + FOV_CLAMP_MARGIN * tan_y
    lim_y_neg = camera.cy / camera.fy + FOV_CLAMP_MARGIN * tan_y
    x_over_z = x / z_safe
    y_over_z = y / z_safe
    tx = torch.clamp(x_over_z, -lim_x_neg, lim_x_pos)
    ty = torch.clamp(y_over_z, -lim_y_neg, lim_y_pos)
    inv_z = 1.0 / z_safe
    zeros = torch.zeros_like(z)
    jacobian = torch.stack(
        [camera.fx * inv_z, zeros, -camera.fx * tx * inv_z, zeros, camera.fy * inv_z, -camera.fy * ty * inv_z],
        dim=-1,
    ).reshape(-1, 2, 3)

    # J W R_q S: the 2D covariance is this [N, 2, 3] matrix times its transpose.
    scaled_rotation = quaternion_to_rotation(quats) * torch.exp(log_scales)[:, None, :]
    footprint = jacobian @ (rotation_wc @ scaled_rotation)
    row0, row1 = footprint[:, 0], footprint[:, 1]
    cov_xx = (row0 * row0).sum(-1) + LOW_PASS
    cov_xy = (row0 * row1).sum(-1)
    cov_yy = (row1 * row1).sum(-1) + LOW_PASS
    det = cov_xx * cov_yy - cov_xy * cov_xy
    conics = torch.stack([cov_yy, -cov_xy, cov_xx], dim=-1) / det[:, None]
    means2d = torch.stack([camera.fx * x_over_z + camera.cx, camera.fy * y_over_z + camera.cy], dim=-1)
    return ScreenGaussians(means2d=means2d, conics=conics, depths=z, in_front=in_front)
