"""Pinhole camera: intrinsics plus a world-to-camera transform (OpenCV convention: +x right, +y down,
+z forward; pixel centres at integer + 0.5)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Camera:
    """A pinhole camera rendering an image of `height` x `width` pixels.

    world_to_camera: [4, 4] rigid transform (rotation + translation, last row 0 0 0 1).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    world_to_camera: Tensor  # [4, 4]

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        for name in ("fx", "fy", "cx", "cy"):
            value = float(getattr(self, name))
            if not (value == value) or abs(value) == float("inf"):
                raise ValueError(f"camera {name} must be finite, got {value}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        w2c = self.world_to_camera
        if not isinstance(w2c, Tensor) or tuple(w2c.shape) != (4, 4):
            raise ValueError(f"world_to_camera must be a [4, 4] tensor, got {getattr(w2c, 'shape', type(w2c))}")
        if not torch.isfinite(w2c).all():
            raise ValueError("world_to_camera has NaN or inf entries")

    @property
    def intrinsics(self) -> Tensor:  # [3, 3]
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]],
            dtype=self.world_to_camera.dtype,
        )

    @staticmethod
    def look_at_origin(width: int, height: int, fov_deg: float = 30.0, distance: float = 1.0) -> "Camera":
        """A camera at (0, 0, -distance) looking at the world origin (+z forward, y down)."""
        import math

        focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
        w2c = torch.eye(4)
        w2c[2, 3] = distance
        return Camera(focal, focal, width / 2, height / 2, width, height, w2c)
