"""Photometric head-pose refinement (avatar.pose_refine) and its use in training: the rotation formula against
matrix_exp, recovery of a known pose error on a synthetic avatar, and refined poses kept through checkpoints."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from avatar.pose_refine import PoseRefineOptions, PoseTrack, axis_angle_to_matrix, refine_poses
from avatar.checkpoint import load_checkpoint
from avatar.train import TrainingData, preset, render_frame, train
from tests.talking_fixtures import tiny_avatar


def _skew(v: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros((), dtype=v.dtype)
    return torch.stack([torch.stack([zero, -v[2], v[1]]), torch.stack([v[2], zero, -v[0]]),
                        torch.stack([-v[1], v[0], zero])])


@pytest.mark.parametrize("magnitude", [0.0, 1e-7, 1e-5, 1e-3, 0.3, 2.5])
def test_axis_angle_matches_the_matrix_exponential(magnitude):
    g = torch.Generator().manual_seed(int(magnitude * 1e7) % 1000)
    for _ in range(5):
        direction = torch.randn(3, generator=g, dtype=torch.float64)
        v = direction / direction.norm() * magnitude
        expected = torch.linalg.matrix_exp(_skew(v))
        assert torch.allclose(axis_angle_to_matrix(v), expected, atol=1e-12, rtol=0)


def test_axis_angle_gradients_match_finite_differences_also_near_zero():
    g = torch.Generator().manual_seed(0)
    for scale in (0.0, 1e-5, 0.5):
        v = (torch.randn(3, generator=g, dtype=torch.float64) * scale).requires_grad_(True)
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (v,), eps=1e-7, atol=1e-6)
    # and the gradient at zero is the skew generator's: d R / d v_x at 0 is skew(e_x)
    v = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jacobian = torch.autograd.functional.jacobian(axis_angle_to_matrix, v)  # [3, 3, 3]
    assert torch.allclose(jacobian[..., 0], _skew(torch.tensor([1.0, 0, 0], dtype=torch.float64)))


def test_axis_angle_rejects_a_batch():
    with pytest.raises(ValueError, match=r"\[3\]"):
        axis_angle_to_matrix(torch.zeros(2, 3))


def _synthetic(frames: int = 4, size: int = 64, error_rad: float = 0.03, error_m=(0.003, -0.002, 0.008)):
    """A tiny avatar's pose track, pictures rendered at poses off that track by a known rigid error, and the data."""
    avatar = tiny_avatar(size=size, t=frames)
    rig = avatar.extended_rig()
    tracked = PoseTrack(avatar.neutral, avatar.expression_basis, rig, avatar.rotations, avatar.translations,
                        avatar.expression_coeffs)
    g = torch.Generator().manual_seed(7)
    true_rotations, true_translations = [], []
    for t in range(frames):
        axis = torch.randn(3, generator=g)
        true_rotations.append(axis_angle_to_matrix(axis / axis.norm() * error_rad) @ avatar.rotations[t])
        true_translations.append(avatar.translations[t] + torch.tensor(error_m))
    truth = PoseTrack(avatar.neutral, avatar.expression_basis, rig, torch.stack(true_rotations),
                      torch.stack(true_translations), avatar.expression_coeffs)
    params = {k: v for k, v in avatar.gaussians.items() if k != "parent"}
    parent = avatar.gaussians["parent"]
    camera = avatar.camera.to_camera()
    plate = avatar.background.float() / 255.0
    images, mattes = [], []
    with torch.no_grad():
        for vertices in truth.vertices():
            out = render_frame(params, parent, vertices, avatar.faces, camera, plate)[0]
            images.append((out.color.clamp(0, 1) * 255).round().to(torch.uint8))
            mattes.append(((out.alpha.reshape(size, size) > 0.5) * 255).to(torch.uint8))
    data = TrainingData(torch.stack(images), torch.stack(mattes), tracked.vertices(), avatar.faces, camera,
                        list(range(frames)), [], plate=avatar.background, poses=tracked)
    return params, parent, tracked, truth, data


def _pose_errors(track: PoseTrack, truth: PoseTrack) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: rotation error (radians) and translation error (metres) of track against truth."""
    relative = track.rotations @ truth.rotations.transpose(1, 2)
    cos = ((relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.arccos(cos), (track.translations - truth.translations).norm(dim=-1)


def test_refinement_recovers_a_known_rigid_pose_error():
    params, parent, tracked, truth, data = _synthetic()
    before_rot, before_trans = _pose_errors(tracked, truth)
    assert float(before_rot.min()) > 0.029 and float(before_trans.min()) > 0.008
    refined = refine_poses(params, parent, tracked, data, [0, 1, 2, 3], PoseRefineOptions(steps=60, resolution=64))
    after_rot, after_trans = _pose_errors(refined, truth)
    # most of the error is gone on every frame (the depth error is the weakest-observed direction)
    assert bool((after_rot < 0.35 * before_rot).all()), (before_rot, after_rot)
    assert bool((after_trans < 0.5 * before_trans).all()), (before_trans, after_trans)
    # the picture error falls with it, and the expression, body and other inputs are untouched
    assert torch.equal(refined.coeffs, tracked.coeffs) and refined.rig is tracked.rig
    with torch.no_grad():
        def error(track):
            return sum(float((render_frame(params, parent, v, data.faces, data.camera, data.plate.float() / 255)[0].color
                              - data.frame(i)).abs().mean()) for i, v in enumerate(track.vertices()))
        assert error(refined) < 0.5 * error(tracked)


def test_refinement_leaves_frames_it_was_not_asked_about():
    params, parent, tracked, _, data = _synthetic()
    refined = refine_poses(params, parent, tracked, data, [1], PoseRefineOptions(steps=3, resolution=32))
    for frame in (0, 2, 3):
        assert torch.equal(refined.rotations[frame], tracked.rotations[frame])
        assert torch.equal(refined.translations[frame], tracked.translations[frame])
    assert not torch.equal(refined.rotations[1], tracked.rotations[1])


def test_refinement_needs_a_plate_and_sane_options():
    params, parent, tracked, _, data = _synthetic(frames=2)
    with pytest.raises(ValueError, match="plate"):
        refine_poses(params, parent, tracked, replace(data, plate=None), [0])
    with pytest.raises(ValueError, match="steps"):
        PoseRefineOptions(steps=0)
    with pytest.raises(ValueError, match="pose_refine_at"):
        preset("tiny", pose_refine_at=(0.6, 0.3))
    with pytest.raises(ValueError, match="T=2"):
        replace(data, poses=PoseTrack(tracked.neutral, tracked.basis, tracked.rig, tracked.rotations[:1],
                                      tracked.translations[:1], tracked.coeffs[:1]))


def test_training_refines_poses_and_a_checkpoint_keeps_them(tmp_path):
    params, parent, tracked, truth, data = _synthetic(frames=6, size=48)
    # the Gaussians are the truth's and stay frozen (zero learning rates, no densify), so the pass inside
    # training must find the true poses as a refinement alone does
    frozen = dict(lr_means=0.0, lr_quats=0.0, lr_scales=0.0, lr_opacity=0.0, lr_colors=0.0, densify_from=10**6)
    config = preset("tiny", resolution=48, iterations=40, pose_refine_at=(0.5,), pose_refine_steps=40,
                    pose_refine_resolution=48, checkpoint_every_iterations=10, **frozen)
    result = train(data, config, checkpoint_dir=tmp_path / "ckpt", initial=(params, parent))
    assert result.poses is not None
    before_rot, _ = _pose_errors(tracked, truth)
    after_rot, _ = _pose_errors(result.poses, truth)
    assert float(after_rot.max()) < 0.5 * float(before_rot.min()), (before_rot, after_rot)
    saved = load_checkpoint(tmp_path / "ckpt", config, data.fingerprint)
    rotations, translations, passes = saved[7]
    assert passes == 1
    assert torch.equal(rotations, result.poses.rotations) and torch.equal(translations, result.poses.translations)
    # a resumed run starts from the refined poses and does not refine again
    resumed = train(data, replace(config, iterations=45), checkpoint_dir=tmp_path / "ckpt")
    assert resumed.resumed_from == 40
    assert torch.equal(resumed.poses.rotations, result.poses.rotations)


def test_training_without_a_pose_track_does_not_refine():
    params, parent, _, _, data = _synthetic(frames=3, size=32)
    config = preset("tiny", resolution=32, iterations=10, pose_refine_at=(0.1,))
    result = train(replace(data, poses=None), config, initial=(params, parent))
    assert result.poses is None and result.iterations == 10
    assert math.isfinite(result.history["loss"][-1])


def test_a_capped_pass_fits_spread_frames_and_interpolates_the_rest():
    from avatar.pose_refine import interpolated_correction, spread_frames

    assert spread_frames([1, 2, 3], 0) == [1, 2, 3] and spread_frames([1, 2, 3], 5) == [1, 2, 3]
    assert spread_frames(list(range(0, 100, 2)), 4) == [0, 32, 66, 98]  # first and last kept, evenly between
    corrections = {10: (torch.zeros(3), torch.zeros(3)), 20: (torch.ones(3), torch.full((3,), 2.0))}
    w, d = interpolated_correction(corrections, 15)
    assert torch.allclose(w, torch.full((3,), 0.5)) and torch.allclose(d, torch.ones(3))
    assert torch.equal(interpolated_correction(corrections, 25)[1], torch.full((3,), 2.0))  # beyond: nearest
    assert torch.equal(interpolated_correction(corrections, 3)[0], torch.zeros(3))
    with pytest.raises(ValueError, match="max_frames"):
        PoseRefineOptions(max_frames=1)

    # on pictures with a known pose error: frames 0 and 3 fitted, 1 and 2 take their interpolated corrections
    params, parent, tracked, truth, data = _synthetic(error_rad=0.0)  # the same translation error on every frame
    refined = refine_poses(params, parent, tracked, data, [0, 1, 2, 3],
                           PoseRefineOptions(steps=60, resolution=64, max_frames=2))
    before = _pose_errors(tracked, truth)[1]
    after = _pose_errors(refined, truth)[1]
    assert bool((after < 0.6 * before).all()), (before, after)  # the unfitted frames improve too
    shift = refined.translations - tracked.translations
    assert torch.allclose(shift[1], shift[0] + (shift[3] - shift[0]) / 3, atol=1e-6)
    assert torch.allclose(shift[2], shift[0] + 2 * (shift[3] - shift[0]) / 3, atol=1e-6)
