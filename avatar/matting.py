"""Head crop, selfie-segmentation mattes and the background plate.

The crop is one fixed square box for the whole clip (so the camera intrinsics stay fixed; the head moves
inside it), covering the head with hair and some neck, resized to the training resolution. Mattes come from
MediaPipe selfie segmentation run on the crop (person = 255). The background plate is the per-pixel median of
sampled crops where the matte says background, with never-seen pixels filled by cv2.inpaint.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.tracking import CHIN, FOREHEAD_TOP


@dataclass(frozen=True)
class CropConfig:
    """How the head crop is framed (saved with the artefact)."""

    resolution: int = 512  # training resolution (square)
    above_forehead: float = 0.55  # margin above the forehead top, in face heights (hair)
    below_chin: float = 0.65  # margin below the chin, in face heights (neck)
    min_width_factor: float = 1.7  # the box is at least this many face-mesh widths wide (ears, hair)
    segmentation_model: int = 0  # MediaPipe selfie segmentation: 0 = general (256x256), 1 = landscape


@dataclass(frozen=True)
class CropBox:
    """Square box in source pixels: [x0, x0 + size) x [y0, y0 + size)."""

    x0: int
    y0: int
    size: int

    def to_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "size": self.size}


def head_crop_box(
    landmarks: np.ndarray, valid: np.ndarray, width: int, height: int, config: CropConfig = CropConfig()
) -> CropBox:
    """One square box for the clip from landmarks [T, 478, >=2] (pixels) of the valid frames.

    The box spans the 2nd-98th percentile of the face's extent over time plus the hair and neck margins; it is
    shifted to stay inside the image and shrunk to the image's shorter side if it would not fit.
    """
    if landmarks.ndim != 3 or landmarks.shape[1] != 478 or valid.shape != (landmarks.shape[0],):
        raise ValueError(f"landmarks must be [T, 478, 2|3] with valid [T], got {landmarks.shape}, {valid.shape}")
    points = landmarks[valid][..., :2]
    if len(points) == 0:
        raise ValueError("no valid frame to place the head crop")
    face_height = float(np.median(np.linalg.norm(points[:, CHIN] - points[:, FOREHEAD_TOP], axis=-1)))
    left = np.percentile(points[..., 0].min(1), 2)
    right = np.percentile(points[..., 0].max(1), 98)
    top = np.percentile(points[:, FOREHEAD_TOP, 1], 2) - config.above_forehead * face_height
    bottom = np.percentile(points[:, CHIN, 1], 98) + config.below_chin * face_height
    size = max(bottom - top, (right - left) * config.min_width_factor)
    size = int(round(min(size, width, height)))
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    x0 = int(round(np.clip(centre_x - size / 2, 0, width - size)))
    y0 = int(round(np.clip(centre_y - size / 2, 0, height - size)))
    return CropBox(x0, y0, size)


def crop_frame(frame: np.ndarray, box: CropBox, resolution: int) -> np.ndarray:  # frame: [H, W, 3] uint8
    """The box cut out of a frame and resized to [resolution, resolution, 3] (area filter when shrinking)."""
    import cv2

    height, width = frame.shape[:2]
    if box.x0 < 0 or box.y0 < 0 or box.x0 + box.size > width or box.y0 + box.size > height:
        raise ValueError(f"crop box {box} does not fit a {width}x{height} frame")
    patch = frame[box.y0 : box.y0 + box.size, box.x0 : box.x0 + box.size]
    if box.size == resolution:
        return np.ascontiguousarray(patch)
    interpolation = cv2.INTER_AREA if box.size > resolution else cv2.INTER_CUBIC
    return cv2.resize(patch, (resolution, resolution), interpolation=interpolation)


def crop_landmarks(landmarks: np.ndarray, box: CropBox, resolution: int) -> np.ndarray:  # [..., 2|3]
    """Landmark pixels in crop coordinates (continuous, pixel centres at integer + 0.5; z scaled alike)."""
    scale = resolution / box.size
    out = landmarks.astype(np.float32).copy()
    out[..., 0] = (out[..., 0] - box.x0) * scale
    out[..., 1] = (out[..., 1] - box.y0) * scale
    if out.shape[-1] > 2:
        out[..., 2:] *= scale
    return out


class Segmenter:
    """MediaPipe selfie segmentation as a context manager; `matte(frame)` -> [H, W] uint8, person = 255."""

    def __init__(self, model_selection: int = 0) -> None:
        import mediapipe as mp

        if model_selection not in (0, 1):
            raise ValueError(f"model_selection must be 0 or 1, got {model_selection}")
        self._segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection)

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self._segmenter.close()

    def matte(self, frame: np.ndarray) -> np.ndarray:  # frame: [H, W, 3] uint8 RGB -> [H, W] uint8
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be [H, W, 3] uint8 RGB, got {frame.shape} {frame.dtype}")
        mask = self._segmenter.process(np.ascontiguousarray(frame)).segmentation_mask
        return np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8)


def background_plate(
    frames: np.ndarray, mattes: np.ndarray, max_samples: int = 32, person_dilate_px: int = 7
) -> tuple[np.ndarray, float]:
    """Background plate [H, W, 3] uint8 from frames [T, H, W, 3] uint8 and mattes [T, H, W] uint8.

    Per pixel: the median over up to `max_samples` evenly spaced frames in which that pixel is background
    (matte < 128 after dilating the person by `person_dilate_px`, to keep hair fringes out). Pixels that are
    never background are filled with cv2.inpaint (Telea). Also returns the fraction of inpainted pixels.
    """
    import cv2

    if frames.ndim != 4 or frames.shape[-1] != 3 or mattes.shape != frames.shape[:3]:
        raise ValueError(f"need frames [T, H, W, 3] and mattes [T, H, W], got {frames.shape}, {mattes.shape}")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(max_samples, len(frames))).round().astype(int))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * person_dilate_px + 1,) * 2)
    samples = frames[picks].astype(np.float32)
    for row, index in enumerate(picks):
        person = cv2.dilate((mattes[index] >= 128).astype(np.uint8), kernel) > 0
        samples[row][person] = np.nan
    plate = _nan_median(samples)
    hole = ~np.isfinite(plate).all(-1)
    plate = np.nan_to_num(plate, nan=0.0).clip(0, 255).astype(np.uint8)
    if hole.any():
        radius = max(3, frames.shape[1] // 64)
        plate = cv2.inpaint(plate, hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return plate, float(hole.mean())


def _nan_median(samples: np.ndarray) -> np.ndarray:  # [S, H, W, C] float32 with NaN -> [H, W, C]
    """Median over axis 0 ignoring NaN (NaN where all are NaN); a sort-based twin of np.nanmedian, ~10x faster."""
    ordered = np.sort(samples, axis=0)  # NaN sorts last
    count = np.isfinite(ordered).sum(0)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None], 0)[0]
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0)[None], 0)[0]
    median = (low + high) / 2
    median[count == 0] = np.nan
    return median
