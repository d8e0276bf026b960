"""gsplat (Apache-2.0) backend for CUDA machines: maps our parameters onto `gsplat.rasterization`.

Conventions checked against gsplat 1.5.3's source (`rendering.py`, `cuda/csrc/ProjectionEWA3DGSFused.cu`,
`RasterizeToPixels3DGSFwd.cu`): quaternions (w, x, y, z), normalised inside; `eps2d=0.3` adds 0.3 px^2 to
the 2D covariance ("classic" mode, no compensation); near plane 0.01; Jacobian with x/z clamped to 1.3x
the field of view; pixel centres at +0.5; alpha < 1/255 skipped; a pixel stops before the Gaussian that
takes T to <= 1e-4; tile bounding box from the opacity-aware extent sqrt(2 ln(255 opacity)). Differences
from ours: gsplat clamps alpha at 0.999 (we, like 3DGS, at 0.99), so nearly opaque Gaussians differ.
"RGB+D" gives sum_i w_i z_i with z the camera-space depth, our depth definition. The background is
composited here (not by gsplat) so that [3] and [H, W, 3] backgrounds are handled alike.
gsplat compiles its CUDA extension on first use (minutes) and needs CUDA; it is imported lazily.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render.camera import Camera
from render.rasterize import RenderOutput


def render_gsplat(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    colors: Tensor,  # [N, 3]
    camera: Camera,
    background: Tensor,  # [3] or [H, W, 3]
) -> RenderOutput:
    """Render on CUDA with gsplat; inputs may live on any device, outputs come back on means' device."""
    from gsplat import rasterization

    device = means.device
    cuda = torch.device("cuda")
    viewmats = camera.world_to_camera.to(cuda, torch.float32)[None]
    intrinsics = camera.intrinsics.to(cuda, torch.float32)[None]
    rendered, alphas, _ = rasterization(
        means=means.to(cuda),
        quats=quats.to(cuda),
        scales=torch.exp(log_scales.to(cuda)),
        opacities=torch.sigmoid(opacity_logits.to(cuda)),
        colors=colors.to(cuda),
        viewmats=viewmats,
        Ks=intrinsics,
        width=camera.width,
        height=camera.height,
        near_plane=0.01,
        eps2d=0.3,
        packed=False,
        tile_size=16,
        render_mode="RGB+D",
        rasterize_mode="classic",
    )
    alpha = alphas[0, ..., 0]
    color = rendered[0, ..., :3] + (1.0 - alpha)[..., None] * background.to(cuda)
    depth = rendered[0, ..., 3]
    return RenderOutput(color=color.to(device), alpha=alpha.to(device), depth=depth.to(device))
