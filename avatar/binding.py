"""Mesh-bound Gaussians: map Gaussians stored in triangle-local frames to the mesh's space.

Idea from GaussianAvatars (Qian et al. 2024), written here as one pure function: each Gaussian
keeps a parent triangle index and a position, rotation and log-scale in that triangle's local
frame; every frame the mesh vertices give per-triangle frames and the Gaussians follow.

Triangle frame (for a face with vertices v0, v1, v2):
  - origin  c = (v0 + v1 + v2) / 3                       (the centroid)
  - axes    e0 = normalise(v1 - v0)                       (along the first edge)
            n  = normalise((v1 - v0) x (v2 - v0))         (the normal; right-hand rule on the winding)
            e1 = n x e0                                   (in the triangle's plane, towards v2)
            R  = [e0 | e1 | n]                            (columns; a proper rotation, det = +1)
  - scale   s = sqrt(|(v1 - v0) x (v2 - v0)|)             (sqrt of twice the area: the geometric mean
                                                           of the first edge's length and the height
                                                           on it, so it has the mesh's length unit)
Bound Gaussian:
  means      = R @ local_means * s + c
  quats      = quat(R) (x) normalise(local_quats)          (Hamilton product, (w, x, y, z))
  log_scales = local_log_scales + log(s)

Two implementations with the same checks and results: torch ops (differentiable; used whenever a gradient
is wanted or the vertices carry batch dims) and a numba kernel for one frame without gradients (the render
path of a trained avatar: ~40 small torch ops per frame cost more than the kernel's single pass).

Units: whatever the vertices use (the avatar's head/world frame); local means and scales are in
units of the triangle's size, so a Gaussian keeps its relative place and size as the face moves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BoundGaussians",
    "bind_gaussians",
    "triangle_frames",
    "rotation_matrix_to_quaternion",
    "quaternion_multiply",
    "quaternion_to_rotation_matrix",
]

# A triangle whose height is below this fraction of its longest edge counts as degenerate:
# its frame (normal, scale) would be numerically meaningless.
DEFAULT_MIN_ASPECT = 1e-6


@dataclass(frozen=True)
class BoundGaussians:
    """Gaussians in the mesh's space (same leading batch dims as the vertices)."""

    means: Tensor  # [..., N, 3]
    quats: Tensor  # [..., N, 4] (w, x, y, z), unit length
    log_scales: Tensor  # [..., N, 3]


def _check_float(name: str, value: Tensor, trailing: tuple[int, ...], exact_dims: int | None,
                 check_finite: bool = True) -> None:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    shape = tuple(value.shape)
    bad_rank = value.dim() < len(trailing) + 1 or (exact_dims is not None and value.dim() != exact_dims)
    if bad_rank or shape[value.dim() - len(trailing):] != trailing:
        want = f"[N, {trailing[0]}]" if exact_dims is not None else f"[..., V, {trailing[0]}]"
        raise ValueError(f"{name} must have shape {want}, got {list(shape)}")
    if check_finite and not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or inf values")


def _check_faces(faces: Tensor, num_vertices: int) -> None:
    if not isinstance(faces, Tensor) or faces.dtype != torch.long or faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(
            f"faces must be a long tensor of shape [F, 3], got "
            f"{getattr(faces, 'dtype', type(faces))} {list(getattr(faces, 'shape', []))}"
        )
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= num_vertices):
        raise ValueError(
            f"faces index vertices in [{int(faces.min())}, {int(faces.max())}] but there are only {num_vertices} vertices"
        )


def _edge_vectors(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    v0 = vertices[..., faces[:, 0], :]
    v1 = vertices[..., faces[:, 1], :]
    v2 = vertices[..., faces[:, 2], :]
    return v0, v1 - v0, v2 - v0


def degenerate_faces(vertices: Tensor, faces: Tensor, min_aspect: float = DEFAULT_MIN_ASPECT) -> Tensor:
    """Bool [F] (any batch entry): triangles whose height is below `min_aspect` x their longest edge.

    vertices: [..., V, 3]; faces: [F, 3] long. Zero-length edges and collinear vertices both count.
    """
    with torch.no_grad():
        v0, e01, e02 = _edge_vectors(vertices, faces)
        e12 = e02 - e01
        twice_area = torch.linalg.cross(e01, e02, dim=-1).norm(dim=-1)
        longest = torch.stack([e01.norm(dim=-1), e02.norm(dim=-1), e12.norm(dim=-1)], -1).amax(-1)
        # height on the longest edge = 2 area / longest; compare it with the longest edge.
        bad = twice_area <= min_aspect * longest * longest
        return bad.reshape(-1, faces.shape[0]).any(0) if bad.dim() > 1 else bad


def triangle_frames(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-triangle centroid, rotation and scale (see the module docstring for the exact frame).

    vertices: [..., V, 3] float; faces: [F, 3] long.
    Returns centroids [..., F, 3], rotations [..., F, 3, 3] (columns e0, e1, n), scales [..., F].
    No validity checks here (bind_gaussians does them); degenerate triangles give NaN/inf.
    """
    v0, e01, e02 = _edge_vectors(vertices, faces)
    centroids = v0 + (e01 + e02) / 3.0
    normal_raw = torch.linalg.cross(e01, e02, dim=-1)
    twice_area = normal_raw.norm(dim=-1)
    n = normal_raw / twice_area.unsqueeze(-1)
    e0 = e01 / e01.norm(dim=-1, keepdim=True)
    e1 = torch.linalg.cross(n, e0, dim=-1)
    rotations = torch.stack([e0, e1, n], dim=-1)
    return centroids, rotations, twice_area.sqrt()


def rotation_matrix_to_quaternion(rotations: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) of rotation matrices [..., 3, 3] -> [..., 4].

    Shepperd's method: of the four algebraically equal formulas, each row uses the one whose
    divisor (2 sqrt(1 + trace) or 2 sqrt(1 + 2 R_ii - trace)) is largest, at least 1, so values and
    gradients stay bounded for every rotation (no division by ~0 near 180-degree turns).
    The sign of q is whatever that branch gives (q and -q are the same rotation).
    """
    r = rotations
    m00, m01, m02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    m10, m11, m12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    m20, m21, m22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    terms = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    # Clamp only protects sqrt for the branches that are not chosen (their terms may be <= 0).
    roots = terms.clamp_min(0.1).sqrt() * 2.0  # [..., 4] = 4 * |q_k| for the chosen k
    candidates = torch.stack(
        [
            torch.stack([roots[..., 0] ** 2 / 4, m21 - m12, m02 - m20, m10 - m01], -1) / roots[..., 0:1],
            torch.stack([m21 - m12, roots[..., 1] ** 2 / 4, m01 + m10, m02 + m20], -1) / roots[..., 1:2],
            torch.stack([m02 - m20, m01 + m10, roots[..., 2] ** 2 / 4, m12 + m21], -1) / roots[..., 2:3],
            torch.stack([m10 - m01, m02 + m20, m12 + m21, roots[..., 3] ** 2 / 4], -1) / roots[..., 3:4],
        ],
        dim=-2,
    )  # [..., 4 branches, 4]
    best = terms.argmax(dim=-1)  # the largest term is >= 1 for any rotation (terms sum to 4)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    return torch.gather(candidates, -2, index).squeeze(-2)


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a (x) b of quaternions [..., 4] (w, x, y, z) (rotation b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quaternion_to_rotation_matrix(quats: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] of quaternions [..., 4] (w, x, y, z); normalises first."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


@nb.njit(cache=True, error_model="numpy")
def _bind_kernel(vertices, used_faces, slot, local_means, local_quats, local_log_scales, min_aspect,
                 means, quats, log_scales):
    """One frame of the binding: vertices [V, 3]; used_faces [F', 3]; slot [N] (row of used_faces per
    Gaussian); outputs [N, 3], [N, 4], [N, 3] of the inputs' dtype; the same formulas as the torch path
    (Shepperd's branch choice included). Returns (index of the first bad local parameter row or -1, and a
    bool [F'] mask of degenerate faces)."""
    n_faces = used_faces.shape[0]
    frames = np.empty((n_faces, 13), np.float64)  # rotation (row-major), centroid, scale
    face_quats = np.empty((n_faces, 4), np.float64)
    degenerate = np.zeros(n_faces, np.bool_)
    for f in range(n_faces):
        i0, i1, i2 = used_faces[f, 0], used_faces[f, 1], used_faces[f, 2]
        v0x, v0y, v0z = float(vertices[i0, 0]), float(vertices[i0, 1]), float(vertices[i0, 2])
        ax, ay, az = vertices[i1, 0] - v0x, vertices[i1, 1] - v0y, vertices[i1, 2] - v0z
        bx, by, bz = vertices[i2, 0] - v0x, vertices[i2, 1] - v0y, vertices[i2, 2] - v0z
        nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
        twice_area = math.sqrt(nx * nx + ny * ny + nz * nz)
        len_a = math.sqrt(ax * ax + ay * ay + az * az)
        len_b = math.sqrt(bx * bx + by * by + bz * bz)
        len_c = math.sqrt((bx - ax) ** 2 + (by - ay) ** 2 + (bz - az) ** 2)
        longest = max(len_a, len_b, len_c)
        if not twice_area > min_aspect * longest * longest:
            degenerate[f] = True
            continue
        nx, ny, nz = nx / twice_area, ny / twice_area, nz / twice_area
        e0x, e0y, e0z = ax / len_a, ay / len_a, az / len_a
        e1x, e1y, e1z = ny * e0z - nz * e0y, nz * e0x - nx * e0z, nx * e0y - ny * e0x
        # Columns e0, e1, n: m[r][c].
        m00, m01, m02 = e0x, e1x, nx
        m10, m11, m12 = e0y, e1y, ny
        m20, m21, m22 = e0z, e1z, nz
        frames[f, 0], frames[f, 1], frames[f, 2] = m00, m01, m02
        frames[f, 3], frames[f, 4], frames[f, 5] = m10, m11, m12
        frames[f, 6], frames[f, 7], frames[f, 8] = m20, m21, m22
        frames[f, 9] = v0x + (ax + bx) / 3.0
        frames[f, 10] = v0y + (ay + by) / 3.0
        frames[f, 11] = v0z + (az + bz) / 3.0
        frames[f, 12] = math.sqrt(twice_area)
        terms = (1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22)
        best = 0
        for k in range(1, 4):
            if terms[k] > terms[best]:
                best = k
        r = math.sqrt(max(terms[best], 0.1)) * 2.0
        own = r * r / 4.0
        if best == 0:
            q = (own, m21 - m12, m02 - m20, m10 - m01)
        elif best == 1:
            q = (m21 - m12, own, m01 + m10, m02 + m20)
        elif best == 2:
            q = (m02 - m20, m01 + m10, own, m12 + m21)
        else:
            q = (m10 - m01, m02 + m20, m12 + m21, own)
        face_quats[f, 0], face_quats[f, 1], face_quats[f, 2], face_quats[f, 3] = q[0] / r, q[1] / r, q[2] / r, q[3] / r
    bad_row = -1
    for i in range(slot.shape[0]):
        f = slot[i]
        lx, ly, lz = float(local_means[i, 0]), float(local_means[i, 1]), float(local_means[i, 2])
        bw, bx, by, bz = float(local_quats[i, 0]), float(local_quats[i, 1]), float(local_quats[i, 2]), float(local_quats[i, 3])
        s0, s1, s2 = float(local_log_scales[i, 0]), float(local_log_scales[i, 1]), float(local_log_scales[i, 2])
        norm = math.sqrt(bw * bw + bx * bx + by * by + bz * bz)
        finite = math.isfinite(lx + ly + lz + s0 + s1 + s2) and math.isfinite(norm)
        if not (finite and norm >= 1e-12):
            if bad_row < 0:
                bad_row = i
            continue
        s = frames[f, 12]
        means[i, 0] = (frames[f, 0] * lx + frames[f, 1] * ly + frames[f, 2] * lz) * s + frames[f, 9]
        means[i, 1] = (frames[f, 3] * lx + frames[f, 4] * ly + frames[f, 5] * lz) * s + frames[f, 10]
        means[i, 2] = (frames[f, 6] * lx + frames[f, 7] * ly + frames[f, 8] * lz) * s + frames[f, 11]
        bw, bx, by, bz = bw / norm, bx / norm, by / norm, bz / norm
        aw, ax, ay, az = face_quats[f, 0], face_quats[f, 1], face_quats[f, 2], face_quats[f, 3]
        quats[i, 0] = aw * bw - ax * bx - ay * by - az * bz
        quats[i, 1] = aw * bx + ax * bw + ay * bz - az * by
        quats[i, 2] = aw * by - ax * bz + ay * bw + az * bx
        quats[i, 3] = aw * bz + ax * by - ay * bx + az * bw
        log_s = math.log(s)
        log_scales[i, 0], log_scales[i, 1], log_scales[i, 2] = s0 + log_s, s1 + log_s, s2 + log_s
    return bad_row, degenerate


def _raise_degenerate(face_indices: Tensor) -> None:
    raise ValueError(
        f"{face_indices.numel()} triangle(s) carrying Gaussians are degenerate (zero or near-zero area), "
        f"e.g. face {face_indices[:5].tolist()}; their frame is undefined"
    )


def _numba_eligible(vertices: Tensor, *local: Tensor) -> bool:
    """One CPU frame, float32/64, and no gradient wanted: the numba kernel gives the same result faster."""
    tensors = (vertices, *local)
    if vertices.dim() != 2 or vertices.dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != "cpu" for t in tensors):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _bind_numba(vertices: Tensor, faces: Tensor, parent: Tensor, local_means: Tensor, local_quats: Tensor,
                local_log_scales: Tensor, min_aspect: float) -> BoundGaussians:
    """bind_gaussians for one frame [V, 3] without gradients (shapes, dtypes and indices already checked)."""
    used = torch.zeros(faces.shape[0], dtype=torch.bool)
    used[parent] = True
    used_faces = used.nonzero().flatten()
    compact = torch.full((faces.shape[0],), -1, dtype=torch.long)
    compact[used_faces] = torch.arange(used_faces.numel())
    n = parent.shape[0]
    arrays = [t.detach().contiguous().numpy() for t in (vertices, local_means, local_quats, local_log_scales)]
    dtype = arrays[0].dtype
    means, quats, log_scales = np.empty((n, 3), dtype), np.empty((n, 4), dtype), np.empty((n, 3), dtype)
    bad_row, degenerate = _bind_kernel(arrays[0], faces[used_faces].contiguous().numpy(),
                                       compact[parent].numpy(), arrays[1], arrays[2], arrays[3], min_aspect,
                                       means, quats, log_scales)
    if degenerate.any():
        _raise_degenerate(used_faces[torch.from_numpy(degenerate)])
    if bad_row >= 0:
        for name, value in (("local_means", local_means), ("local_log_scales", local_log_scales)):
            if not bool(torch.isfinite(value[bad_row]).all()):
                raise ValueError(f"{name} contains NaN or inf values")
        if not bool(torch.isfinite(local_quats[bad_row]).all()):
            raise ValueError("local_quats contains NaN or inf values")
        quat_norm = local_quats.norm(dim=-1)
        raise ValueError(f"{int((quat_norm < 1e-12).sum())} local quaternions have (near) zero length")
    return BoundGaussians(means=torch.from_numpy(means), quats=torch.from_numpy(quats),
                          log_scales=torch.from_numpy(log_scales))


def bind_gaussians(
    vertices: Tensor,  # [V, 3] or [..., V, 3] (e.g. [T, V, 3])
    faces: Tensor,  # [F, 3] long
    parent: Tensor,  # [N] long, triangle index per Gaussian
    local_means: Tensor,  # [N, 3]
    local_quats: Tensor,  # [N, 4] (w, x, y, z), any non-zero length
    local_log_scales: Tensor,  # [N, 3]
    min_aspect: float = DEFAULT_MIN_ASPECT,
) -> BoundGaussians:
    """Place triangle-local Gaussians on the mesh given by `vertices` (see the module docstring).

    Differentiable with respect to the vertices and all local parameters. Raises ValueError for
    bad shapes or dtypes, out-of-range indices, NaN/inf, zero-length local quaternions, and for
    degenerate triangles (height < min_aspect x longest edge) that carry at least one Gaussian.
    """
    _check_float("vertices", vertices, (3,), None)
    _check_faces(faces, vertices.shape[-2])
    if not isinstance(parent, Tensor) or parent.dtype != torch.long or parent.dim() != 1:
        raise ValueError(
            f"parent must be a 1-D long tensor [N], got {getattr(parent, 'dtype', type(parent))} "
            f"{list(getattr(parent, 'shape', []))}"
        )
    n = parent.shape[0]
    for name, value, width in (("local_means", local_means, 3), ("local_quats", local_quats, 4),
                               ("local_log_scales", local_log_scales, 3)):
        _check_float(name, value, (width,), 2, check_finite=False)  # finiteness: below, or in the kernel
        if value.shape[0] != n:
            raise ValueError(f"{name} has {value.shape[0]} rows but parent has {n} Gaussians")
        if value.dtype != vertices.dtype:
            raise ValueError(f"{name} dtype {value.dtype} differs from the vertices' dtype {vertices.dtype}")
    if n and (int(parent.min()) < 0 or int(parent.max()) >= faces.shape[0]):
        raise ValueError(
            f"parent indices span [{int(parent.min())}, {int(parent.max())}] but the mesh has {faces.shape[0]} triangles"
        )
    if _numba_eligible(vertices, local_means, local_quats, local_log_scales):
        return _bind_numba(vertices, faces, parent, local_means, local_quats, local_log_scales, min_aspect)
    for name, value in (("local_means", local_means), ("local_quats", local_quats), ("local_log_scales", local_log_scales)):
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or inf values")
    quat_norm = local_quats.norm(dim=-1)
    if n and bool((quat_norm < 1e-12).any()):
        raise ValueError(f"{int((quat_norm < 1e-12).sum())} local quaternions have (near) zero length")

    used = torch.zeros(faces.shape[0], dtype=torch.bool, device=faces.device)
    used[parent] = True
    bad = degenerate_faces(vertices, faces, min_aspect) & used
    if bool(bad.any()):
        _raise_degenerate(bad.nonzero().flatten())

    # Only the triangles that carry Gaussians enter the math: unused degenerate ones must not
    # put NaN into gradients.
    used_faces = used.nonzero().flatten()
    compact = torch.full((faces.shape[0],), -1, dtype=torch.long, device=faces.device)
    compact[used_faces] = torch.arange(used_faces.numel(), device=faces.device)
    centroids, rotations, scales = triangle_frames(vertices, faces[used_faces])
    face_quats = rotation_matrix_to_quaternion(rotations)
    slot = compact[parent]

    rot = rotations[..., slot, :, :]  # [..., N, 3, 3]
    means = (rot @ local_means.unsqueeze(-1)).squeeze(-1) * scales[..., slot, None] + centroids[..., slot, :]
    quats = quaternion_multiply(face_quats[..., slot, :], local_quats / quat_norm.unsqueeze(-1))
    log_scales = local_log_scales + scales[..., slot, None].log()
    return BoundGaussians(means=means, quats=quats, log_scales=log_scales)
