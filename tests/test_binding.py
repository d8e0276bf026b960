"""Tests for avatar.binding: gradcheck, rigid/scale equivariance, slow per-Gaussian twin, bad input."""
from __future__ import annotations

import math

import pytest
import torch

from avatar.binding import (
    bind_gaussians,
    quaternion_multiply,
    quaternion_to_rotation_matrix,
    rotation_matrix_to_quaternion,
    triangle_frames,
)


def random_mesh(gen: torch.Generator, num_vertices: int = 7, num_faces: int = 6, dtype=torch.float64):
    vertices = torch.randn(num_vertices, 3, generator=gen, dtype=dtype)
    faces = torch.stack([torch.randperm(num_vertices, generator=gen)[:3] for _ in range(num_faces)])
    return vertices, faces


def random_locals(gen: torch.Generator, n: int, num_faces: int, dtype=torch.float64):
    parent = torch.randint(0, num_faces, (n,), generator=gen)
    means = torch.randn(n, 3, generator=gen, dtype=dtype) * 0.5
    quats = torch.randn(n, 4, generator=gen, dtype=dtype)
    log_scales = torch.randn(n, 3, generator=gen, dtype=dtype) * 0.3 - 1.0
    return parent, means, quats, log_scales


def random_rotation(gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=dtype))
    return q * torch.sign(torch.det(q))


def test_gradcheck_wrt_vertices_and_local_params():
    gen = torch.Generator().manual_seed(1)
    vertices, faces = random_mesh(gen)
    parent, means, quats, log_scales = random_locals(gen, 9, faces.shape[0])
    inputs = [t.clone().requires_grad_(True) for t in (vertices, means, quats, log_scales)]

    def fn(v, m, q, s):
        out = bind_gaussians(v, faces, parent, m, q, s)
        return out.means, out.quats, out.log_scales

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_matrix_to_quaternion_round_trip_and_gradcheck(seed):
    gen = torch.Generator().manual_seed(seed)
    rotations = torch.stack([random_rotation(gen) for _ in range(64)])
    # Include near-180-degree turns, where naive formulas divide by ~0.
    rotations[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    rotations[1] = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))
    q = rotation_matrix_to_quaternion(rotations)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(64, dtype=torch.float64))
    torch.testing.assert_close(quaternion_to_rotation_matrix(q), rotations)
    # Gradients through the face frame of a random triangle.
    tri = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    faces = torch.tensor([[0, 1, 2]])
    assert torch.autograd.gradcheck(
        lambda v: rotation_matrix_to_quaternion(triangle_frames(v, faces)[1]), [tri], eps=1e-6, atol=1e-6
    )


def test_frame_is_proper_rotation_with_documented_axes():
    gen = torch.Generator().manual_seed(2)
    vertices, faces = random_mesh(gen, 10, 12)
    centroids, rotations, scales = triangle_frames(vertices, faces)
    eye = torch.eye(3, dtype=torch.float64).expand(12, 3, 3)
    torch.testing.assert_close(rotations.transpose(-1, -2) @ rotations, eye)
    torch.testing.assert_close(torch.det(rotations), torch.ones(12, dtype=torch.float64))
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    e01 = v1 - v0
    torch.testing.assert_close(rotations[..., 0], e01 / e01.norm(dim=-1, keepdim=True))
    cross = torch.linalg.cross(e01, v2 - v0, dim=-1)
    torch.testing.assert_close(rotations[..., 2], cross / cross.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(scales, cross.norm(dim=-1).sqrt())
    torch.testing.assert_close(centroids, (v0 + v1 + v2) / 3)
    # e1 points from the first edge towards v2.
    assert bool(((v2 - v0) * rotations[..., 1]).sum(-1).gt(0).all())


@pytest.mark.parametrize("seed", range(3))
def test_similarity_transform_of_vertices_transforms_gaussians(seed):
    gen = torch.Generator().manual_seed(10 + seed)
    vertices, faces = random_mesh(gen, 9, 10)
    parent, means, quats, log_scales = random_locals(gen, 40, faces.shape[0])
    rotation = random_rotation(gen)
    translation = torch.randn(3, generator=gen, dtype=torch.float64)
    scale = float(torch.rand(1, generator=gen)) * 3 + 0.2
    base = bind_gaussians(vertices, faces, parent, means, quats, log_scales)
    moved = bind_gaussians(vertices @ rotation.T * scale + translation, faces, parent, means, quats, log_scales)
    torch.testing.assert_close(moved.means, base.means @ rotation.T * scale + translation)
    torch.testing.assert_close(quaternion_to_rotation_matrix(moved.quats), rotation @ quaternion_to_rotation_matrix(base.quats))
    torch.testing.assert_close(moved.log_scales, base.log_scales + math.log(scale))


def slow_bind(vertices, faces, parent, means, quats, log_scales):
    """Per-Gaussian loop with the module docstring's formulas written out, no shared helpers."""
    out_means, out_rots, out_scales = [], [], []
    for i in range(parent.shape[0]):
        a, b, c = (vertices[int(faces[int(parent[i]), k])] for k in range(3))
        centroid = (a + b + c) / 3
        normal = torch.linalg.cross(b - a, c - a)
        s = normal.norm().sqrt()
        x_axis = (b - a) / (b - a).norm()
        z_axis = normal / normal.norm()
        y_axis = torch.linalg.cross(z_axis, x_axis)
        frame = torch.stack([x_axis, y_axis, z_axis], dim=1)
        out_means.append(frame @ means[i] * s + centroid)
        w, x, y, z = quats[i] / quats[i].norm()
        local_rot = torch.tensor([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ], dtype=vertices.dtype)
        out_rots.append(frame @ local_rot)
        out_scales.append(log_scales[i] + torch.log(s))
    return torch.stack(out_means), torch.stack(out_rots), torch.stack(out_scales)


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_slow_twin_including_batched_vertices(seed):
    gen = torch.Generator().manual_seed(20 + seed)
    vertices, faces = random_mesh(gen, 12, 15)
    parent, means, quats, log_scales = random_locals(gen, 50, faces.shape[0])
    fast = bind_gaussians(vertices, faces, parent, means, quats, log_scales)
    slow_means, slow_rots, slow_scales = slow_bind(vertices, faces, parent, means, quats, log_scales)
    torch.testing.assert_close(fast.means, slow_means)
    torch.testing.assert_close(quaternion_to_rotation_matrix(fast.quats), slow_rots)
    torch.testing.assert_close(fast.log_scales, slow_scales)
    torch.testing.assert_close(fast.quats.norm(dim=-1), torch.ones(50, dtype=torch.float64))
    # Batched [T, V, 3]: each frame equals the unbatched call.
    frames = torch.stack([vertices, vertices * 2 + 1, vertices.flip(-1)])
    batched = bind_gaussians(frames, faces, parent, means, quats, log_scales)
    assert batched.means.shape == (3, 50, 3)
    for t in range(3):
        single = bind_gaussians(frames[t], faces, parent, means, quats, log_scales)
        torch.testing.assert_close(batched.means[t], single.means)
        torch.testing.assert_close(batched.quats[t], single.quats)
        torch.testing.assert_close(batched.log_scales[t], single.log_scales)


def test_float32_gradients_are_finite():
    gen = torch.Generator().manual_seed(5)
    vertices, faces = random_mesh(gen, 12, 15, torch.float32)
    parent, means, quats, log_scales = random_locals(gen, 30, 15, torch.float32)
    vertices.requires_grad_(True)
    out = bind_gaussians(vertices, faces, parent, means, quats, log_scales)
    (out.means.sum() + out.quats.sum() + out.log_scales.sum()).backward()
    assert torch.isfinite(vertices.grad).all()


def valid_inputs():
    gen = torch.Generator().manual_seed(3)
    vertices, faces = random_mesh(gen, 8, 6)
    parent, means, quats, log_scales = random_locals(gen, 10, 6)
    return dict(vertices=vertices, faces=faces, parent=parent, local_means=means, local_quats=quats,
                local_log_scales=log_scales)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(vertices=a["vertices"][:, :2]), "vertices must have shape"),
        (lambda a: a.update(faces=a["faces"].int()), "faces must be a long tensor"),
        (lambda a: a.update(faces=a["faces"] + 100), "only 8 vertices"),
        (lambda a: a.update(parent=a["parent"].float()), "parent must be"),
        (lambda a: a.update(parent=a["parent"] + 6), "mesh has 6 triangles"),
        (lambda a: a.update(local_means=a["local_means"][:5]), "local_means has 5 rows"),
        (lambda a: a.update(local_quats=a["local_quats"][:, :3]), "local_quats must have shape"),
        (lambda a: a.update(local_log_scales=a["local_log_scales"].float()), "dtype"),
        (lambda a: a["vertices"].__setitem__((0, 0), float("nan")), "NaN or inf"),
        (lambda a: a["local_means"].__setitem__((0, 0), float("inf")), "NaN or inf"),
        (lambda a: a["local_quats"].__setitem__(0, 0.0), "zero length"),
    ],
)
def test_bad_input_is_rejected_clearly(change, message):
    args = valid_inputs()
    change(args)
    with pytest.raises(ValueError, match=message):
        bind_gaussians(**args)


def test_degenerate_triangle_is_rejected_only_when_used():
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [1e-9, 1e-9, 0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 4, 1]])  # face 1 collinear, face 2 nearly so
    means = torch.zeros(1, 3, dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    scales = torch.zeros(1, 3, dtype=torch.float64)
    out = bind_gaussians(vertices, faces, torch.tensor([0]), means, quats, scales)
    assert torch.isfinite(out.means).all()
    for bad_face in (1, 2):
        with pytest.raises(ValueError, match="degenerate"):
            bind_gaussians(vertices, faces, torch.tensor([bad_face]), means, quats, scales)
    # Gradients stay finite although an unused degenerate triangle shares vertices.
    v = vertices.clone().requires_grad_(True)
    bind_gaussians(v, faces, torch.tensor([0]), means, quats, scales).means.sum().backward()
    assert torch.isfinite(v.grad).all()


def test_quaternion_multiply_composes_rotations():
    gen = torch.Generator().manual_seed(4)
    a, b = torch.randn(2, 16, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(
        quaternion_to_rotation_matrix(quaternion_multiply(a, b)),
        quaternion_to_rotation_matrix(a) @ quaternion_to_rotation_matrix(b),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_frame_kernel_matches_the_torch_path(dtype):
    """The no-gradient one-frame kernel against the differentiable torch ops on a larger random mesh."""
    from avatar.binding import DEFAULT_MIN_ASPECT, _bind_numba

    gen = torch.Generator().manual_seed(31)
    vertices, faces = random_mesh(gen, 40, 60, dtype)
    parent, means, quats, log_scales = random_locals(gen, 400, faces.shape[0], dtype)
    fast = _bind_numba(vertices, faces, parent, means, quats, log_scales, DEFAULT_MIN_ASPECT)
    slow = bind_gaussians(vertices.clone().requires_grad_(True), faces, parent, means, quats, log_scales)
    assert slow.means.requires_grad, "the reference call must take the torch path"
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    for name in ("means", "quats", "log_scales"):
        assert getattr(fast, name).dtype == dtype
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name).detach(), **tolerance)
