"""Tests for the extended face mesh: triangle asset, winding on a real FaceMesh result, parts,
rig placement and motion, no degenerate triangles, rig round trip, debug plot."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from avatar import face_topology as ft
from avatar.binding import degenerate_faces
from avatar.mesh import (
    PARTS,
    ExtendedMeshRig,
    MeshResolution,
    build_rig,
    build_topology,
    extend_vertices,
    head_axes,
    main,
)


@pytest.fixture(scope="module")
def astronaut_landmarks() -> torch.Tensor:
    pytest.importorskip("mediapipe")
    from avatar.mesh_plot import sample_landmarks

    return sample_landmarks()  # FaceMesh (refine_landmarks) on skimage's astronaut, pixel units


@pytest.fixture(scope="module")
def topology():
    return build_topology()


@pytest.fixture(scope="module")
def rig(astronaut_landmarks):
    return build_rig(astronaut_landmarks)


def normals_and_centroids(vertices, faces):
    tri = vertices[faces]
    return torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), tri.mean(1)


def to_canonical(points, landmarks):
    origin, axes, unit = head_axes(landmarks)
    return (points - origin) @ axes / unit


def open_jaw(landmarks, amount):
    """Move the landmarks below the upper inner lip down (lower lip and chin), by amount x unit."""
    origin, axes, unit = head_axes(landmarks)
    canonical = to_canonical(landmarks, landmarks)
    weight = torch.clamp((canonical[13, 1] - canonical[:, 1]) / 0.1, 0, 1)
    return landmarks - (weight * amount * unit)[:, None] * axes[:, 1]


def test_committed_triangles_match_the_installed_mediapipe_source():
    pytest.importorskip("mediapipe")
    parsed = ft.parse_tessellation_source(ft.mediapipe_connections_path().read_text())
    assert torch.equal(torch.tensor(parsed), ft.load_face_triangles())
    # The edge set of the triangles is exactly mediapipe's FACEMESH_TESSELATION.
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for t in parsed for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    assert edges == {tuple(sorted(e)) for e in FACEMESH_TESSELATION}


def test_parse_rejects_source_without_tessellation():
    with pytest.raises(ValueError, match="not found"):
        ft.parse_tessellation_source("X = frozenset([(1, 2)])\n")
    with pytest.raises(ValueError, match="closed triangle"):
        ft.parse_tessellation_source("FACEMESH_TESSELATION = frozenset([(1, 2), (2, 3), (4, 1)])\n")


def test_face_winding_points_out_of_the_face(astronaut_landmarks):
    faces = ft.load_face_triangles()
    normals, centroids = normals_and_centroids(astronaut_landmarks, faces)
    # MediaPipe's frame: +z points away from the camera, so outward (towards the camera) is -z.
    # Triangles at the silhouette may face sideways; nearly all must face the camera.
    facing = (normals[:, 2] < 0).float().mean()
    assert facing > 0.97, f"only {facing:.3f} of the face triangles face the camera"


def test_topology_parts_and_counts(topology):
    r = MeshResolution()
    counts = {p: int(topology.part_faces(p).numel()) for p in PARTS}
    assert counts["face"] == 852
    assert counts["shell"] == 36 * 2 * r.shell_rings + 36
    assert counts["upper_teeth"] == counts["lower_teeth"] == 2 * r.teeth_columns * r.teeth_rows
    assert counts["neck"] == 2 * r.neck_columns * r.neck_rows
    assert counts["eyes"] == 2 * 2 * r.eye_columns * r.eye_rows
    assert sum(counts.values()) == topology.faces.shape[0]
    assert int(topology.faces.max()) == topology.num_vertices - 1
    # Every extra vertex is used by a triangle; the iris points (468..477) are not.
    used = torch.zeros(topology.num_vertices, dtype=torch.bool)
    used[topology.faces.flatten()] = True
    assert bool(used[478:].all()) and not bool(used[468:478].any())
    with pytest.raises(ValueError, match="unknown mesh part"):
        topology.part_faces("hair")


@pytest.mark.parametrize("jaw", [0.0, 0.45])
def test_no_degenerate_triangles_neutral_and_jaw_open(topology, rig, astronaut_landmarks, jaw):
    vertices = extend_vertices(open_jaw(astronaut_landmarks, jaw), rig)
    assert not bool(degenerate_faces(vertices, topology.faces).any())
    extra = topology.face_part > 0
    # The parts we built are well shaped: height >= 5% of the longest edge.
    assert not bool(degenerate_faces(vertices, topology.faces[extra], min_aspect=0.05).any())


def test_extra_parts_face_outwards(topology, rig, astronaut_landmarks):
    canonical = to_canonical(extend_vertices(astronaut_landmarks, rig), astronaut_landmarks)
    normals, centroids = normals_and_centroids(canonical, topology.faces)
    normals = normals / normals.norm(dim=-1, keepdim=True)

    def share(part, direction):
        idx = topology.part_faces(part)
        d = direction(centroids[idx]) if callable(direction) else direction
        return float(((normals[idx] * d).sum(-1) > 0).float().mean())

    forward, up = torch.tensor([0.0, 0, 1], dtype=torch.float64), torch.tensor([0.0, 1, 0], dtype=torch.float64)
    head_centre = centroids[topology.part_faces("shell")].mean(0)
    assert share("shell", lambda c: c - head_centre) > 0.95
    for part in ("upper_teeth", "lower_teeth", "mouth_cavity", "eyes"):
        assert share(part, forward) == 1.0, part
    assert share("tongue", up) == 1.0
    assert share("neck", lambda c: c * torch.tensor([1.0, 0, 1]) - c[:, :].mean(0) * torch.tensor([1.0, 0, 1])) > 0.95


def test_teeth_sit_behind_the_inner_lips_and_are_finely_triangulated(topology, rig, astronaut_landmarks):
    canonical = to_canonical(extend_vertices(astronaut_landmarks, rig), astronaut_landmarks)
    lips = canonical[[13, 14]].mean(0)
    for part, lip in (("upper_teeth", 13), ("lower_teeth", 14)):
        verts = canonical[topology.faces[topology.part_faces(part)].unique()]
        assert float(verts[:, 2].max()) < float(lips[2])  # behind the lips
        assert float((verts[:, 1] - canonical[lip, 1]).abs().min()) < 0.035  # an edge at its inner lip
        height = float(verts[:, 1].max() - verts[:, 1].min())
        assert 0.06 < height < 0.12  # ~8 mm at ~95 mm between the outer eye corners
        tri = canonical[topology.faces[topology.part_faces(part)]]
        longest = (tri - tri.roll(1, 1)).norm(dim=-1).amax(-1)
        assert float(longest.max()) < 0.05  # < ~5 mm: small Gaussians, sharp teeth


def test_motion_upper_teeth_rigid_lower_parts_follow_the_jaw(topology, rig, astronaut_landmarks):
    neutral = extend_vertices(astronaut_landmarks, rig)
    torch.testing.assert_close(neutral[478:], rig.extra_neutral)
    opened = extend_vertices(open_jaw(astronaut_landmarks, 0.4), rig)
    _, axes, unit = head_axes(astronaut_landmarks)
    drop = -((opened - neutral) @ axes[:, 1]) / unit  # downward motion in units
    part_of = topology.vertex_part

    def verts(part):
        return part_of == PARTS.index(part)

    assert float(drop[verts("upper_teeth")].abs().max()) < 1e-9
    lower = drop[verts("lower_teeth")]
    assert float(lower.max()) == pytest.approx(0.4, abs=0.02) and float(lower.min()) > 0.2
    assert float(drop[verts("tongue")].min()) > 0.1
    assert float(drop[verts("neck")].abs().max()) < 1e-9
    # The mouth cavity's top stays, its bottom goes with the jaw.
    cavity = drop[verts("mouth_cavity")]
    assert float(cavity.min()) < 1e-9 and float(cavity.max()) > 0.35


def test_extend_vertices_batched_and_differentiable(rig, astronaut_landmarks):
    gen = torch.Generator().manual_seed(0)
    frames = astronaut_landmarks + torch.randn(3, 478, 3, generator=gen, dtype=torch.float64)
    batched = extend_vertices(frames, rig)
    for t in range(3):
        torch.testing.assert_close(batched[t], extend_vertices(frames[t], rig))
    # gradcheck on the landmarks that drive extra vertices (jaw, outline, iris) plus one that drives none.
    idx = torch.tensor([1, 10, 152, 175, 200, 338, 468])
    sub = frames[0][idx].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: extend_vertices(frames[0].index_copy(0, idx, x), rig)[470::9], [sub], eps=1e-6, atol=1e-6
    )
    with pytest.raises(ValueError, match=r"\[\.\.\., 478, 3\]"):
        extend_vertices(frames[:, :468], rig)
    with pytest.raises(ValueError, match="NaN"):
        extend_vertices(frames[0] * float("nan"), rig)


@pytest.mark.parametrize("mirror", [False, True])
def test_rig_is_equivariant_to_similarity_transforms(rig, astronaut_landmarks, mirror):
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.det(q)) * (-1 if mirror else 1)
    moved = astronaut_landmarks @ q.T * 0.013 + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    moved_rig = build_rig(moved)
    expected = rig.extra_neutral @ q.T * 0.013 + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(moved_rig.extra_neutral, expected)


def test_rig_round_trip_through_safetensors_and_json(rig, tmp_path):
    save_file(rig.to_tensors(), str(tmp_path / "rig.safetensors"))
    (tmp_path / "rig.json").write_text(json.dumps(rig.metadata()))
    loaded = ExtendedMeshRig.from_tensors(load_file(str(tmp_path / "rig.safetensors")),
                                          json.loads((tmp_path / "rig.json").read_text()))
    for name, value in rig.to_tensors().items():
        assert torch.equal(loaded.to_tensors()[name], value)
    assert loaded.resolution == rig.resolution
    bad = rig.to_tensors()
    bad["anchor_index"] = bad["anchor_index"] + 478
    with pytest.raises(ValueError, match="outside the 478"):
        ExtendedMeshRig.from_tensors(bad, rig.metadata())
    with pytest.raises(ValueError, match="extra_neutral"):
        ExtendedMeshRig.from_tensors({**rig.to_tensors(), "extra_neutral": rig.extra_neutral[:5]}, rig.metadata())
    with pytest.raises(ValueError, match="version"):
        ExtendedMeshRig.from_tensors(rig.to_tensors(), {"format_version": 99})


def test_bad_neutral_faces_are_rejected():
    with pytest.raises(ValueError, match=r"\[478, 3\]"):
        build_rig(torch.zeros(468, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="eye corners coincide"):
        build_rig(torch.zeros(478, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="positive int"):
        MeshResolution(teeth_rows=0)


def test_plot_cli_writes_a_png(astronaut_landmarks, tmp_path):
    np.save(tmp_path / "lm.npy", astronaut_landmarks.numpy())
    out = tmp_path / "mesh.png"
    assert main(["--plot", str(out), "--landmarks", str(tmp_path / "lm.npy")]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--plot", str(out), "--landmarks", str(tmp_path / "missing.npy")]) == 2


def rotation_about(axis, degrees):
    from avatar.mesh import _rotation_from_vectors

    vector = torch.tensor(axis, dtype=torch.float64)
    return _rotation_from_vectors(vector / vector.norm() * torch.deg2rad(torch.tensor(degrees, dtype=torch.float64)))


def test_neck_follows_head_turns_partly(topology, rig, astronaut_landmarks):
    _, axes, _ = head_axes(astronaut_landmarks)
    turn = rotation_about(axes[:, 1].tolist(), 40.0)  # head turns 40 degrees about its up axis
    still = extend_vertices(astronaut_landmarks, rig)
    torch.testing.assert_close(extend_vertices(astronaut_landmarks, rig, torch.eye(3, dtype=torch.float64)), still)
    head_frame = extend_vertices(astronaut_landmarks, rig, turn)
    neck = topology.vertex_part == PARTS.index("neck")
    torch.testing.assert_close(head_frame[~neck], still[~neck])
    world = head_frame @ turn.T  # the caller applies the head pose
    pivot = rig.neck_pivot
    follow = rig.head_follow[neck[478:]]
    for f in (1.0, 0.2):
        rows = (follow - f).abs() < 1e-9
        assert bool(rows.any())
        partial = rotation_about(axes[:, 1].tolist(), 40.0 * f)
        # The pivot is a point of the head, so it moves with the head; the neck turns about it by R^f.
        expected = (still[neck][rows] - pivot) @ partial.T + pivot @ turn.T
        torch.testing.assert_close(world[neck][rows], expected)
    # Differentiable in the rotation, including at and near the identity.
    neck_ids = neck.nonzero().flatten()[::20]
    for rotation in (turn, torch.eye(3, dtype=torch.float64), rotation_about([0.3, 1, 0.2], 1e-3)):
        r = rotation.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda m: extend_vertices(astronaut_landmarks, rig, m)[neck_ids], [r],
                                        eps=1e-7, atol=1e-5)
    with pytest.raises(ValueError, match="head_rotation must have shape"):
        extend_vertices(astronaut_landmarks, rig, torch.eye(4, dtype=torch.float64))


def test_eye_patches_fill_the_eye_openings_behind_the_lids(topology, rig, astronaut_landmarks):
    canonical = to_canonical(extend_vertices(astronaut_landmarks, rig), astronaut_landmarks)
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE

    eye_verts = canonical[topology.vertex_part == PARTS.index("eyes")]
    for contour_edges in (FACEMESH_RIGHT_EYE, FACEMESH_LEFT_EYE):
        contour = canonical[sorted({i for e in contour_edges for i in e})]
        near = eye_verts[(eye_verts[:, 0] - contour[:, 0].mean()).abs() < 0.5]
        # The patch spans the whole opening (front view) and lies behind the lid margins.
        assert float(near[:, 0].min()) < float(contour[:, 0].min()) and float(near[:, 0].max()) > float(contour[:, 0].max())
        assert float(near[:, 1].min()) < float(contour[:, 1].min()) and float(near[:, 1].max()) > float(contour[:, 1].max())
        assert float(near[:, 2].max()) < float(contour[:, 2].max())
    # Gaze: moving the iris centre moves the patch's centre with it, not its rim.
    moved = astronaut_landmarks.clone()
    moved[468] += 1.0
    shift = (extend_vertices(moved, rig) - extend_vertices(astronaut_landmarks, rig)).norm(dim=-1)
    right_eye = topology.vertex_part == PARTS.index("eyes")
    assert 0.5 < float(shift[right_eye].max()) <= 3**0.5 + 1e-9 and float(shift[right_eye].min()) == 0.0
    assert int((shift[right_eye] > 0).sum()) < int(right_eye.sum()) // 2  # the other eye stays


def test_neck_blends_between_head_and_body_pose(topology, rig, astronaut_landmarks):
    """With a body pose, a neck vertex with head_follow f lands at f (R v + t) + (1 - f)(R0 v + t0) once the
    caller applies the head pose; everything else stays rigid with the head."""
    from avatar.mesh import with_body_pose

    g = torch.Generator().manual_seed(3)
    rotations = torch.stack([rotation_about(torch.randn(3, generator=g).tolist(), 8.0) for _ in range(5)])
    translations = torch.randn(5, 3, generator=g, dtype=torch.float64) * 0.01 + torch.tensor([0.0, 0.0, 0.5])
    posed_rig = with_body_pose(rig, rotations, translations)
    r0, t0 = posed_rig.body_rotation, posed_rig.body_translation
    torch.testing.assert_close(r0 @ r0.T, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(t0, translations.mean(0))
    same = with_body_pose(rig, rotations[:1].expand(3, 3, 3), translations[:1].expand(3, 3))
    torch.testing.assert_close(same.body_rotation, rotations[0])  # the mean of one pose is that pose
    batch = astronaut_landmarks.expand(5, -1, -1)
    head_frame = extend_vertices(batch, posed_rig, rotations, translations)
    camera = head_frame @ rotations.transpose(1, 2) + translations[:, None]
    still = extend_vertices(astronaut_landmarks, rig)
    follow = torch.cat([torch.ones(478, dtype=torch.float64), rig.head_follow])
    neck = topology.vertex_part == PARTS.index("neck")
    assert bool((follow[neck] < 1).any()) and bool((follow[~neck] == 1).all())
    for t in range(5):  # slow twin: vertex by vertex
        for v in neck.nonzero().flatten()[::7].tolist():
            head = rotations[t] @ still[v] + translations[t]
            body = r0 @ still[v] + t0
            torch.testing.assert_close(camera[t, v], follow[v] * head + (1 - follow[v]) * body)
    torch.testing.assert_close(head_frame[:, ~neck], still[~neck].expand(5, -1, -1))
    # without a translation the rotation-only behaviour is kept; the body pose survives a save/load
    torch.testing.assert_close(extend_vertices(batch, posed_rig, rotations), extend_vertices(batch, rig, rotations))
    loaded = ExtendedMeshRig.from_tensors(posed_rig.to_tensors(), posed_rig.metadata())
    torch.testing.assert_close(loaded.body_rotation, r0)
    assert "body_rotation" not in rig.to_tensors() and ExtendedMeshRig.from_tensors(rig.to_tensors(), rig.metadata()).body_rotation is None
    with pytest.raises(ValueError, match="head_translation must have shape"):
        extend_vertices(batch, posed_rig, rotations, translations[:2])
