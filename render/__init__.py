"""Gaussian rasterization: `render_gaussians` on a CPU (numba), gsplat (CUDA) or reference backend."""
from render.camera import Camera
from render.rasterize import RenderOutput, available_backends, render_gaussians

__all__ = ["Camera", "RenderOutput", "available_backends", "render_gaussians"]
