"""Optional enhancers after the rasterizer: Wav2Lip lips, Real-ESRGAN upscaling and GFPGAN face restoration.

All need weights that nothing here downloads (`render.wav2lip`, `render.realesrgan`, `render.gfpgan`: a
`.safetensors` file in `models/wav2lip/`, `models/realesrgan/` or `models/gfpgan/`; `python app.py models` says
what is there and converts upstream `.pth` files). A request names what it wants in `RenderOptions.enhance`:
"none", or any "+"-joined set of these parts, applied in this order whatever order they are written in:

- "upscale": the avatar is rendered at its own (training) resolution over the background scaled to that size,
  Real-ESRGAN enlarges the picture, which is resized to the output size (area-averaged when the model's factor
  overshoots), and the result is laid over the full-size background by the Lanczos-enlarged coverage, so a
  picture background keeps its own sharpness. Without "upscale" the renderer's own Lanczos path is used.
- "lips": Wav2Lip redraws the lower half of each frame's face box from the speech around that frame (its mel
  spectrogram), over the avatar's own mouth: the public 2D lip-sync model that users of the open systems run,
  here as an option for people who have its weights.
- "face": each output frame's face is restored by GFPGAN (after "lips", as people pair the two: Wav2Lip's
  96 px mouth is soft). Mixed with the frame by `RenderOptions.face_strength`.
The face box and the five alignment points (eye centres, nose tip, mouth corners) come from the posed mesh, not
from a face detector: the frame was drawn from that mesh, so they are exact and never miss a face.

All are slow on a CPU (seconds per frame; `bench/RESULTS.md`), so the studio keeps them off by default.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
from torch import Tensor

ENHANCE_PARTS = ("upscale", "lips", "face")  # in the order they are applied
ENHANCE_KINDS = ("none", "face", "upscale", "face+upscale", "lips", "lips+face", "lips+face+upscale")  # for menus
# FaceMesh vertices (the first 468 of the extended mesh) behind the five points GFPGAN aligns by.
EYE_CORNERS = ((33, 133), (362, 263))  # each eye's two corners; their midpoint is the eye centre
NOSE_TIP = 1
MOUTH_CORNERS = (61, 291)  # outer lip corners


def enhance_parts(kind: str) -> tuple[str, ...]:
    """The parts a `RenderOptions.enhance` value names, in `ENHANCE_PARTS` order ("none" -> ())."""
    if not isinstance(kind, str):
        raise ValueError(f"enhance must be text such as 'face+upscale', got {type(kind).__name__}")
    if kind == "none":
        return ()
    parts = kind.split("+")
    unknown = [part for part in parts if part not in ENHANCE_PARTS]
    if unknown or len(set(parts)) != len(parts):
        raise ValueError(f"enhance must be 'none' or parts from {', '.join(ENHANCE_PARTS)} joined by '+' (each "
                         f"once), e.g. 'lips+face'; got {kind!r}")
    return tuple(part for part in ENHANCE_PARTS if part in parts)


def check_enhance_kind(kind: str) -> str:
    enhance_parts(kind)
    return kind


# each part's field in `Enhancers` and the module that loads its model (by name: imported only when used)
PART_FIELDS = {"upscale": "upscaler", "lips": "lips", "face": "face"}
PART_MODULES = {"upscale": ("render.realesrgan", "RealESRGAN"), "lips": ("render.wav2lip", "Wav2Lip"),
                "face": ("render.gfpgan", "GFPGAN")}


@dataclass(frozen=True)
class Enhancers:
    """Loaded enhancer models (None where not wanted): face = `render.gfpgan.GFPGAN`, upscaler =
    `render.realesrgan.RealESRGAN`, lips = `render.wav2lip.Wav2Lip`."""

    face: object | None = None
    upscaler: object | None = None
    lips: object | None = None

    def model(self, part: str):
        """The model of one part of `ENHANCE_PARTS` (None if not loaded)."""
        return getattr(self, PART_FIELDS[part])

    def describe(self) -> list[str]:
        return [model.describe() for model in map(self.model, ENHANCE_PARTS) if model is not None]


def missing_weights(kind: str) -> str | None:
    """A sentence naming the weights `kind` needs and does not find (None: all there). Cheap: no model loads."""
    import importlib

    modules = [importlib.import_module(PART_MODULES[part][0]) for part in enhance_parts(kind)]
    return " ".join(module.missing_message() for module in modules if module.find_weights() is None) or None


def load_enhancers(kind: str) -> Enhancers:
    """The models `kind` needs, from their default folders (FileNotFoundError with a sentence when absent)."""
    import importlib

    problem = missing_weights(kind)
    if problem:
        raise FileNotFoundError(problem)
    return Enhancers(**{PART_FIELDS[part]: getattr(importlib.import_module(module), name).load()
                        for part, (module, name) in PART_MODULES.items() if part in enhance_parts(kind)})


def chosen_models(kind: str, enhancers: Enhancers | None) -> Enhancers:
    """The models `kind` asks for (the others None), from `enhancers` (None: loaded from the default folders)."""
    if kind == "none":
        return Enhancers()
    enhancers = enhancers if enhancers is not None else load_enhancers(kind)
    parts = enhance_parts(kind)
    absent = [part for part in parts if enhancers.model(part) is None]
    if absent:
        raise ValueError(f"enhance {kind!r} needs models that were not loaded: {', '.join(absent)}")
    return Enhancers(**{PART_FIELDS[part]: enhancers.model(part) for part in parts})


def face_points(vertices: Tensor, camera) -> np.ndarray:
    """The five GFPGAN alignment points of posed frames -> [B, 5, 2] pixels (x, y) in OpenCV's convention
    (pixel centres at integers), ordered as seen in the image: left eye, right eye, nose tip, left mouth corner,
    right mouth corner ("left" = smaller x).

    vertices: [B, V, 3] world-space extended-mesh vertices (V >= 468, FaceMesh order first); camera:
    `render.camera.Camera` of the output frame.
    """
    pixels = _project(vertices, camera, [*EYE_CORNERS[0], *EYE_CORNERS[1], NOSE_TIP, *MOUTH_CORNERS])
    eyes = _left_to_right(torch.stack([pixels[:, 0:2].mean(1), pixels[:, 2:4].mean(1)], 1))
    mouth = _left_to_right(pixels[:, 5:7])
    return torch.cat([eyes, pixels[:, 4:5], mouth], 1).numpy()


def face_boxes(vertices: Tensor, camera, bottom_pad: float = 0.05) -> np.ndarray:
    """Face boxes of posed frames for Wav2Lip -> [B, 4] pixels (x0, y0, x1, y1), OpenCV convention: the box
    around the projected FaceMesh vertices (forehead to chin, cheek to cheek), its bottom moved down by
    `bottom_pad` of its height so the chin stays inside (upstream pads its detector's boxes by 10 px at 96-256 px
    faces). vertices: [B, V, 3] world-space extended-mesh vertices (V >= 468)."""
    pixels = _project(vertices, camera, list(range(468)))
    boxes = torch.cat([pixels.amin(1), pixels.amax(1)], 1)
    boxes[:, 3] += bottom_pad * (boxes[:, 3] - boxes[:, 1])
    return boxes.numpy()


def _project(vertices: Tensor, camera, index: list[int]) -> Tensor:
    """Pixels [B, K, 2] (OpenCV: centres at integers) of the vertices `index` of [B, V >= 468, 3] world-space
    vertices, through `camera` (the renderer's convention puts pixel centres at i + 0.5)."""
    if vertices.dim() != 3 or vertices.shape[-1] != 3 or vertices.shape[1] < 468:
        raise ValueError(f"vertices must have shape [B, V >= 468, 3], got {list(vertices.shape)}")
    w2c = camera.world_to_camera.double()
    points = vertices[:, index].double() @ w2c[:3, :3].T + w2c[:3, 3]
    if bool((points[..., 2] <= 0).any()):
        raise ValueError("a face point is behind the camera")
    return torch.stack([camera.fx * points[..., 0] / points[..., 2] + camera.cx,
                        camera.fy * points[..., 1] / points[..., 2] + camera.cy], -1) - 0.5


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
