"""Body tracking: known affine motions of a synthetic torso are recovered, the warp moves points in the image
plane at their depth, and the extended mesh applies it to the body end of the neck blend only."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from avatar.body_tracking import identity_warps, track_body, warp_points
from avatar.rig import Intrinsics

SIZE = 128
CAMERA = Intrinsics(fx=200.0, fy=210.0, cx=60.0, cy=66.0, width=SIZE, height=SIZE)


def _synthetic_clip(warps_px: np.ndarray, seed: int = 0):
    """A textured torso below y = 56 moved by warps_px [T, 2, 3] (pixels, reference -> frame) over a still,
    differently textured background; a face (the chin at y = 50) above it."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((SIZE, SIZE, 3)).astype(np.float32), (0, 0), 2.0)
    texture = (255 * (texture - texture.min()) / np.ptp(texture)).astype(np.uint8)
    background = np.full((SIZE, SIZE, 3), 90, np.uint8)
    body_mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(body_mask, (64, 140), (58, 80), 0, 0, 360, 255, -1)
    frames, mattes = [], []
    for warp in warps_px:
        moved = cv2.warpAffine(texture, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = cv2.warpAffine(body_mask, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        alpha = mask[..., None].astype(np.float32) / 255
        frames.append((moved * alpha + background * (1 - alpha)).astype(np.uint8))
        mattes.append(mask)
    landmarks = np.zeros((len(warps_px), 478, 2), np.float32)
    landmarks[:, 152] = (64, 50)
    return np.stack(frames), np.stack(mattes), landmarks


def _to_pixels(normalised: np.ndarray) -> np.ndarray:
    k = np.array([[CAMERA.fx, 0, CAMERA.cx], [0, CAMERA.fy, CAMERA.cy], [0, 0, 1]])
    full = np.tile(np.eye(3), (len(normalised), 1, 1))
    full[:, :2] = normalised
    return (k @ full @ np.linalg.inv(k))[:, :2]


def test_known_affine_motions_are_recovered():
    rng = np.random.default_rng(1)
    t = 16
    # a sway: smooth like a video's, up to 5 px and 3 % of rotation/scale/shear, plus one sudden jump
    phase = np.linspace(0, 2 * np.pi, t)[:, None]
    warps = np.tile(np.eye(2, 3), (t, 1, 1))
    warps[:, :, 2] = 5 * np.sin(phase + rng.uniform(0, 6, 2))
    warps[:, :, :2] += 0.03 * np.sin(phase[..., None] + rng.uniform(0, 6, (2, 2)))
    warps[9, :, 2] += (3.0, -2.0)
    frames, mattes, landmarks = _synthetic_clip(warps.astype(np.float32))
    reference = np.ones(t, bool)
    reference[-3:] = False  # held out: they must not shape the centre
    found, summary = track_body(frames, mattes, landmarks, CAMERA, reference)
    assert summary["tracked"] and found.shape == (t, 2, 3) and found.dtype == np.float32
    # relative motion between any two frames is the known one: W_i W_j^-1 (warps are defined up to the centre)
    got = _to_pixels(found.astype(np.float64))
    full_got = np.concatenate([got, np.tile([[[0, 0, 1]]], (t, 1, 1))], 1)
    full_true = np.concatenate([warps, np.tile([[[0, 0, 1]]], (t, 1, 1))], 1)
    probe = np.array([[30, 80, 1], [100, 80, 1], [64, 120, 1]], np.float64).T
    for i in range(t):
        relative_got = full_got[i] @ np.linalg.inv(full_got[0]) @ probe
        relative_true = full_true[i] @ np.linalg.inv(full_true[0]) @ probe
        assert np.abs(relative_got - relative_true).max() < 0.6, i  # a translation-only fit errs by ~2 px
    np.testing.assert_allclose(found[reference].mean(0), np.eye(2, 3), atol=1e-5)


def test_still_body_gives_identity_and_no_body_is_not_tracked():
    still = np.tile(np.eye(2, 3, dtype=np.float32), (5, 1, 1))
    frames, mattes, landmarks = _synthetic_clip(still)
    found, summary = track_body(frames, mattes, landmarks, CAMERA, np.ones(5, bool))
    assert summary["tracked"]
    assert np.abs(_to_pixels(found.astype(np.float64)) - np.eye(2, 3)).max() < 0.05
    landmarks[:, 152, 1] = SIZE - 4  # the chin at the crop's bottom: nothing below it to track
    found, summary = track_body(frames, mattes, landmarks, CAMERA, np.ones(5, bool))
    assert not summary["tracked"] and np.array_equal(found, identity_warps(5))
    found, summary = track_body(frames[:1], mattes[:1], landmarks[:1], CAMERA, np.ones(1, bool))
    assert not summary["tracked"] and found.shape == (1, 2, 3)
    with pytest.raises(ValueError, match="reference"):
        track_body(frames, mattes, landmarks, CAMERA, np.ones(4, bool))


def test_warp_points_moves_projections_by_the_affine():
    torch.manual_seed(0)
    points = torch.randn(4, 7, 3, dtype=torch.float64)
    points[..., 2] = points[..., 2].abs() + 1.0
    assert torch.allclose(warp_points(points, torch.eye(2, 3, dtype=torch.float64).expand(4, 2, 3)), points)
    warps = torch.eye(2, 3, dtype=torch.float64).repeat(4, 1, 1) + 0.05 * torch.randn(4, 2, 3, dtype=torch.float64)
    moved = warp_points(points, warps)
    uv = points[..., :2] / points[..., 2:]
    expected = torch.einsum("tij,tpj->tpi", warps, torch.cat([uv, torch.ones_like(uv[..., :1])], -1))
    torch.testing.assert_close(moved[..., :2] / moved[..., 2:], expected)
    torch.testing.assert_close(moved[..., 2], points[..., 2])
    assert torch.autograd.gradcheck(warp_points, (points.requires_grad_(), warps.requires_grad_()))


@pytest.fixture(scope="module")
def face_metres() -> torch.Tensor:  # [478, 3] FaceMesh on skimage's astronaut, pixels / 1000 (about metres)
    pytest.importorskip("mediapipe")
    from avatar.mesh_plot import sample_landmarks

    landmarks = sample_landmarks()
    return (landmarks - landmarks.mean(0)) / 1000


def test_extended_mesh_moves_only_the_body_end_of_the_neck(face_metres):
    from avatar.mesh import build_rig, extend_vertices, with_body_pose

    rig = build_rig(face_metres)
    g = torch.Generator().manual_seed(5)
    skew = 0.05 * torch.randn(3, 3, 3, generator=g, dtype=torch.float64)
    rotations = torch.linalg.matrix_exp(skew - skew.mT)  # small head turns
    translations = torch.tensor([[0.0, 0.02, 0.6]], dtype=torch.float64) + 0.01 * torch.randn(3, 3, generator=g,
                                                                                              dtype=torch.float64)
    posed_rig = with_body_pose(rig, rotations, translations)
    batch = face_metres.expand(3, -1, -1)
    still = extend_vertices(batch, posed_rig, rotations, translations)
    identity = torch.eye(2, 3, dtype=torch.float64).expand(3, 2, 3)
    torch.testing.assert_close(extend_vertices(batch, posed_rig, rotations, translations, identity), still)
    warps = identity + 0.02 * torch.randn(3, 2, 3, generator=g, dtype=torch.float64)
    moved = extend_vertices(batch, posed_rig, rotations, translations, warps)
    camera = moved @ rotations.mT + translations[:, None]
    follow = torch.cat([torch.ones(478, dtype=torch.float64), rig.head_follow])
    unposed = extend_vertices(face_metres, rig)
    r0, t0 = posed_rig.body_rotation, posed_rig.body_translation
    partial = (follow < 1).nonzero().flatten()
    assert len(partial) > 0 and bool((follow < 0.5).any())
    for t in range(3):  # slow twin: vertex by vertex, f (R v + t) + (1 - f) W(R0 v + t0)
        for v in partial[::5].tolist():
            head = rotations[t] @ unposed[v] + translations[t]
            body = r0 @ unposed[v] + t0
            u = warps[t] @ torch.cat([body[:2] / body[2], body.new_ones(1)])
            warped = torch.cat([u * body[2], body[2:]])
            torch.testing.assert_close(camera[t, v], follow[v] * head + (1 - follow[v]) * warped)
    rigid = follow == 1
    torch.testing.assert_close(moved[:, rigid], still[:, rigid])
    with pytest.raises(ValueError, match="body_warp"):
        extend_vertices(batch, posed_rig, rotations, None, warps)
    with pytest.raises(ValueError, match="body_warp"):
        extend_vertices(batch, posed_rig, rotations, translations, warps[:2])


def test_with_a_tracked_body_the_collar_follows_the_body_alone(face_metres):
    from avatar.face_topology import NUM_LANDMARKS
    from avatar.mesh import PARTS, build_rig, build_topology

    topology = build_topology()
    neck = (topology.vertex_part == PARTS.index("neck"))[NUM_LANDMARKS:]
    still = build_rig(face_metres).head_follow[neck]
    tracked = build_rig(face_metres, tracked_body=True).head_follow[neck]
    assert still.max() == 1 and still.min() == pytest.approx(0.2)  # a still body: the shoulders sway a fifth
    assert tracked.max() == 1 and (tracked == 0).float().mean() >= 0.5  # lower half: the body's motion only
    assert bool((tracked <= still).all())


def test_body_sway_is_learned_from_head_poses_and_drives_animation(face_metres):
    from avatar.body_tracking import fit_body_sway, sway_warps
    from avatar.mesh import ExtendedMeshRig, build_rig, with_body_pose
    from avatar.model import posed_vertices

    g = torch.Generator().manual_seed(7)
    t = 60
    skew = 0.1 * torch.randn(t, 3, 3, generator=g, dtype=torch.float64)
    rotations = torch.linalg.matrix_exp(skew - skew.mT)
    translations = torch.tensor([0.0, 0.0, 0.6], dtype=torch.float64) + 0.02 * torch.randn(t, 3, generator=g,
                                                                                            dtype=torch.float64)
    rig = with_body_pose(build_rig(face_metres, tracked_body=True), rotations, translations)
    true_map = 0.05 * torch.randn(7, 6, generator=g, dtype=torch.float64)
    warps = sway_warps(true_map, rotations, translations, rig.body_rotation, rig.body_translation)
    noisy = warps + 1e-4 * torch.randn(t, 2, 3, generator=g, dtype=torch.float64)
    sway = fit_body_sway(rotations, translations, rig.body_rotation, rig.body_translation, noisy, ridge=1e-6)
    fitted = sway_warps(sway, rotations, translations, rig.body_rotation, rig.body_translation)
    assert (fitted - warps).abs().max() < 1e-3 < (warps - torch.eye(2, 3, dtype=torch.float64)).abs().max()
    # saved with the rig; without tracked warps (speech animation) the vertices follow the predicted sway
    swaying = ExtendedMeshRig.from_tensors({**rig.to_tensors(), "body_sway": sway}, rig.metadata())
    torch.testing.assert_close(swaying.body_sway, sway)
    neutral, empty_basis, coeffs = face_metres.float(), torch.zeros(0, 478, 3), torch.zeros(t, 0)  # as avatars
    driven = posed_vertices(neutral, empty_basis, swaying, rotations, translations, coeffs)
    tracked = posed_vertices(neutral, empty_basis, rig, rotations, translations, coeffs, fitted)
    torch.testing.assert_close(driven, tracked)
    still = posed_vertices(neutral, empty_basis, rig, rotations, translations, coeffs)
    assert (driven - still).abs().max() > 1e-3
    with pytest.raises(ValueError, match="body_sway"):
        ExtendedMeshRig.from_tensors({**rig.to_tensors(), "body_sway": sway[:6]}, rig.metadata())
