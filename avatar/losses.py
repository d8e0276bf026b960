"""Photometric losses and the regularisers that keep Gaussians near their triangles.

All images are float tensors in [0, 1], shape [H, W, 3] (channels last, as the rasterizer returns them).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from avatar import ssim_fast


def _check_image_pair(prediction: Tensor, target: Tensor) -> None:
    if prediction.ndim != 3 or prediction.shape[-1] != 3:
        raise ValueError(f"prediction must be [H, W, 3], got {tuple(prediction.shape)}")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")


def l1_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over all pixels and channels."""
    _check_image_pair(prediction, target)
    return (prediction - target).abs().mean()


def box_l1_loss(prediction: Tensor, target: Tensor, box: Tensor) -> Tensor:
    """Mean absolute error over the pixels whose centres lie inside box [4] (x0, y0, x1, y1 pixels; clipped to
    the image), e.g. the mouth (`avatar.evaluate.mouth_box`); 0 when the box holds no pixel."""
    _check_image_pair(prediction, target)
    if box.shape != (4,):
        raise ValueError(f"box must be [4] (x0, y0, x1, y1), got {tuple(box.shape)}")
    height, width = prediction.shape[:2]
    # pixel i's centre is i + 0.5: inside when x0 <= i + 0.5 <= x1
    x0, y0 = (max(0, math.ceil(float(v) - 0.5)) for v in box[:2])
    x1, y1 = (math.floor(float(v) - 0.5) + 1 for v in box[2:])
    x1, y1 = min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        return prediction.sum() * 0.0
    return (prediction[y0:y1, x0:x1] - target[y0:y1, x0:x1]).abs().mean()


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype) -> Tensor:  # [1, 1, size, size]
    coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(prediction: Tensor, target: Tensor, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM (Wang et al. 2004, Gaussian window, C1=0.01², C2=0.03²), averaged over channels.

    prediction, target: [H, W, 3]. Returns [H, W]; borders use zero padding like the common 3DGS code.
    """
    _check_image_pair(prediction, target)
    window = _gaussian_window(window_size, sigma, prediction.dtype).expand(3, 1, window_size, window_size)
    x = prediction.permute(2, 0, 1)[None]
    y = target.permute(2, 0, 1)[None]
    pad = window_size // 2

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, window, padding=pad, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    sigma_xx = blur(x * x) - mu_x**2
    sigma_yy = blur(y * y) - mu_y**2
    sigma_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    numerator = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (sigma_xx + sigma_yy + c2)
    return (numerator / denominator).mean(dim=1)[0]


def dssim_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Structural dissimilarity (1 - mean SSIM) / 2, in [0, 1].

    CPU float32 pairs whose target needs no gradient (training) go through `avatar.ssim_fast` (numba, sums
    in float64: the exact map to float32 rounding, ~8x faster forward + backward at 512x512); anything else
    (float64, CUDA, a target that requires grad) through `ssim_map` above.
    """
    _check_image_pair(prediction, target)
    if ssim_fast.supports(prediction, target):
        return (1.0 - ssim_fast.ssim_map_fast(prediction, target).mean()) / 2
    return (1.0 - ssim_map(prediction, target).mean()) / 2


def photometric_loss(prediction: Tensor, target: Tensor, dssim_weight: float = 0.2) -> Tensor:
    """(1 - λ)·L1 + λ·D-SSIM, the usual 3DGS image loss (λ = dssim_weight)."""
    if not 0.0 <= dssim_weight <= 1.0:
        raise ValueError(f"dssim_weight must be in [0, 1], got {dssim_weight}")
    loss = (1 - dssim_weight) * l1_loss(prediction, target)
    if dssim_weight > 0:
        loss = loss + dssim_weight * 2 * dssim_loss(prediction, target)  # 2x: weight applies to 1 - SSIM
    return loss


def local_position_penalty(local_means: Tensor, threshold: float) -> Tensor:
    """Mean of max(|local mean| - threshold, 0): Gaussians may move within `threshold` triangle units freely.

    local_means: [N, 3] positions in their parent triangle's frame (units of the triangle's scale).
    """
    if local_means.ndim != 2 or local_means.shape[-1] != 3:
        raise ValueError(f"local_means must be [N, 3], got {tuple(local_means.shape)}")
    if local_means.shape[0] == 0:
        return local_means.sum()
    return F.relu(local_means.norm(dim=-1) - threshold).mean()


def local_scale_penalty(local_log_scales: Tensor, max_log_scale: float) -> Tensor:
    """Mean of max(log scale - max_log_scale, 0): no Gaussian grows far beyond its triangle.

    local_log_scales: [N, 3] log of the scale in units of the parent triangle's size.
    """
    if local_log_scales.ndim != 2 or local_log_scales.shape[-1] != 3:
        raise ValueError(f"local_log_scales must be [N, 3], got {tuple(local_log_scales.shape)}")
    if local_log_scales.shape[0] == 0:
        return local_log_scales.sum()
    return F.relu(local_log_scales - max_log_scale).mean()


def psnr(prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]; `mask` [H, W] bool limits it to a region."""
    _check_image_pair(prediction, target)
    squared = (prediction.detach().clamp(0, 1) - target.detach()) ** 2
    if mask is not None:
        if mask.shape != prediction.shape[:2]:
            raise ValueError(f"mask must be [H, W] = {tuple(prediction.shape[:2])}, got {tuple(mask.shape)}")
        squared = squared[mask.bool()]
        if squared.numel() == 0:
            raise ValueError("psnr mask selects no pixel")
    mse = float(squared.mean())
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)
