"""The mouth's inside (teeth, tongue, cavity) where the footage does not show it: generic colours.

A portrait, or a video of someone who barely opens their mouth, shows little of the teeth, tongue and mouth
cavity, yet those Gaussians are trained with the rest. Their gradients are tiny (the lips hide them), but Adam
normalises every step, so their colours wander to whatever explains a few blended pixels: red, green and blue
speckles that appear as soon as the driven jaw drops further than the footage did.

- `generic_mouth_colors`: sets the mouth parts' Gaussians to `GENERIC_PART_COLORS` (done before training, so
  training replaces them wherever the mouth opens on camera).
- `blend_weights`: how much each Gaussian shows in some frames: the sum over their pixels of its blending weight
  w_i = alpha_i * T_i, read exactly as d(sum of the red channel)/d(red of Gaussian i) from the rasterizer's
  backward pass (the colour is composited as sum_i w_i c_i + (1 - alpha) background).
- `reset_unseen_mouth`: after training, the mouth parts' Gaussians whose blend weight stays below a threshold go
  back to their generic colour. By construction this moves those frames' renders by at most about
  threshold x colour change over all pixels together.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Generic colours of the mouth interior (linear RGB), used where the clip never shows it (a photo, a closed
# mouth): training replaces them wherever the mouth opens on camera.
GENERIC_PART_COLORS = {"upper_teeth": (0.92, 0.90, 0.85), "lower_teeth": (0.90, 0.88, 0.82),
                       "tongue": (0.70, 0.33, 0.33), "mouth_cavity": (0.12, 0.04, 0.04)}


def _mouth_rows(parent: Tensor, topology) -> dict[str, Tensor]:
    """Per mouth part, which Gaussians [N] bool sit on its triangles."""
    from avatar.mesh import PARTS

    face_part = topology.face_part[parent]
    return {part: face_part == PARTS.index(part) for part in GENERIC_PART_COLORS}


def generic_mouth_colors(params: dict[str, Tensor], parent: Tensor, topology) -> None:
    """Set the colours [N, 3] of the Gaussians on the mouth parts to `GENERIC_PART_COLORS`, in place."""
    for part, rows in _mouth_rows(parent, topology).items():
        params["colors"][rows] = torch.tensor(GENERIC_PART_COLORS[part], dtype=params["colors"].dtype)


def blend_weights(params: dict[str, Tensor], parent: Tensor, data, indices: list[int],
                  backend: str = "auto") -> Tensor:
    """Each Gaussian's blending weight summed over the pixels of frames `indices` of `data` (a
    `avatar.train.TrainingData`) -> [N] float, in pixels (1 = one pixel's worth of full visibility)."""
    from avatar.train import render_frame

    if not indices:
        raise ValueError("blend weights need at least one frame")
    n = int(parent.shape[0])
    weights = torch.zeros(n, dtype=torch.float64)
    colors = params["colors"].detach().clone().requires_grad_(True)  # [N, 3]
    fixed = {key: value.detach() for key, value in params.items()}
    background = torch.zeros(data.camera.height, data.camera.width, 3)
    for index in indices:
        out, _ = render_frame({**fixed, "colors": colors}, parent, data.vertices[index], data.faces, data.camera,
                              background, backend)
        (grad,) = torch.autograd.grad(out.color[..., 0].sum(), colors)
        weights += grad[:, 0].double()
    return weights


def reset_unseen_mouth(params: dict[str, Tensor], parent: Tensor, topology, weights: Tensor,
                       min_weight: float) -> tuple[dict[str, Tensor], int]:
    """A copy of `params` whose mouth-part Gaussians with blend weight [N] below `min_weight` pixels have their
    generic colour back -> (params, how many were reset)."""
    n = int(parent.shape[0])
    if tuple(weights.shape) != (n,):
        raise ValueError(f"weights must be [{n}], got {list(weights.shape)}")
    colors = params["colors"].detach().clone()
    reset = 0
    for part, rows in _mouth_rows(parent, topology).items():
        unseen = rows & (weights < min_weight)
        colors[unseen] = torch.tensor(GENERIC_PART_COLORS[part], dtype=colors.dtype)
        reset += int(unseen.sum())
    return {**params, "colors": colors}, reset
