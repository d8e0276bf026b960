"""Mesh-bound Gaussians: the raw parameter container and its densify/prune bookkeeping.

Each Gaussian i lives on triangle `parent[i]` of the extended mesh, with position, rotation and
log-scale in that triangle's local frame (avatar.binding turns them into mesh-space Gaussians).
Raw tensors only, activations at render time: opacity = sigmoid(opacity_logits); colours are the
renderer's RGB values (about 0..1, clamped there).

Invariant kept by every operation: every triangle of the mesh carries at least one Gaussian
(`face_counts() >= 1`), so no part of the mesh can go permanently blank during training.
Operations return a new container plus an index map, so the trainer can carry optimizer state
(Adam moments) along: new[j] came from old[source[j]].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from avatar.binding import degenerate_faces, quaternion_to_rotation_matrix, triangle_frames

__all__ = ["MeshGaussians", "PARAMETER_NAMES", "init_on_mesh"]

PARAMETER_NAMES = ("local_means", "local_quats", "local_log_scales", "opacity_logits", "colors")
_WIDTHS = {"local_means": 3, "local_quats": 4, "local_log_scales": 3, "opacity_logits": None, "colors": 3}
# 3DGS's split rule: each of the two children gets the parent's scale / 1.6.
SPLIT_SCALE_DIVISOR = 1.6


@dataclass(frozen=True)
class MeshGaussians:
    """N Gaussians bound to a mesh with `num_faces` triangles (all tensors on one device)."""

    parent: Tensor  # [N] long, non-trainable
    local_means: Tensor  # [N, 3], in units of the parent triangle's scale
    local_quats: Tensor  # [N, 4] (w, x, y, z), unnormalised
    local_log_scales: Tensor  # [N, 3], log of (size / triangle scale)
    opacity_logits: Tensor  # [N]
    colors: Tensor  # [N, 3] RGB
    num_faces: int

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_gaussians(self) -> int:
        return int(self.parent.shape[0])

    def parameters(self) -> dict[str, Tensor]:
        """The trainable tensors by name (PARAMETER_NAMES order)."""
        return {name: getattr(self, name) for name in PARAMETER_NAMES}

    def validate(self) -> None:
        """Shapes, dtypes, parent range, finiteness and the one-Gaussian-per-face invariant."""
        if not isinstance(self.num_faces, int) or self.num_faces < 1:
            raise ValueError(f"num_faces must be a positive int, got {self.num_faces!r}")
        p = self.parent
        if not isinstance(p, Tensor) or p.dtype != torch.long or p.dim() != 1:
            raise ValueError(f"parent must be a 1-D long tensor, got {getattr(p, 'dtype', type(p))} {list(getattr(p, 'shape', []))}")
        n = p.shape[0]
        if n and (int(p.min()) < 0 or int(p.max()) >= self.num_faces):
            raise ValueError(f"parent spans [{int(p.min())}, {int(p.max())}] but the mesh has {self.num_faces} triangles")
        dtype = None
        for name in PARAMETER_NAMES:
            value = getattr(self, name)
            width = _WIDTHS[name]
            want = (n,) if width is None else (n, width)
            if not isinstance(value, Tensor) or not value.is_floating_point() or tuple(value.shape) != want:
                raise ValueError(
                    f"{name} must be a float tensor of shape {list(want)}, got "
                    f"{getattr(value, 'dtype', type(value))} {list(getattr(value, 'shape', []))}"
                )
            if dtype is not None and value.dtype != dtype:
                raise ValueError(f"{name} has dtype {value.dtype}, other parameters {dtype}")
            dtype = value.dtype
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or inf values")
        if n and bool((self.local_quats.norm(dim=-1) < 1e-12).any()):
            raise ValueError("local_quats has zero-length quaternions")
        empty = int((self.face_counts() == 0).sum())
        if empty:
            raise ValueError(f"{empty} of {self.num_faces} triangles carry no Gaussian (every face needs >= 1)")

    def face_counts(self) -> Tensor:
        """Gaussians per triangle [F] (long)."""
        return torch.bincount(self.parent, minlength=self.num_faces)

    def _take(self, index: Tensor, **replace: Tensor) -> "MeshGaussians":
        fields = {name: getattr(self, name)[index] for name in ("parent", *PARAMETER_NAMES)}
        fields.update(replace)
        return MeshGaussians(num_faces=self.num_faces, **fields)

    def _check_mask(self, mask: Tensor) -> Tensor:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (self.num_gaussians,):
            raise ValueError(f"mask must be a bool tensor [{self.num_gaussians}], got "
                             f"{getattr(mask, 'dtype', type(mask))} {list(getattr(mask, 'shape', []))}")
        return mask.to(self.parent.device)

    def densify(self, mask: Tensor, mode: str, generator: torch.Generator | None = None) -> tuple["MeshGaussians", Tensor]:
        """Clone or split the Gaussians selected by mask [N] bool; returns (new set, source [N']).

        clone: selected Gaussians are duplicated unchanged (appended at the end).
        split: each selected Gaussian is replaced by two children whose positions are drawn from
            the parent Gaussian itself, in the triangle's LOCAL frame (offset = R(q) diag(exp(s)) z,
            with the local rotation and local scales, which are in the same triangle-scale units as
            local_means), and whose scales are divided by 1.6. Unselected ones keep their order;
            the children are appended.
        """
        mask = self._check_mask(mask)
        selected = mask.nonzero().flatten()
        if mode == "clone":
            source = torch.cat([torch.arange(self.num_gaussians, device=mask.device), selected])
            return self._take(source), source
        if mode != "split":
            raise ValueError(f"densify mode must be 'clone' or 'split', got {mode!r}")
        kept = (~mask).nonzero().flatten()
        children = selected.repeat(2)
        source = torch.cat([kept, children])
        scales = self.local_log_scales[children].exp()
        noise = torch.randn(children.shape[0], 3, generator=generator, dtype=scales.dtype).to(scales.device)
        rotation = quaternion_to_rotation_matrix(self.local_quats[children])
        offsets = (rotation @ (noise * scales).unsqueeze(-1)).squeeze(-1)
        means = torch.cat([self.local_means[kept], self.local_means[children] + offsets])
        log_scales = torch.cat([
            self.local_log_scales[kept], self.local_log_scales[children] - math.log(SPLIT_SCALE_DIVISOR)
        ])
        return self._take(source, local_means=means, local_log_scales=log_scales), source

    def prune(self, mask: Tensor) -> tuple["MeshGaussians", Tensor]:
        """Remove the Gaussians selected by mask [N] bool, except that a triangle whose Gaussians
        would all go keeps its most opaque one. Returns (new set, kept [N'] indices into the old)."""
        mask = self._check_mask(mask)
        remove = mask.clone()
        survivors = torch.bincount(self.parent[~remove], minlength=self.num_faces)
        orphaned = survivors == 0  # faces that would lose every Gaussian
        if bool(orphaned.any()):
            candidates = (orphaned[self.parent]).nonzero().flatten()
            # Most opaque first, then a stable sort by face: the first of each face run is its best.
            by_opacity = candidates[torch.argsort(self.opacity_logits[candidates], descending=True, stable=True)]
            by_face = by_opacity[torch.argsort(self.parent[by_opacity], stable=True)]
            faces = self.parent[by_face]
            first = torch.ones_like(faces, dtype=torch.bool)
            first[1:] = faces[1:] != faces[:-1]
            remove[by_face[first]] = False
        kept = (~remove).nonzero().flatten()
        return self._take(kept), kept

    def to_tensors(self) -> dict[str, Tensor]:
        """Plain CPU tensors for safetensors (num_faces as a 1-element long tensor)."""
        out = {name: getattr(self, name).detach().cpu().contiguous() for name in ("parent", *PARAMETER_NAMES)}
        out["num_faces"] = torch.tensor([self.num_faces], dtype=torch.long)
        return out

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor]) -> "MeshGaussians":
        """Rebuild from to_tensors() output, validating everything (ValueError on any problem)."""
        missing = {"parent", "num_faces", *PARAMETER_NAMES} - set(tensors)
        if missing:
            raise ValueError(f"Gaussian tensors missing: {sorted(missing)}")
        num_faces = tensors["num_faces"]
        if num_faces.dtype != torch.long or num_faces.numel() != 1:
            raise ValueError("num_faces must be a single long value")
        fields = {name: tensors[name] for name in ("parent", *PARAMETER_NAMES)}
        return MeshGaussians(num_faces=int(num_faces.item()), **fields)


def _barycentric_points(k: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    """k barycentric weights [k, 3]: the centroid for k = 1, else random points spread over the triangle."""
    if k == 1:
        return torch.full((1, 3), 1 / 3, dtype=dtype)
    u = torch.rand(k, 2, generator=generator, dtype=dtype)
    flip = u.sum(-1) > 1
    u[flip] = 1 - u[flip]
    return torch.stack([1 - u[:, 0] - u[:, 1], u[:, 0], u[:, 1]], -1)


def init_on_mesh(
    topology,  # anything with .faces [F, 3] long (e.g. avatar.mesh.ExtendedMeshTopology)
    vertices: Tensor,  # [V, 3] neutral mesh vertices
    per_face: int = 1,
    colors: Tensor | None = None,  # [3] or [F, 3] initial RGB (default mid grey)
    opacity: float = 0.1,
    generator: torch.Generator | None = None,
) -> MeshGaussians:
    """`per_face` Gaussians on every triangle, flat in the triangle's plane (local z = 0), sized so
    the k Gaussians of a triangle roughly tile it, with identity local rotation."""
    faces = topology.faces
    if not isinstance(per_face, int) or per_face < 1:
        raise ValueError(f"per_face must be a positive int, got {per_face!r}")
    if not 0 < opacity < 1:
        raise ValueError(f"opacity must be in (0, 1), got {opacity}")
    if not isinstance(vertices, Tensor) or vertices.dim() != 2 or vertices.shape[1] != 3 or not vertices.is_floating_point():
        raise ValueError(f"vertices must be a float [V, 3] tensor, got {list(getattr(vertices, 'shape', []))}")
    num_faces = faces.shape[0]
    dtype = vertices.dtype
    bad = degenerate_faces(vertices, faces)
    if bool(bad.any()):
        raise ValueError(f"{int(bad.sum())} triangles of the mesh are degenerate (e.g. {bad.nonzero().flatten()[:5].tolist()})")
    centroids, rotations, scales = triangle_frames(vertices, faces)
    corners = vertices[faces]  # [F, 3 corners, 3]
    local_corners = ((corners - centroids[:, None]) @ rotations) / scales[:, None, None]  # [F, 3, 3]
    weights = _barycentric_points(per_face, generator, dtype)  # [k, 3]
    means = torch.einsum("kc,fcd->fkd", weights, local_corners).reshape(-1, 3)
    means[:, 2] = 0
    parent = torch.arange(num_faces).repeat_interleave(per_face)
    # Triangle area in local units is 1/2 (scale^2 = twice the area): a disc of radius ~ sqrt(1/(2k)).
    radius = math.sqrt(0.5 / per_face)
    log_scales = torch.tensor([math.log(radius), math.log(radius), math.log(radius * 0.1)], dtype=dtype)
    if colors is None:
        colors = torch.full((3,), 0.5, dtype=dtype)
    colors = colors.to(dtype)
    if colors.shape == (3,):
        colors = colors.expand(num_faces, 3)
    if colors.shape != (num_faces, 3):
        raise ValueError(f"colors must be [3] or [{num_faces}, 3], got {list(colors.shape)}")
    n = parent.shape[0]
    return MeshGaussians(
        parent=parent,
        local_means=means.contiguous(),
        local_quats=torch.tensor([1.0, 0, 0, 0], dtype=dtype).repeat(n, 1),
        local_log_scales=log_scales.repeat(n, 1),
        opacity_logits=torch.full((n,), math.log(opacity / (1 - opacity)), dtype=dtype),
        colors=colors.repeat_interleave(per_face, 0).clone(),
        num_faces=num_faces,
    )
