"""Tests for avatar.gaussians: per-face bookkeeping through densify/prune, split in the local frame,
init on a mesh, safetensors round trip and validation."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from avatar.binding import bind_gaussians, triangle_frames
from avatar.gaussians import MeshGaussians, init_on_mesh


def small_mesh():
    """A 3x3 grid of quads (18 triangles) in the z = 0 plane, slightly bumped."""
    gen = torch.Generator().manual_seed(0)
    xs, ys = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    vertices = torch.stack([xs, ys, 0.1 * torch.randn(4, 4, generator=gen)], -1).reshape(-1, 3).double()
    faces = []
    for i in range(3):
        for j in range(3):
            a, b, c, d = i * 4 + j, i * 4 + j + 1, (i + 1) * 4 + j, (i + 1) * 4 + j + 1
            faces += [[a, c, b], [b, c, d]]
    return SimpleNamespace(faces=torch.tensor(faces)), vertices


def test_init_on_mesh_puts_k_gaussians_inside_each_triangle():
    topology, vertices = small_mesh()
    gaussians = init_on_mesh(topology, vertices, per_face=4, generator=torch.Generator().manual_seed(1))
    assert gaussians.num_gaussians == 18 * 4
    assert bool((gaussians.face_counts() == 4).all())
    bound = bind_gaussians(vertices, topology.faces, gaussians.parent, gaussians.local_means,
                           gaussians.local_quats, gaussians.local_log_scales)
    # Each bound mean lies inside its triangle: barycentric coordinates in [0, 1].
    tri = vertices[topology.faces[gaussians.parent]]  # [N, 3, 3]
    a, b, c = tri.unbind(1)
    p = bound.means
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    den = d00 * d11 - d01 * d01
    beta, gamma = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
    assert bool(((beta >= -1e-9) & (gamma >= -1e-9) & (beta + gamma <= 1 + 1e-9)).all())
    torch.testing.assert_close(torch.linalg.cross(v0, v1).mul(p - a).sum(-1), torch.zeros(72, dtype=torch.float64))
    # One Gaussian per face sits at the centroid.
    single = init_on_mesh(topology, vertices, per_face=1)
    centroids, _, _ = triangle_frames(vertices, topology.faces)
    bound1 = bind_gaussians(vertices, topology.faces, single.parent, single.local_means,
                            single.local_quats, single.local_log_scales)
    torch.testing.assert_close(bound1.means, centroids)


def random_gaussians(gen: torch.Generator, num_faces: int = 12, extra: int = 20) -> MeshGaussians:
    parent = torch.cat([torch.arange(num_faces), torch.randint(0, num_faces, (extra,), generator=gen)])
    n = parent.shape[0]
    return MeshGaussians(
        parent=parent,
        local_means=torch.randn(n, 3, generator=gen),
        local_quats=torch.randn(n, 4, generator=gen),
        local_log_scales=torch.randn(n, 3, generator=gen) - 1,
        opacity_logits=torch.randn(n, generator=gen),
        colors=torch.rand(n, 3, generator=gen),
        num_faces=num_faces,
    )


@pytest.mark.parametrize("seed", range(4))
def test_random_densify_prune_sequences_never_orphan_a_face(seed):
    gen = torch.Generator().manual_seed(seed)
    gaussians = random_gaussians(gen)
    ids = torch.arange(gaussians.num_gaussians)  # a label per Gaussian, tracked through the index maps
    for step in range(30):
        n = gaussians.num_gaussians
        fraction = float(torch.rand(1, generator=gen)) * (0.9 if step % 3 == 2 else 0.3)
        mask = torch.rand(n, generator=gen) < fraction
        before = gaussians
        if step % 3 == 0:
            gaussians, source = before.densify(mask, "clone")
            assert gaussians.num_gaussians == n + int(mask.sum())
        elif step % 3 == 1:
            gaussians, source = before.densify(mask, "split", generator=gen)
            assert gaussians.num_gaussians == n + int(mask.sum())
        else:
            gaussians, source = before.prune(mask)
            assert gaussians.num_gaussians <= n
            # Only masked Gaussians go, and only faces that would be orphaned keep a masked one.
            assert bool(torch.isin((~mask).nonzero().flatten(), source).all())
            rescued = source[mask[source]]
            assert bool((torch.bincount(before.parent[source[~mask[source]]], minlength=12)[before.parent[rescued]] == 0).all())
        ids = ids[source]
        # Parent stays aligned with the source Gaussian; each face keeps >= 1 Gaussian.
        assert torch.equal(gaussians.parent, before.parent[source])
        assert bool((gaussians.face_counts() >= 1).all())
        assert int(gaussians.face_counts().sum()) == gaussians.num_gaussians
        assert torch.equal(gaussians.colors, before.colors[source])


def test_prune_everything_keeps_the_most_opaque_gaussian_per_face():
    gen = torch.Generator().manual_seed(7)
    gaussians = random_gaussians(gen, num_faces=5, extra=15)
    pruned, kept = gaussians.prune(torch.ones(gaussians.num_gaussians, dtype=torch.bool))
    assert pruned.num_gaussians == 5
    assert torch.equal(pruned.parent.sort().values, torch.arange(5))
    for face in range(5):
        on_face = gaussians.parent == face
        assert float(pruned.opacity_logits[pruned.parent == face]) == float(gaussians.opacity_logits[on_face].max())


def test_split_draws_offsets_in_the_local_frame():
    # One Gaussian, elongated along local x after a 90-degree local turn about z: children must
    # spread along the rotated long axis (local y) by ~its local scale, whatever the triangle's size.
    n_children = 4000
    quat = torch.tensor([[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]])
    big = MeshGaussians(
        parent=torch.zeros(n_children, dtype=torch.long), local_means=torch.zeros(n_children, 3),
        local_quats=quat.repeat(n_children, 1),
        local_log_scales=torch.log(torch.tensor([[0.5, 0.01, 0.01]])).repeat(n_children, 1),
        opacity_logits=torch.zeros(n_children), colors=torch.zeros(n_children, 3), num_faces=1,
    )
    split, source = big.densify(torch.ones(big.num_gaussians, dtype=torch.bool), "split", torch.Generator().manual_seed(0))
    spread = split.local_means.std(0)
    assert abs(float(spread[1]) - 0.5) < 0.05 and float(spread[0]) < 0.03 and float(spread[2]) < 0.03
    torch.testing.assert_close(split.local_log_scales[0], torch.log(torch.tensor([0.5, 0.01, 0.01])) - math.log(1.6))


def test_safetensors_round_trip_and_validation(tmp_path):
    gen = torch.Generator().manual_seed(3)
    gaussians = random_gaussians(gen)
    path = tmp_path / "gaussians.safetensors"
    save_file(gaussians.to_tensors(), str(path))
    loaded = MeshGaussians.from_tensors(load_file(str(path)))
    for name, value in gaussians.to_tensors().items():
        assert torch.equal(loaded.to_tensors()[name], value)
    good = gaussians.to_tensors()
    for change, message in [
        (lambda t: t.pop("colors"), "missing"),
        (lambda t: t.update(parent=t["parent"] + 100), "mesh has 12 triangles"),
        (lambda t: t.update(parent=t["parent"].int()), "parent must be"),
        (lambda t: t.update(colors=t["colors"][:, :2]), "colors must be"),
        (lambda t: t.update(opacity_logits=t["opacity_logits"].double()), "dtype"),
        (lambda t: t["local_means"].__setitem__((0, 0), float("nan")), "NaN"),
        (lambda t: t.update(num_faces=torch.tensor([13])), "carry no Gaussian"),
        (lambda t: t.update(num_faces=torch.tensor([1.0])), "num_faces"),
    ]:
        tensors = {k: v.clone() for k, v in good.items()}
        change(tensors)
        with pytest.raises(ValueError, match=message):
            MeshGaussians.from_tensors(tensors)


def test_bad_arguments():
    gaussians = random_gaussians(torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match="mask must be"):
        gaussians.prune(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="clone' or 'split"):
        gaussians.densify(torch.ones(gaussians.num_gaussians, dtype=torch.bool), "grow")
    topology, vertices = small_mesh()
    with pytest.raises(ValueError, match="per_face"):
        init_on_mesh(topology, vertices, per_face=0)
    flat = vertices.clone()
    flat[1] = flat[0]
    with pytest.raises(ValueError, match="degenerate"):
        init_on_mesh(topology, flat)
