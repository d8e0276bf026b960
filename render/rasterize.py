"""The one public entry point: render N 3D Gaussians through a pinhole camera, on a chosen backend.

Backends (all follow the rules of `render.projection` and `render.cpu_backend`):
- "cpu": numba tile rasterizer with its own backward (`render.cpu_backend`), the default without CUDA.
- "gsplat": gsplat 1.5.3 on CUDA (`render.gsplat_backend`); differs from ours only in clamping alpha at
  0.999 instead of 0.99 (3DGS) where a Gaussian is nearly opaque.
- "reference": slow pure-torch per-pixel twin used by tests (`render.reference`); accepts float64.
"auto" picks gsplat when `torch.cuda.is_available()` and gsplat imports, else cpu.
Outputs are on the device of the inputs (a backend may compute elsewhere, e.g. gsplat on CUDA).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from render.camera import Camera

BACKENDS = ("auto", "cpu", "gsplat", "reference")


@dataclass
class RenderOutput:
    """A rendered image.

    color: [H, W, 3] composited over the background: sum_i w_i c_i + (1 - alpha) background.
    alpha: [H, W] coverage 1 - prod_i (1 - alpha_i).
    depth: [H, W] alpha-weighted camera-space z, sum_i w_i z_i (not divided by alpha; gsplat's "RGB+D";
           the expected depth is depth / alpha where alpha > 0). w_i = alpha_i prod_{j<i} (1 - alpha_j).
    """

    color: Tensor  # [H, W, 3]
    alpha: Tensor  # [H, W]
    depth: Tensor  # [H, W]


@functools.lru_cache(maxsize=1)
def _gsplat_importable() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:  # gsplat's import can fail in many ways without CUDA; any of them means "absent"
        return False
    return True


def available_backends() -> list[str]:
    """Backends that work on this machine ("auto" is always accepted and not listed)."""
    names = ["cpu", "reference"]
    if torch.cuda.is_available() and _gsplat_importable():
        names.insert(0, "gsplat")
    return names


def _check_tensor(name: str, value: object, shape: tuple, dtypes: tuple[torch.dtype, ...]) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != len(shape) or any(s is not None and value.shape[i] != s for i, s in enumerate(shape)):
        expected = "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {expected}, got {list(value.shape)}")
    if value.dtype not in dtypes:
        allowed = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name} must be {allowed}, got {str(value.dtype).replace('torch.', '')}")
    # A sum is non-finite whenever an entry is (and, rarely, when finite entries overflow): one cheap pass
    # that allocates nothing, and the exact test only when it fires.
    if not math.isfinite(float(value.detach().sum())) and not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return value


def validate_inputs(
    means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor, colors: Tensor,
    camera: Camera, background: Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float32,),
) -> None:
    """Raise ValueError with a readable sentence for any malformed rendering input."""
    if not isinstance(camera, Camera):
        raise ValueError(f"camera must be a render.camera.Camera, got {type(camera).__name__}")
    _check_tensor("means", means, (None, 3), dtypes)
    n = means.shape[0]
    _check_tensor("quats", quats, (n, 4), dtypes)
    _check_tensor("log_scales", log_scales, (n, 3), dtypes)
    _check_tensor("opacity_logits", opacity_logits, (n,), dtypes)
    _check_tensor("colors", colors, (n, 3), dtypes)
    for name, value in (("quats", quats), ("log_scales", log_scales), ("opacity_logits", opacity_logits),
                        ("colors", colors)):
        if value.device != means.device:
            raise ValueError(f"{name} is on {value.device} but means is on {means.device}")
    if n and bool((quats.detach().norm(dim=-1) == 0).any()):
        raise ValueError("quats contains a zero quaternion (it has no rotation)")
    if not isinstance(background, Tensor):
        raise ValueError(f"background must be a torch.Tensor, got {type(background).__name__}")
    image_shape = (camera.height, camera.width, 3)
    if tuple(background.shape) not in ((3,), image_shape):
        raise ValueError(f"background must have shape [3] or {list(image_shape)}, got {list(background.shape)}")
    _check_tensor("background", background, tuple(background.shape), dtypes)


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "gsplat" if "gsplat" in available_backends() else "cpu"
    if backend == "gsplat" and "gsplat" not in available_backends():
        reason = "CUDA is not available" if not torch.cuda.is_available() else "gsplat failed to import"
        raise ValueError(f"the gsplat backend needs CUDA and gsplat, but {reason}; use backend='cpu'")
    return backend


def render_gaussians(
    means: Tensor,  # [N, 3] world space
    quats: Tensor,  # [N, 4] (w, x, y, z), any non-zero norm
    log_scales: Tensor,  # [N, 3] log of the standard deviations along the Gaussian's axes
    opacity_logits: Tensor,  # [N] opacity = sigmoid(logit)
    colors: Tensor,  # [N, 3] linear RGB, used as given
    camera: Camera,
    background: Tensor,  # [3] or [H, W, 3]
    backend: str = "auto",
) -> RenderOutput:
    """Render Gaussians to colour, alpha and depth (float32; differentiable in all five Gaussian inputs
    and the background). Raises ValueError for malformed input or an unavailable backend."""
    name = _resolve_backend(backend)
    dtypes = (torch.float32, torch.float64) if name == "reference" else (torch.float32,)
    validate_inputs(means, quats, log_scales, opacity_logits, colors, camera, background, dtypes)
    if name == "reference":
        from render.reference import render_reference

        return render_reference(means, quats, log_scales, opacity_logits, colors, camera, background)
    if name == "gsplat":
        from render.gsplat_backend import render_gsplat

        return render_gsplat(means, quats, log_scales, opacity_logits, colors, camera, background)
    return _render_cpu(means, quats, log_scales, opacity_logits, colors, camera, background)


def _render_cpu(means, quats, log_scales, opacity_logits, colors, camera, background) -> RenderOutput:
    from render.cpu_backend import rasterize_cpu, render_cpu_no_grad

    device = means.device
    inputs = [t.cpu() for t in (means, quats, log_scales, opacity_logits, colors, background)]
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        color, alpha, depth = render_cpu_no_grad(*inputs[:5], camera, inputs[5])  # composites in the kernel
        return RenderOutput(color=color.to(device), alpha=alpha.to(device), depth=depth.to(device))
    color, alpha, depth = rasterize_cpu(*inputs[:5], camera)
    color = color + (1.0 - alpha)[..., None] * inputs[5]
    return RenderOutput(color=color.to(device), alpha=alpha.to(device), depth=depth.to(device))
