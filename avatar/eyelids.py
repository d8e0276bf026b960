"""Closed eyelids: what shows where the eye was when the avatar blinks.

Behind each eye opening the extended mesh has an eye patch (part "eyes") that carries the iris and the whites.
When a blink (`animation.viseme_shapes` "blink") lowers the upper lid, the lid's Gaussians stretch over the
opening, but they were fitted to a strip of skin a few pixels high, so they cover it only partly and the iris
shows through as a grey ghost. A photo never shows a closed lid, and a short video shows a few.

`LidColors` holds which Gaussians sit on the eye patches and the colour of the lid's skin (the median colour of
the Gaussians on the triangles between the two rings of lid skin above the margin, `UPPER_LID_RINGS`). While the
eye closes, `colors_for_blink` blends the eye patches' colours towards that skin: from none at blink
`FADE_FROM` (the lid covers about half of the eye, and the eye still shows below it) to all at a closed lid.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

FADE_FROM = 0.6


@dataclass(frozen=True)
class LidColors:
    eye_rows: Tensor  # [N] bool, the Gaussians on the eye patches
    skin: Tensor  # [3] the lid's skin colour


def lid_colors(avatar) -> LidColors | None:
    """The avatar's eye-patch Gaussians and lid skin colour; None when it has no eye patch or no lid skin."""
    from animation.viseme_shapes import UPPER_LID_RINGS
    from avatar.mesh import PARTS

    parent = avatar.gaussians["parent"]
    eye_rows = avatar.face_part[parent] == PARTS.index("eyes")
    ring_vertices = torch.tensor([vertex for ring in UPPER_LID_RINGS for vertex in ring])
    lid_faces = torch.isin(avatar.faces, ring_vertices).all(dim=1) & (avatar.face_part == PARTS.index("face"))
    lid_rows = lid_faces[parent]
    if not bool(eye_rows.any()) or not bool(lid_rows.any()):
        return None
    skin = avatar.gaussians["colors"][lid_rows].clamp(0, 1).median(dim=0).values
    return LidColors(eye_rows, skin)


def colors_for_blink(colors: Tensor, lids: LidColors, blink: float) -> Tensor:
    """colors [N, 3] with the eye patches blended towards the lid's skin for a blink of `blink` (0 open .. 1 shut);
    the same tensor when the lid does not cover enough of the eye to need it."""
    if colors.shape != (lids.eye_rows.shape[0], 3):
        raise ValueError(f"colors must be [{lids.eye_rows.shape[0]}, 3], got {list(colors.shape)}")
    weight = min(1.0, (float(blink) - FADE_FROM) / (1.0 - FADE_FROM))
    if weight <= 0.0:
        return colors
    out = colors.clone()
    out[lids.eye_rows] = (1.0 - weight) * colors[lids.eye_rows] + weight * lids.skin
    return out
