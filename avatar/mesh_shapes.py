"""Shapes and anchor weights of the extended mesh's extra parts (see avatar.mesh).

Everything here works in the canonical head frame of avatar.mesh: coordinates (a, b, c) in units
of the outer-eye-corner distance (~9.5 cm), origin between the outer eye corners, a towards the
subject's left, b up, c forward. The proportions are adult averages (head ~1.6 wide, ~2.1 deep;
incisors ~0.09 tall; neck ~1.2 wide) scaled by that unit, and the face's own landmarks position
each part (outline for the shell, inner lips and mouth corners for the teeth).
"""
from __future__ import annotations

import torch
from torch import Tensor

from avatar import face_topology as ft

MAX_ANCHORS = 5
TEETH_HEIGHT = 0.09  # ~8.5 mm
TEETH_BEHIND_LIPS = 0.08  # incisors' front surface behind the inner-lip contact point (lip thickness)
LOWER_TEETH_BEHIND_UPPER = 0.025  # overjet
ARCH_BACK = 0.30  # how far the arch curves back at its ends (towards the premolars/molars)


class _Placer:
    """Collects positions [E, 3] and anchors [E, K] for extra vertex ids (id - 478)."""

    def __init__(self, num_extra: int) -> None:
        self.positions = torch.full((num_extra, 3), float("nan"), dtype=torch.float64)
        self.anchor_index = torch.zeros(num_extra, MAX_ANCHORS, dtype=torch.long)
        self.anchor_weight = torch.zeros(num_extra, MAX_ANCHORS, dtype=torch.float64)
        self.head_follow = torch.ones(num_extra, dtype=torch.float64)  # share of the head's turn followed
        self.pivot = torch.zeros(3, dtype=torch.float64)

    def put(self, ids: Tensor, positions: Tensor, anchors: tuple[int, ...] = (), weights: Tensor | None = None) -> None:
        """positions [*ids.shape, 3]; weights [*ids.shape] split evenly over `anchors`."""
        slot = ids.flatten() - ft.NUM_LANDMARKS
        self.positions[slot] = positions.reshape(-1, 3).to(torch.float64)
        if anchors:
            w = weights.reshape(-1, 1).to(torch.float64) / len(anchors)
            self.anchor_index[slot, : len(anchors)] = torch.tensor(anchors)
            self.anchor_weight[slot, : len(anchors)] = w.expand(-1, len(anchors))


def _ellipsoid(canonical: Tensor) -> tuple[Tensor, Tensor]:
    """Skull ellipsoid (centre [3], radii [3]) from the face outline, with room for hair."""
    oval = canonical[list(ft.FACE_OVAL)]
    forehead = canonical[ft.FOREHEAD_TOP]
    radii = torch.stack([
        oval[:, 0].abs().max() * 1.12,  # a little wider than the face outline (ears, hair)
        forehead[1] - 0.1 + 0.5,  # top of the head ~0.5 above the forehead landmark
        torch.tensor(1.05, dtype=canonical.dtype),  # half of the head's depth (~20 cm)
    ])
    centre = torch.stack([oval[:, 0].mean(), torch.tensor(0.1, dtype=canonical.dtype), forehead[2] - radii[2]])
    return centre, radii


def _slerp(start: Tensor, end: Tensor, fraction: Tensor) -> Tensor:
    """Spherical interpolation of unit vectors start [..., 3] -> end [3] at fraction [K]."""
    cos = (start * end).sum(-1, keepdim=True).clamp(-0.999, 0.999)
    angle = torch.acos(cos)[..., None, :]  # [..., 1, 1]
    f = fraction[:, None]
    return (torch.sin((1 - f) * angle) * start[..., None, :] + torch.sin(f * angle) * end) / torch.sin(angle)


def _place_shell(placer: _Placer, canonical: Tensor, ids: dict[str, Tensor], rings: int) -> None:
    """Rings from the face outline over the skull ellipsoid to a pole at the back of the head."""
    centre, radii = _ellipsoid(canonical)
    oval = canonical[list(ft.FACE_OVAL)]  # [36, 3]
    unit_dirs = (oval - centre) / radii
    unit_dirs = unit_dirs / unit_dirs.norm(dim=-1, keepdim=True)
    pole = torch.tensor([0.0, 0.2, -1.0], dtype=canonical.dtype)
    pole = pole / pole.norm()
    fraction = torch.arange(1, rings + 1, dtype=canonical.dtype) / (rings + 1)
    dirs = _slerp(unit_dirs, pole, fraction)  # [36, rings, 3]
    on_ellipsoid = centre + dirs * radii
    # The outline is not on the ellipsoid: fade its offset out over the rings so the shell joins
    # the face without a step.
    residual = oval - (centre + unit_dirs * radii)
    fade = (1 - fraction)[None, :, None] ** 2
    positions = (on_ellipsoid + residual[:, None, :] * fade).transpose(0, 1)  # [rings, 36, 3]
    for k in range(rings):
        # Each ring vertex follows its outline landmark, fading to rigid at the back.
        for i, landmark in enumerate(ft.FACE_OVAL):
            placer.put(ids["shell_rings"][k, i : i + 1], positions[k, i], (landmark,), fade[0, k, 0].reshape(1))
    placer.put(ids["shell_pole"], (centre + pole * radii)[None])


def _arch(columns: int, rows: int, half_width: float, front: float, top: float, height: float,
          back: float = ARCH_BACK) -> tuple[Tensor, Tensor]:
    """A vertical strip bent like a dental arch: positions [rows+1, columns+1, 3] and t [columns+1]."""
    # Columns at equal arc length, so triangles at the arch's curved ends are no bigger.
    dense = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    step = torch.stack([half_width * dense, back * dense**2], -1).diff(dim=0).norm(dim=-1)
    arc = torch.cat([torch.zeros(1, dtype=torch.float64), step.cumsum(0)])
    targets = torch.linspace(0, float(arc[-1]), columns + 1, dtype=torch.float64)
    right = torch.searchsorted(arc, targets).clamp(1, dense.numel() - 1)
    mix = (targets - arc[right - 1]) / (arc[right] - arc[right - 1])
    t = dense[right - 1] + mix * (dense[right] - dense[right - 1])
    s = torch.linspace(0, 1, rows + 1, dtype=torch.float64)
    a = (half_width * t)[None, :].expand(rows + 1, -1)
    c = (front - back * t**2)[None, :].expand(rows + 1, -1)
    b = (top - height * s)[:, None].expand(-1, columns + 1)
    return torch.stack([a, b, c], -1), t


def _place_mouth(placer: _Placer, canonical: Tensor, ids: dict[str, Tensor], r) -> None:
    lips = canonical[[ft.UPPER_LIP_INNER_MID, ft.LOWER_LIP_INNER_MID]].mean(0)  # where the lips part
    corners = canonical[[ft.MOUTH_CORNER_RIGHT, ft.MOUTH_CORNER_LEFT]]
    half_mouth = float((corners[1, 0] - corners[0, 0]).abs()) / 2
    centre_a = float(corners[:, 0].mean())
    contact_b, lips_c = float(lips[1]), float(lips[2])
    front = lips_c - TEETH_BEHIND_LIPS
    half_arch = 0.8 * half_mouth
    jaw = ft.JAW_ANCHORS

    # Incisal edges: with the lips closed, the upper edge just below the contact line and the lower
    # one just above it (overbite); if the neutral mouth is open (a talking clip's median face),
    # each arch follows its own lip instead: up to ~6 mm of upper and ~3 mm of lower teeth show.
    upper_lip_b = float(canonical[ft.UPPER_LIP_INNER_MID, 1])
    lower_lip_b = float(canonical[ft.LOWER_LIP_INNER_MID, 1])
    upper_edge = max(contact_b - 0.01, upper_lip_b - 0.06)
    lower_edge = min(contact_b + 0.005, lower_lip_b + 0.03)
    upper, _ = _arch(r.teeth_columns, r.teeth_rows, half_arch, front, upper_edge + TEETH_HEIGHT, TEETH_HEIGHT)
    upper[..., 0] += centre_a
    placer.put(ids["upper_teeth"], upper)

    lower, t = _arch(r.teeth_columns, r.teeth_rows, half_arch, front - LOWER_TEETH_BEHIND_UPPER,
                     lower_edge, TEETH_HEIGHT)
    lower[..., 0] += centre_a
    # The mandible rotates about the jaw joints: the arch's ends move less than the incisors.
    jaw_follow = (1 - 0.4 * t**2)[None, :].expand(r.teeth_rows + 1, -1)
    placer.put(ids["lower_teeth"], lower, jaw, jaw_follow)

    # Tongue: a low dome behind the lower incisors; rows go back to front.
    u = torch.linspace(-1, 1, r.tongue_columns + 1, dtype=torch.float64)
    v = torch.linspace(1, 0, r.tongue_rows + 1, dtype=torch.float64)  # 1 = back
    half_tongue = 0.75 * half_arch
    a = (half_tongue * u)[None, :].expand(r.tongue_rows + 1, -1) + centre_a
    c = (front - 0.07 - 0.35 * v)[:, None] - 0.1 * u[None, :] ** 2
    b = lower_edge - 0.06 + 0.04 * (1 - u[None, :] ** 2) * (0.5 + 0.5 * v[:, None]) + 0 * c  # below the incisal edge
    tongue_follow = (0.8 - 0.3 * v)[:, None].expand(-1, r.tongue_columns + 1)
    placer.put(ids["tongue"], torch.stack([a, b, c], -1), jaw, tongue_follow)

    # Dark back wall: spans from above the upper teeth to below the lower ones; its lower rows
    # follow the jaw progressively so it stretches, never tears, as the mouth opens.
    wall_height = 0.45
    wall, _ = _arch(r.cavity_columns, r.cavity_rows, 1.1 * half_arch, front - 0.5, contact_b + 0.2, wall_height, 0.12)
    wall[..., 0] += centre_a
    wall_follow = torch.linspace(0, 1, r.cavity_rows + 1, dtype=torch.float64)[:, None].expand(-1, r.cavity_columns + 1)
    placer.put(ids["mouth_cavity"], wall, jaw, wall_follow)


def _place_neck(placer: _Placer, canonical: Tensor, ids: dict[str, Tensor], r, tracked_body: bool) -> None:
    """Elliptic tube from inside the jaw down to the collarbones, flaring into the shoulders."""
    centre, _ = _ellipsoid(canonical)
    chin = canonical[ft.CHIN]
    theta = torch.arange(r.neck_columns, dtype=torch.float64) * (2 * torch.pi / r.neck_columns)
    s = torch.linspace(0, 1, r.neck_rows + 1, dtype=torch.float64)  # 0 = top
    flare = torch.clamp((s - 0.6) / 0.4, min=0) ** 2  # 0 down the neck, 1 at the shoulders
    half_width = 0.6 + 1.3 * flare
    half_depth = 0.55 + 0.25 * flare
    # The top ring sits inside the skull and is drawn in at the front (throat) so the tube never
    # shows through an open mouth in front of the mouth cavity's back wall.
    half_depth = half_depth - 0.25 * (s == 0).to(s.dtype)
    b = float(chin[1]) + 0.35 - 1.7 * s - 0.15 * flare
    neck_c = float(centre[2]) + 0.05
    a = half_width[:, None] * torch.sin(theta)[None, :] + float(centre[0])
    c = half_depth[:, None] * torch.cos(theta)[None, :] + neck_c
    placer.put(ids["neck"], torch.stack([a, b[:, None].expand_as(a), c], -1))
    # The neck follows the head's turns fully at the jaw, pivoting about the neck's axis at chin height. With a
    # still body it still follows a fifth at the shoulders (a talker's torso sways with the head: the shared
    # Obama clip's collar moves with correlation 0.7); with a tracked body (`avatar.body_tracking`) the collar
    # and below (half way down the tube: Obama's collar row, s = 0.5, projects 55 px below the chin at 512 px)
    # move with the body alone.
    follow = torch.clamp(1 - 2 * s, min=0) if tracked_body else 1 - 0.8 * s
    follow = follow[:, None].expand(-1, r.neck_columns)
    placer.head_follow[ids["neck"].flatten() - ft.NUM_LANDMARKS] = follow.reshape(-1)
    placer.pivot = torch.tensor([float(centre[0]), float(chin[1]), neck_c], dtype=torch.float64)


def _place_eyes(placer: _Placer, canonical: Tensor, ids: dict[str, Tensor], r) -> None:
    """A shallow cap behind each eye opening: its rim stays, its centre follows the iris (gaze)."""
    for key, (outer, inner, iris) in zip(("eye_right", "eye_left"), ft.EYES):
        corners = canonical[[outer, inner]]
        centre = corners.mean(0)
        width = float((corners[0] - corners[1]).norm()) * 1.25
        height = 0.55 * width
        apex_c = float(canonical[iris, 2]) - 0.01  # just behind the cornea's surface
        u = torch.linspace(-1, 1, r.eye_columns + 1, dtype=torch.float64)[None, :].expand(r.eye_rows + 1, -1)
        v = torch.linspace(1, -1, r.eye_rows + 1, dtype=torch.float64)[:, None].expand(-1, r.eye_columns + 1)
        a = float(centre[0]) + u * width / 2
        b = float(canonical[iris, 1]) + v * height / 2
        c = apex_c - 0.09 * (u**2 + v**2) / 2  # curves back ~0.09 (~8 mm) towards the corners
        follow = torch.clamp(1 - (u**2 + v**2).sqrt() / 0.8, min=0) ** 2
        placer.put(ids[key], torch.stack([a, b, c], -1), (iris,), follow)


def place_extra_vertices(canonical: Tensor, ids: dict[str, Tensor], num_extra: int, resolution,
                         tracked_body: bool = False) -> _Placer:
    """Positions [E, 3] (canonical frame), anchor_index [E, K], anchor_weight [E, K], head_follow [E]
    and the neck pivot [3] of the extras, as the fields of a _Placer.

    canonical: [478, 3] neutral landmarks in the canonical head frame (float64).
    """
    placer = _Placer(num_extra)
    _place_shell(placer, canonical, ids, resolution.shell_rings)
    _place_mouth(placer, canonical, ids, resolution)
    _place_neck(placer, canonical, ids, resolution, tracked_body)
    _place_eyes(placer, canonical, ids, resolution)
    if not torch.isfinite(placer.positions).all():
        raise ValueError("internal error: some extra vertices were not placed (or the face is malformed)")
    return placer
