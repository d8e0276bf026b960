"""The numba EWA projection (forward and hand-written backward) against its torch twin (autograd)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from render import Camera
from render.cpu_backend import _camera_arrays
from render.cpu_projection import depth_order, project_backward, project_forward
from render.projection import project_gaussians
from tests.test_render import assert_grad_close


def _scene(seed: int, n: int):
    g = torch.Generator().manual_seed(seed)
    camera = Camera.look_at_origin(64, 48, fov_deg=50.0, distance=1.0)
    tilt = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.2, 0.1], [0.2, 0.0, -0.3], [-0.1, 0.3, 0.0]]))
    w2c = camera.world_to_camera.clone()
    w2c[:3, :3] = tilt  # a rotated camera exercises the view-rotation terms
    camera = Camera(camera.fx, camera.fy, 30.0, 26.0, 64, 48, w2c)
    means = torch.randn(n, 3, generator=g) * 0.6  # many far off-screen: the Jacobian clamp is active
    quats = torch.randn(n, 4, generator=g)
    log_scales = torch.randn(n, 3, generator=g) - 2.5
    return means, quats, log_scales, camera


@pytest.mark.parametrize("seed", [0, 1])
def test_numba_projection_matches_torch_twin(seed):
    means, quats, log_scales, camera = _scene(seed, 400)
    view, intrinsics, limits = _camera_arrays(camera)
    n = means.shape[0]
    screen = np.empty((n, 6), np.float32)
    in_front = np.empty(n, np.uint8)
    project_forward(means.numpy(), quats.numpy(), log_scales.numpy(), view, intrinsics, limits, screen, in_front)

    inputs = [t.double().requires_grad_(True) for t in (means, quats, log_scales)]
    twin = project_gaussians(*inputs, camera)
    front = twin.in_front
    assert 0 < int(front.sum()) < n, "scene should have Gaussians on both sides of the near plane"
    assert np.array_equal(in_front.astype(bool), front.numpy())
    expected = torch.cat([twin.means2d, twin.conics, twin.depths[:, None]], dim=1).detach()
    rel = (torch.from_numpy(screen).double() - expected).abs() / (expected.abs() + 1e-3)
    assert rel[front].max() < 1e-4, f"forward relative error {rel[front].max():.3g}"

    cotangent = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    cotangent[:, 2:5] *= 100.0  # conics are small numbers; weight them like the means
    loss = ((torch.cat([twin.means2d, twin.conics, twin.depths[:, None]], dim=1) * cotangent)[front]).sum()
    expected_grads = torch.autograd.grad(loss, inputs)
    grads = [np.empty((n, k), np.float32) for k in (3, 4, 3)]
    project_backward(means.numpy(), quats.numpy(), log_scales.numpy(), view, intrinsics, limits, in_front,
                     cotangent.float().numpy(), *grads)
    for name, actual, expected_grad in zip(("means", "quats", "log_scales"), grads, expected_grads):
        assert_grad_close(torch.from_numpy(actual), expected_grad, name=name)


def test_depth_order_is_a_stable_sort_of_the_in_front_gaussians():
    depths = np.array([0.5, 0.2, 0.5, -1.0, 0.2, 3.0, 0.005], np.float32)
    in_front = (depths >= 0.01).astype(np.uint8)
    assert depth_order(depths, in_front).tolist() == [1, 4, 0, 2, 5]
    rng = np.random.default_rng(0)
    many = rng.uniform(0.01, 5.0, 5000).astype(np.float32)
    many[::7] = many[3]  # ties keep index order
    order = depth_order(many, np.ones(5000, np.uint8))
    assert order.tolist() == np.argsort(many, kind="stable").tolist()
