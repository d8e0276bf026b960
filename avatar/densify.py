"""Gaussian set surgery for training: initialisation on a mesh, densify, prune, and the Adam state that follows.

The set itself lives in `avatar.gaussians.MeshGaussians` (helper-owned container that keeps the
one-Gaussian-per-triangle invariant); training keeps the trainable tensors in a dict and rebuilds a container
only to densify or prune. Every change is described by a `Plan`: the new face-local parameters, the new parent
triangle per Gaussian, and `source_index` [N_new]: for each new row the old row it continues (its Adam moments
are carried over) or -1 for a fresh row (zero moments). One function, `update_optimizer_state`, applies any
plan to the optimizer, so densify and prune cannot disagree about the bookkeeping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from avatar.binding import triangle_frames
from avatar.gaussians import MeshGaussians, init_on_mesh

PARAM_KEYS = ("local_means", "local_quats", "local_log_scales", "opacity_logits", "colors")


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


def initial_gaussians(vertices: Tensor, faces: Tensor, frames: Tensor, mattes: Tensor, camera, per_face: int,
                      seed: int = 0, opacity: float = 0.3, background_opacity: float = 0.02) -> tuple[dict[str, Tensor], Tensor]:
    """`per_face` Gaussians on every triangle (`avatar.gaussians.init_on_mesh`), coloured from S sample frames.

    vertices: [S, V, 3] camera-space vertices of S frames; faces: [F, 3]; frames: [S, H, W, 3] float in [0, 1];
    mattes: [S, H, W] float in [0, 1]. Each Gaussian takes the median colour of the pixels it projects to in
    the frames where its triangle faces the camera, and starts nearly transparent when it mostly lands outside
    the person's matte (hair-shell triangles beyond the silhouette). This starts training close to the images
    instead of from uniform grey, which matters when a CPU affords only a few hundred iterations.
    """
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be [S, V, 3], got {tuple(vertices.shape)}")
    s_frames = vertices.shape[0]
    if frames.shape[0] != s_frames or mattes.shape != frames.shape[:3]:
        raise ValueError(f"frames [S, H, W, 3] and mattes [S, H, W] must match S = {s_frames} vertex frames, "
                         f"got {tuple(frames.shape)} and {tuple(mattes.shape)}")
    gaussians = init_on_mesh(_Faces(faces), vertices[0].float(), per_face=per_face, opacity=opacity,
                             generator=torch.Generator().manual_seed(seed))
    params, parent = gaussians.parameters(), gaussians.parent
    n = parent.shape[0]
    samples = torch.zeros(s_frames, n, 3)
    visible = torch.zeros(s_frames, n, dtype=torch.bool)
    inside_matte = torch.zeros(s_frames, n)
    for s in range(s_frames):
        centroids, rotations, scales = triangle_frames(vertices[s].float(), faces)
        means = (rotations[parent] @ params["local_means"][:, :, None]).squeeze(-1) * scales[parent, None] + centroids[parent]
        normals = rotations[parent][:, :, 2]
        z = means[:, 2].clamp_min(1e-6)
        u = (camera.fx * means[:, 0] / z + camera.cx).floor().long()
        v = (camera.fy * means[:, 1] / z + camera.cy).floor().long()
        on_image = (means[:, 2] > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
        u, v = u.clamp(0, camera.width - 1), v.clamp(0, camera.height - 1)
        facing = (normals * means).sum(-1) < 0  # camera at the origin: the normal points back towards it
        samples[s] = frames[s][v, u]
        visible[s] = on_image & facing
        inside_matte[s] = torch.where(on_image, mattes[s][v, u], torch.zeros(()))
    masked = samples.masked_fill(~visible[..., None], float("nan"))
    colors = masked.nanmedian(dim=0).values
    seen = visible.any(0)
    colors[~seen] = 0.5
    params["colors"] = colors
    outside = seen & ((inside_matte * visible).sum(0) / visible.sum(0).clamp_min(1) < 0.5)
    params["opacity_logits"][outside] = math.log(background_opacity / (1 - background_opacity))
    return params, parent


@dataclass(frozen=True)
class _Faces:
    faces: Tensor  # what init_on_mesh needs from a topology


def _container(params: dict[str, Tensor], parent: Tensor, num_faces: int) -> MeshGaussians:
    return MeshGaussians(parent=parent, num_faces=num_faces, **{k: params[k].detach() for k in PARAM_KEYS})


def plan_densify(params: dict[str, Tensor], parent: Tensor, selected: Tensor, split_log_scale: float,
                 max_gaussians: int, num_faces: int, score: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Plan | None:
    """Clone the small selected Gaussians and split the large ones (max local log scale > split_log_scale),
    through `MeshGaussians.densify` (children drawn in the triangle's local frame, scales / 1.6).

    At most `max_gaussians - N` Gaussians are added (highest `score` first; each split adds one, each clone
    one). New rows continue the Adam moments of the Gaussian they came from. None when nothing changes.
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
    big = params["local_log_scales"].detach()[chosen].amax(-1) > split_log_scale
    clone_mask = torch.zeros(n, dtype=torch.bool)
    clone_mask[chosen[~big]] = True
    split_mask = torch.zeros(n, dtype=torch.bool)
    split_mask[chosen[big]] = True
    gaussians = _container(params, parent, num_faces)
    gaussians, source = gaussians.densify(clone_mask, "clone", generator=generator)
    # the clone step keeps rows 0..n-1 in place, so the split mask extends with False for the clones
    split_mask = torch.cat([split_mask, torch.zeros(source.shape[0] - n, dtype=torch.bool)])
    gaussians, source_split = gaussians.densify(split_mask, "split", generator=generator)
    return Plan(gaussians.parameters(), gaussians.parent, source[source_split])


def plan_prune(params: dict[str, Tensor], parent: Tensor, remove: Tensor, num_faces: int) -> Plan | None:
    """Remove the Gaussians in `remove` (bool [N]) through `MeshGaussians.prune`, which keeps the most
    opaque Gaussian of a triangle that would otherwise lose all of them. None when nothing changes."""
    n = _check_params(params, parent)
    if remove.shape != (n,) or remove.dtype != torch.bool:
        raise ValueError(f"remove must be bool [{n}], got {remove.dtype} {tuple(remove.shape)}")
    if not bool(remove.any()):
        return None
    gaussians, kept = _container(params, parent, num_faces).prune(remove)
    if kept.numel() == n:
        return None
    return Plan(gaussians.parameters(), gaussians.parent, kept)


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
