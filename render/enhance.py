"""Optional enhancers after the rasterizer: GFPGAN face restoration and Real-ESRGAN upscaling.

Both need weights that nothing here downloads (`render.gfpgan`, `render.realesrgan`: a `.safetensors` file in
`models/gfpgan/` or `models/realesrgan/`; `python app.py models` says what is there and converts upstream `.pth`
files). A request names what it wants in `RenderOptions.enhance`:

- "upscale": the avatar is rendered at its own (training) resolution over the background scaled to that size,
  Real-ESRGAN enlarges the picture, which is resized to the output size (area-averaged when the model's factor
  overshoots), and the result is laid over the full-size background by the Lanczos-enlarged coverage, so a
  picture background keeps its own sharpness. Without "upscale" the renderer's own Lanczos path is used.
- "face": each output frame's face is restored by GFPGAN. Its five alignment points (eye centres, nose tip,
  mouth corners) come from the posed mesh, not from a face detector: the frame was drawn from that mesh, so the
  points are exact and never miss a face. Mixed with the frame by `RenderOptions.face_strength`.
- "face+upscale": both, upscaling first, so the face is restored at the output resolution.

Both are slow on a CPU (seconds per frame; `bench/RESULTS.md`), so the studio keeps them off by default.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ENHANCE_KINDS = ("none", "face", "upscale", "face+upscale")
# FaceMesh vertices (the first 468 of the extended mesh) behind the five points GFPGAN aligns by.
EYE_CORNERS = ((33, 133), (362, 263))  # each eye's two corners; their midpoint is the eye centre
NOSE_TIP = 1
MOUTH_CORNERS = (61, 291)  # outer lip corners


def check_enhance_kind(kind: str) -> str:
    if kind not in ENHANCE_KINDS:
        raise ValueError(f"enhance must be one of {', '.join(ENHANCE_KINDS)}; got {kind!r}")
    return kind


def wants_face(kind: str) -> bool:
    return "face" in check_enhance_kind(kind)


def wants_upscale(kind: str) -> bool:
    return "upscale" in check_enhance_kind(kind)


@dataclass(frozen=True)
class Enhancers:
    """Loaded enhancer models (None where not wanted): face = `render.gfpgan.GFPGAN`, upscaler =
    `render.realesrgan.RealESRGAN`."""

    face: object | None = None
    upscaler: object | None = None

    def describe(self) -> list[str]:
        return [model.describe() for model in (self.upscaler, self.face) if model is not None]


def missing_weights(kind: str) -> str | None:
    """A sentence naming the weights `kind` needs and does not find (None: all there). Cheap: no model loads."""
    from render import gfpgan, realesrgan

    missing = []
    if wants_upscale(kind) and realesrgan.find_weights() is None:
        missing.append(realesrgan.missing_message())
    if wants_face(kind) and gfpgan.find_weights() is None:
        missing.append(gfpgan.missing_message())
    return " ".join(missing) or None


def load_enhancers(kind: str) -> Enhancers:
    """The models `kind` needs, from their default folders (FileNotFoundError with a sentence when absent)."""
    from render.gfpgan import GFPGAN
    from render.realesrgan import RealESRGAN

    problem = missing_weights(kind)
    if problem:
        raise FileNotFoundError(problem)
    return Enhancers(face=GFPGAN.load() if wants_face(kind) else None,
                     upscaler=RealESRGAN.load() if wants_upscale(kind) else None)


def chosen_models(kind: str, enhancers: Enhancers | None) -> tuple[object | None, object | None]:
    """(face model, upscaler) that `kind` asks for, from `enhancers` (None: loaded from the default folders)."""
    if kind == "none":
        return None, None
    enhancers = enhancers if enhancers is not None else load_enhancers(kind)
    face = enhancers.face if wants_face(kind) else None
    upscaler = enhancers.upscaler if wants_upscale(kind) else None
    if (wants_face(kind) and face is None) or (wants_upscale(kind) and upscaler is None):
        raise ValueError(f"enhance {kind!r} needs models that were not loaded")
    return face, upscaler


def face_points(vertices: Tensor, camera) -> np.ndarray:
    """The five GFPGAN alignment points of posed frames -> [B, 5, 2] pixels (x, y) in OpenCV's convention
    (pixel centres at integers), ordered as seen in the image: left eye, right eye, nose tip, left mouth corner,
    right mouth corner ("left" = smaller x).

    vertices: [B, V, 3] world-space extended-mesh vertices (V >= 468, FaceMesh order first); camera:
    `render.camera.Camera` of the output frame.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3 or vertices.shape[1] < 468:
        raise ValueError(f"vertices must have shape [B, V >= 468, 3], got {list(vertices.shape)}")
    index = [*EYE_CORNERS[0], *EYE_CORNERS[1], NOSE_TIP, *MOUTH_CORNERS]
    points = vertices[:, index].double()
    w2c = camera.world_to_camera.double()
    points = points @ w2c[:3, :3].T + w2c[:3, 3]
    if bool((points[..., 2] <= 0).any()):
        raise ValueError("a face point is behind the camera")
    pixels = torch.stack([camera.fx * points[..., 0] / points[..., 2] + camera.cx,
                          camera.fy * points[..., 1] / points[..., 2] + camera.cy], -1) - 0.5  # centres at i + 0.5
    eyes = torch.stack([pixels[:, 0:2].mean(1), pixels[:, 2:4].mean(1)], 1)
    mouth = pixels[:, 5:7]
    eyes = _left_to_right(eyes)
    mouth = _left_to_right(mouth)
    return torch.cat([eyes, pixels[:, 4:5], mouth], 1).numpy()


def _left_to_right(pair: Tensor) -> Tensor:  # pair: [B, 2, 2] -> the same points, smaller x first
    swap = pair[:, 0, 0] > pair[:, 1, 0]
    return torch.where(swap[:, None, None], pair.flip(1), pair)


def upscale_over(small: np.ndarray, alpha: np.ndarray, background: np.ndarray, upscaler) -> np.ndarray:
    """Upscale a frame drawn at the render size and lay it over the output-size background.

    small: [h, w, 3] uint8, the avatar over the background scaled to h x w; alpha: [h, w] float coverage in
    0..1; background: [H, W, 3] float in 0..1; upscaler: a `RealESRGAN`. Returns [H, W, 3] float in 0..1.
    """
    import cv2

    height, width = background.shape[:2]
    if small.ndim != 3 or small.shape[-1] != 3 or small.dtype != np.uint8 or alpha.shape != small.shape[:2]:
        raise ValueError(f"small must be [h, w, 3] uint8 and alpha [h, w]; got {small.shape} {small.dtype}, "
                         f"{alpha.shape}")
    big = upscaler.upscale(small[None])[0]
    shrink = big.shape[1] > width
    big = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
    coverage = cv2.resize(alpha.astype(np.float32), (width, height), interpolation=cv2.INTER_LANCZOS4)
    coverage = np.clip(coverage, 0.0, 1.0)[..., None]
    return coverage * (big.astype(np.float32) / 255.0) + (1.0 - coverage) * background


def restore_faces(frames: np.ndarray, vertices: Tensor, camera, face_model, strength: float) -> np.ndarray:
    """frames: [B, H, W, 3] uint8 at `camera`'s size; vertices: [B, V, 3] their posed meshes -> restored frames."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"face strength must be in [0, 1], got {strength}")
    if strength == 0.0:
        return frames
    return face_model.restore(frames, face_points(vertices, camera), strength=strength)


def models_folder() -> Path:
    """`<repo>/models`, where optional weights live."""
    return Path(__file__).resolve().parents[1] / "models"
