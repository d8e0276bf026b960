"""Slow, obviously correct pure-torch twin of the rasterizer, for tests only (small N, small images).

It re-derives every rule per Gaussian and per pixel, with no tiles and no hand-written gradients
(torch autograd gives them): for each Gaussian in front of the near plane, sorted by camera depth
(stable), it builds the 3D covariance R S S^T R^T, projects it with the (clamped) perspective Jacobian,
adds the 0.3 px low-pass, inverts it with `torch.linalg.inv`, evaluates alpha on every pixel centre and
composites front to back with the same skip (alpha < 1/255), clamp (0.99) and stop (T would fall to
<= 1e-4, that Gaussian excluded) rules as `render.cpu_backend`. Memory is O(pixels x Gaussians) through
the autograd graph, so keep it to tiny scenes. Works in float32 or float64 (the inputs' dtype).
"""
from __future__ import annotations

import torch
from torch import Tensor

from render.camera import Camera
from render.rasterize import RenderOutput

NEAR_PLANE = 0.01
LOW_PASS = 0.3
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_STOP = 1e-4


def _rotation(q: Tensor) -> Tensor:  # [4] (w, x, y, z) -> [3, 3]
    w, x, y, z = q / torch.linalg.vector_norm(q)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
    ])


def render_reference(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    colors: Tensor,  # [N, 3]
    camera: Camera,
    background: Tensor,  # [3] or [H, W, 3]
) -> RenderOutput:
    """Per-pixel, per-Gaussian rendering (see module docstring); inputs assumed validated."""
    dtype, device = means.dtype, means.device
    width, height = camera.width, camera.height
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    w2c = camera.world_to_camera.to(device=device, dtype=dtype)
    view_rotation = w2c[:3, :3]
    rows = torch.arange(height, device=device, dtype=dtype) + 0.5
    cols = torch.arange(width, device=device, dtype=dtype) + 0.5
    pixel_y, pixel_x = torch.meshgrid(rows, cols, indexing="ij")  # [H, W]

    cam_points = means @ view_rotation.T + w2c[:3, 3]
    depths = cam_points[:, 2]
    order = [i for i in torch.argsort(depths.detach(), stable=True).tolist() if depths[i] >= NEAR_PLANE]

    transmittance = torch.ones(height, width, device=device, dtype=dtype)
    done = torch.zeros(height, width, device=device, dtype=torch.bool)
    color = torch.zeros(height, width, 3, device=device, dtype=dtype)
    depth = torch.zeros(height, width, device=device, dtype=dtype)
    lim_x = (-(cx / fx + 0.15 * width / fx), (width - cx) / fx + 0.15 * width / fx)
    lim_y = (-(cy / fy + 0.15 * height / fy), (height - cy) / fy + 0.15 * height / fy)
    for i in order:
        x, y, z = cam_points[i]
        scale = torch.diag(torch.exp(log_scales[i]))
        rotation = _rotation(quats[i])
        cov_world = rotation @ scale @ scale @ rotation.T
        cov_cam = view_rotation @ cov_world @ view_rotation.T
        tx = z * torch.clamp(x / z, *lim_x)
        ty = z * torch.clamp(y / z, *lim_y)
        zero = torch.zeros((), device=device, dtype=dtype)
        jacobian = torch.stack([
            torch.stack([fx / z, zero, -fx * tx / z**2]),
            torch.stack([zero, fy / z, -fy * ty / z**2]),
        ])
        cov2d = jacobian @ cov_cam @ jacobian.T + LOW_PASS * torch.eye(2, device=device, dtype=dtype)
        conic = torch.linalg.inv(cov2d)
        dx = pixel_x - (fx * x / z + cx)
        dy = pixel_y - (fy * y / z + cy)
        mahalanobis = conic[0, 0] * dx * dx + (conic[0, 1] + conic[1, 0]) * dx * dy + conic[1, 1] * dy * dy
        alpha = torch.clamp(torch.sigmoid(opacity_logits[i]) * torch.exp(-0.5 * mahalanobis), max=ALPHA_MAX)
        hit = (alpha >= ALPHA_MIN) & ~done
        next_transmittance = transmittance * (1 - alpha)
        stop = hit & (next_transmittance <= T_STOP)
        take = hit & ~stop
        weight = torch.where(take, alpha * transmittance, torch.zeros_like(alpha))
        color = color + weight[..., None] * colors[i]
        depth = depth + weight * z
        transmittance = torch.where(take, next_transmittance, transmittance)
        done = done | stop
    alpha_out = 1 - transmittance
    color = color + transmittance[..., None] * background
    return RenderOutput(color=color, alpha=alpha_out, depth=depth)
