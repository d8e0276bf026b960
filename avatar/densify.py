"""Gaussian set surgery for training: initialisation on a mesh, densify, prune, and the Adam state that follows.

Every change of the Gaussian set is described by a `Plan`: the new face-local parameters, the new parent
triangle per Gaussian, and `source_index` [N_new]: for each new row the old row it continues (its Adam moments
are carried over) or -1 for a fresh row (zero moments). One function, `update_optimizer_state`, applies any
plan to the optimizer, so densify and prune cannot disagree about the bookkeeping.

Invariant kept by `plan_prune`: every triangle that carried a Gaussian still carries at least one (the most
opaque one), as in GaussianAvatars, so no part of the mesh goes bald.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from avatar.binding import quaternion_to_rotation_matrix, triangle_frames

PARAM_KEYS = ("local_means", "local_quats", "local_log_scales", "opacity_logits", "colors")
SPLIT_SCALE_DIVISOR = 1.6  # the 3DGS value: two children 1.6x smaller cover about the parent's extent


@dataclass
class Plan:
    params: dict[str, Tensor]  # PARAM_KEYS -> [N_new, ...]
    parent: Tensor  # [N_new] long
    source_index: Tensor  # [N_new] long, old row or -1


def _check_params(params: dict[str, Tensor], parent: Tensor) -> int:
    n = int(parent.shape[0])
    if parent.dtype != torch.long or parent.ndim != 1:
        raise ValueError(f"parent must be long [N], got {parent.dtype} {tuple(parent.shape)}")
    for key in PARAM_KEYS:
        if key not in params:
            raise ValueError(f"params lack {key!r}")
        if params[key].shape[0] != n:
            raise ValueError(f"params[{key!r}] has {params[key].shape[0]} rows, parent has {n}")
    return n


def initial_gaussians(vertices: Tensor, faces: Tensor, frame: Tensor, camera, per_face: int, seed: int = 0,
                      opacity: float = 0.3, log_scale: float | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """`per_face` Gaussians on every triangle at random points inside it, coloured from `frame`.

    vertices: [V, 3] camera-space vertices of one frame; faces: [F, 3]; frame: [H, W, 3] float in [0, 1].
    Colours are sampled where each Gaussian projects (nearest pixel), which starts training close to the image.
    """
    if vertices.ndim != 2 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be [V, 3], got {tuple(vertices.shape)}")
    if per_face < 1:
        raise ValueError(f"per_face must be >= 1, got {per_face}")
    generator = torch.Generator().manual_seed(seed)
    num_faces = faces.shape[0]
    centroids, rotations, scales = triangle_frames(vertices, faces)  # [F,3], [F,3,3], [F]
    corners = vertices[faces]  # [F, 3 corners, 3]
    local_corners = ((corners - centroids[:, None]) @ rotations) / scales[:, None, None]  # R^T (v - c) / s
    parent = torch.arange(num_faces).repeat_interleave(per_face)
    weights = -torch.log(torch.rand(parent.shape[0], 3, generator=generator).clamp_min(1e-9))
    weights = weights / weights.sum(-1, keepdim=True)  # uniform barycentric samples
    local_means = (weights[:, :, None] * local_corners[parent]).sum(1)
    n = parent.shape[0]
    if log_scale is None:
        log_scale = math.log(0.6 / math.sqrt(per_face))
    local_log_scales = torch.full((n, 3), log_scale)
    local_log_scales[:, 2] = log_scale + math.log(0.3)  # flat along the normal, like a surface patch
    local_quats = torch.zeros(n, 4)
    local_quats[:, 0] = 1.0
    opacity_logits = torch.full((n,), math.log(opacity / (1 - opacity)))
    means = (rotations[parent] @ local_means[:, :, None]).squeeze(-1) * scales[parent, None] + centroids[parent]
    colors = torch.full((n, 3), 0.5)
    z = means[:, 2]
    u = camera.fx * means[:, 0] / z.clamp_min(1e-6) + camera.cx
    v = camera.fy * means[:, 1] / z.clamp_min(1e-6) + camera.cy
    inside = (z > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    colors[inside] = frame[v[inside].long(), u[inside].long()].float()
    params = {"local_means": local_means.float(), "local_quats": local_quats, "local_log_scales": local_log_scales,
              "opacity_logits": opacity_logits, "colors": colors}
    return params, parent


def plan_densify(params: dict[str, Tensor], parent: Tensor, selected: Tensor, split_log_scale: float,
                 max_gaussians: int, score: Tensor | None = None, generator: torch.Generator | None = None) -> Plan | None:
    """Clone the small selected Gaussians, split the large ones (max local log scale > split_log_scale).

    Split children are drawn from the parent's own Gaussian in the triangle's local frame (local means and
    local scales share units, so the offset is consistent) and shrink by 1.6. At most
    `max_gaussians - N` Gaussians are added (highest `score` first). Returns None when nothing changes.
    """
    n = _check_params(params, parent)
    if selected.shape != (n,) or selected.dtype != torch.bool:
        raise ValueError(f"selected must be bool [{n}], got {selected.dtype} {tuple(selected.shape)}")
    room = max_gaussians - n
    chosen = selected.nonzero().flatten()
    if room <= 0 or chosen.numel() == 0:
        return None
    if chosen.numel() > room:
        ranking = score[chosen] if score is not None else torch.rand(chosen.numel(), generator=generator)
        chosen = chosen[ranking.argsort(descending=True)[:room]]
    p = {k: v.detach() for k, v in params.items()}
    big = p["local_log_scales"][chosen].amax(-1) > split_log_scale
    split_rows, clone_rows = chosen[big], chosen[~big]
    new = {k: v.clone() for k, v in p.items()}
    if split_rows.numel():
        sigma = p["local_log_scales"][split_rows].exp()
        rotation = quaternion_to_rotation_matrix(p["local_quats"][split_rows])
        offsets = (rotation @ (torch.randn(split_rows.numel(), 3, generator=generator) * sigma)[:, :, None]).squeeze(-1)
        shrink = math.log(SPLIT_SCALE_DIVISOR)
        new["local_means"][split_rows] = p["local_means"][split_rows] + offsets
        new["local_log_scales"][split_rows] = p["local_log_scales"][split_rows] - shrink
    added = {k: torch.cat([new[k][split_rows], new[k][clone_rows]]) for k in PARAM_KEYS}
    if split_rows.numel():
        # the second child takes the mirrored offset so the pair stays centred on the parent
        added["local_means"][: split_rows.numel()] = p["local_means"][split_rows] - offsets
    out = {k: torch.cat([new[k], added[k]]) for k in PARAM_KEYS}
    new_parent = torch.cat([parent, parent[split_rows], parent[clone_rows]])
    source = torch.cat([torch.arange(n), torch.full((split_rows.numel() + clone_rows.numel(),), -1, dtype=torch.long)])
    return Plan(out, new_parent, source)


def plan_prune(params: dict[str, Tensor], parent: Tensor, remove: Tensor) -> Plan | None:
    """Remove the Gaussians in `remove` (bool [N]) except, per triangle, the most opaque one when all would go."""
    n = _check_params(params, parent)
    if remove.shape != (n,) or remove.dtype != torch.bool:
        raise ValueError(f"remove must be bool [{n}], got {remove.dtype} {tuple(remove.shape)}")
    if not bool(remove.any()):
        return None
    keep = ~remove
    num_faces = int(parent.max()) + 1
    survivors = torch.zeros(num_faces, dtype=torch.long).index_add_(0, parent, keep.long())
    orphaned = survivors[parent] == 0  # Gaussians whose whole triangle would go
    if bool(orphaned.any()):
        opacity = params["opacity_logits"].detach()
        best = torch.full((num_faces,), -float("inf")).scatter_reduce(0, parent, opacity, reduce="amax")
        candidates = (orphaned & (opacity == best[parent])).nonzero().flatten()
        # ties: keep the first candidate per face
        first = torch.full((num_faces,), n, dtype=torch.long).scatter_reduce(0, parent[candidates], candidates, reduce="amin")
        rescued = first[first < n]
        keep[rescued] = True
    rows = keep.nonzero().flatten()
    if rows.numel() == n:
        return None
    return Plan({k: params[k].detach()[rows] for k in PARAM_KEYS}, parent[rows], rows)


def update_optimizer_state(optimizer: torch.optim.Optimizer, old_params: dict[str, Tensor],
                           new_params: dict[str, Tensor], source_index: Tensor) -> None:
    """Swap `old_params` for `new_params` in an Adam optimizer, moving each row's moments with it.

    Row i of every new parameter continues old row `source_index[i]` (moments copied) or is fresh (-1: zero
    moments). The step count is kept. Groups whose parameter is not in old_params are left alone.
    """
    by_id = {id(v): k for k, v in old_params.items()}
    fresh = source_index < 0
    gather = source_index.clamp_min(0)
    for group in optimizer.param_groups:
        old = group["params"][0]
        key = by_id.get(id(old))
        if key is None:
            continue
        new = new_params[key]
        if new.shape[0] != source_index.shape[0]:
            raise ValueError(f"new {key} has {new.shape[0]} rows but source_index has {source_index.shape[0]}")
        state = optimizer.state.pop(old, None)
        group["params"][0] = new
        if not state:
            continue
        moved = {}
        for name, value in state.items():
            if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == old.shape[0]:
                rows = value[gather].clone()
                rows[fresh] = 0
                moved[name] = rows
            else:
                moved[name] = value
        optimizer.state[new] = moved
