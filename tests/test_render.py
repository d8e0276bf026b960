"""The CPU rasterizer against the pure-torch reference (outputs and gradients), input validation, gsplat."""
from __future__ import annotations

import math

import pytest
import torch

from render import Camera, RenderOutput, available_backends, render_gaussians

INPUT_NAMES = ("means", "quats", "log_scales", "opacity_logits", "colors")


def assert_grad_close(actual: torch.Tensor, expected: torch.Tensor, rel_l2: float = 1e-3, cosine: float = 0.999,
                      name: str = "gradient") -> None:
    """Gradient agreement as a whole: relative L2 error <= rel_l2 and cosine similarity >= cosine.

    Element-wise tolerances hide wrong directions and missing terms on small entries; these two norms
    do not. Two zero gradients agree; a zero against a non-zero one does not.
    """
    a = actual.detach().double().flatten()
    e = expected.detach().double().flatten()
    assert a.shape == e.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(a).all(), f"{name}: non-finite values"
    e_norm, a_norm = e.norm().item(), a.norm().item()
    if e_norm == 0.0 and a_norm == 0.0:
        return
    error = (a - e).norm().item() / max(e_norm, 1e-30)
    cos = (a @ e).item() / max(a_norm * e_norm, 1e-30)
    assert error <= rel_l2, f"{name}: relative L2 error {error:.3g} > {rel_l2:g} (cosine {cos:.6f})"
    assert cos >= cosine, f"{name}: cosine {cos:.6f} < {cosine}"


def test_assert_grad_close_accepts_tiny_noise_and_rejects_wrong_gradients():
    g = torch.randn(200, 3, generator=torch.Generator().manual_seed(1))
    assert_grad_close(g * (1 + 1e-5), g)
    assert_grad_close(torch.zeros(4), torch.zeros(4))
    wrong = {
        "scaled": 1.01 * g,
        "one sign flipped": torch.cat([-g[:1], g[1:]]),
        "missing term": g - 0.05 * g.mean(0),
        "zero": torch.zeros_like(g),
        "noise": g + 0.01 * torch.randn(g.shape, generator=torch.Generator().manual_seed(2)),
    }
    for label, bad in wrong.items():
        with pytest.raises(AssertionError):
            assert_grad_close(bad, g, name=label)
    with pytest.raises(AssertionError):
        assert_grad_close(torch.ones(3), torch.zeros(3))


def random_scene(seed: int, n: int, width: int, height: int):
    """Camera 1 m from the origin; Gaussians in front of, across and behind the near plane and camera,
    tiny (sub-pixel), ordinary and huge (covering many tiles), with opacities from ~0 to ~1."""
    g = torch.Generator().manual_seed(seed)
    camera = Camera.look_at_origin(width, height, fov_deg=45.0, distance=1.0)
    means = torch.rand(n, 3, generator=g) * torch.tensor([0.9, 0.7, 2.0]) - torch.tensor([0.45, 0.35, 1.1])
    means[: n // 10, 2] = -1.0 + torch.rand(n // 10, generator=g) * 0.02  # within 2 cm of the camera plane
    quats = torch.randn(n, 4, generator=g) * (0.5 + torch.rand(n, 1, generator=g))
    kind = torch.randint(0, 5, (n, 1), generator=g)
    base = torch.where(kind == 0, -6.0, torch.where(kind == 4, -1.2, -3.3))
    log_scales = base + 0.4 * torch.randn(n, 3, generator=g)
    opacity_logits = 2.5 * torch.randn(n, generator=g)
    colors = torch.rand(n, 3, generator=g) * 1.2 - 0.1
    return [t.contiguous() for t in (means, quats, log_scales, opacity_logits, colors)], camera


def render_both(params, camera, background):
    """CPU (float32) and reference (float64) outputs and their gradients for one random cotangent."""
    g = torch.Generator().manual_seed(99)
    h, w = camera.height, camera.width
    cotangents = (torch.randn(h, w, 3, generator=g), torch.randn(h, w, generator=g), torch.randn(h, w, generator=g))
    results = []
    for backend, dtype in (("cpu", torch.float32), ("reference", torch.float64)):
        inputs = [p.to(dtype).requires_grad_(True) for p in params]
        bg = background.to(dtype).requires_grad_(True)
        out = render_gaussians(*inputs, camera, bg, backend=backend)
        assert out.color.dtype == dtype and out.color.shape == (h, w, 3)
        loss = sum((o * c.to(dtype)).sum() for o, c in zip((out.color, out.alpha, out.depth), cotangents))
        grads = torch.autograd.grad(loss, inputs + [bg])
        results.append((out, grads))
    return results


@pytest.mark.parametrize(
    "seed, n, width, height",
    [(0, 60, 37, 29), (1, 120, 48, 48), (2, 40, 16, 16), (3, 200, 61, 45), (4, 90, 23, 50)],
)
def test_cpu_matches_reference(seed, n, width, height):
    params, camera = random_scene(seed, n, width, height)
    background = torch.rand(3, generator=torch.Generator().manual_seed(seed))
    (out, grads), (ref, ref_grads) = render_both(params, camera, background)
    for field in ("color", "alpha", "depth"):
        diff = (getattr(out, field).double() - getattr(ref, field)).abs().max().item()
        assert diff <= 1e-4, f"{field}: max abs difference {diff:.3g}"
    assert ref.alpha.max() > 0.5, "scene should cover part of the image"
    for name, actual, expected in zip(INPUT_NAMES + ("background",), grads, ref_grads):
        assert expected.abs().max() > 0, f"{name}: reference gradient is zero; the test would be vacuous"
        assert_grad_close(actual, expected, name=name)


def test_image_background_and_early_stop_of_opaque_layers():
    """Three stacked opaque Gaussians in front: the third would take T from 4e-4 to <= 1e-4, so pixels
    stop before it; an image background gets its gradient."""
    params, camera = random_scene(7, 80, 40, 32)
    stack = [torch.zeros(3, 3), torch.tensor([[1.0, 0, 0, 0]] * 3), torch.full((3, 3), -1.5),
             torch.full((3,), math.log(0.98 / 0.02)), torch.rand(3, 3, generator=torch.Generator().manual_seed(4))]
    stack[0][:, 2] = torch.tensor([-0.5, -0.45, -0.4])
    params = [torch.cat([s, p]) for s, p in zip(stack, params)]
    background = torch.rand(32, 40, 3, generator=torch.Generator().manual_seed(3))
    (out, grads), (ref, ref_grads) = render_both(params, camera, background)
    centre = ref.alpha[16, 20].item()
    # Without the stop rule the third layer would leave T <= 0.02**3 (alpha > 0.99999).
    assert 0.999 < centre < 0.9999, f"centre alpha {centre}: the third layer was not excluded"
    for field in ("color", "alpha", "depth"):
        diff = (getattr(out, field).double() - getattr(ref, field)).abs().max().item()
        assert diff <= 1e-4, f"{field}: max abs difference {diff:.3g}"
    for name, actual, expected in zip(INPUT_NAMES + ("background",), grads, ref_grads):
        assert_grad_close(actual, expected, name=name)


def test_gradients_are_deterministic():
    params, camera = random_scene(11, 150, 48, 40)
    inputs = [p.requires_grad_(True) for p in params]
    runs = []
    for _ in range(2):
        out = render_gaussians(*inputs, camera, torch.zeros(3), backend="cpu")
        runs.append(torch.autograd.grad(out.color.sum() + out.depth.sum(), inputs))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_no_gaussians_gives_the_background():
    camera = Camera.look_at_origin(20, 10)
    empty = [torch.zeros(0, k) for k in (3, 4, 3)] + [torch.zeros(0), torch.zeros(0, 3)]
    background = torch.tensor([0.2, 0.4, 0.6])
    for backend in ("cpu", "reference"):
        out = render_gaussians(*empty, camera, background, backend=backend)
        assert isinstance(out, RenderOutput)
        assert torch.equal(out.color, background.expand(10, 20, 3))
        assert torch.equal(out.alpha, torch.zeros(10, 20)) and torch.equal(out.depth, torch.zeros(10, 20))


def test_all_gaussians_behind_the_camera_give_the_background():
    params, camera = random_scene(5, 30, 24, 24)
    params[0][:, 2] = -1.5
    out = render_gaussians(*params, camera, torch.ones(3), backend="cpu")
    assert torch.equal(out.color, torch.ones(24, 24, 3)) and out.alpha.abs().max() == 0


def _valid_inputs():
    params, camera = random_scene(0, 5, 16, 16)
    return params, camera, torch.zeros(3)


@pytest.mark.parametrize(
    "index, bad, message",
    [
        (0, torch.zeros(5, 2), r"means must have shape \[N, 3\]"),
        (1, torch.zeros(4, 4), r"quats must have shape \[5, 4\]"),
        (2, torch.zeros(5, 3, dtype=torch.float64), "log_scales must be float32"),
        (3, torch.zeros(5, 1), r"opacity_logits must have shape \[5\]"),
        (4, torch.full((5, 3), math.nan), "colors contains NaN or inf"),
        (0, torch.full((5, 3), math.inf), "means contains NaN or inf"),
        (1, torch.zeros(5, 4), "zero quaternion"),
        (2, [[0.0] * 3] * 5, "log_scales must be a torch.Tensor"),
    ],
)
def test_bad_gaussian_inputs_raise_clear_errors(index, bad, message):
    params, camera, background = _valid_inputs()
    params[index] = bad
    with pytest.raises(ValueError, match=message):
        render_gaussians(*params, camera, background, backend="cpu")


def test_bad_background_camera_and_backend_raise_clear_errors():
    params, camera, background = _valid_inputs()
    with pytest.raises(ValueError, match=r"background must have shape \[3\] or \[16, 16, 3\]"):
        render_gaussians(*params, camera, torch.zeros(4), backend="cpu")
    with pytest.raises(ValueError, match="background contains NaN"):
        render_gaussians(*params, camera, torch.tensor([0.0, math.nan, 0.0]), backend="cpu")
    with pytest.raises(ValueError, match="camera must be"):
        render_gaussians(*params, "camera", background, backend="cpu")
    with pytest.raises(ValueError, match="unknown backend"):
        render_gaussians(*params, camera, background, backend="vulkan")
    with pytest.raises(ValueError, match="image size must be positive"):
        Camera.look_at_origin(0, 16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_gsplat_without_cuda_is_a_clear_error_and_auto_falls_back_to_cpu():
    params, camera, background = _valid_inputs()
    assert "gsplat" not in available_backends() and "cpu" in available_backends()
    with pytest.raises(ValueError, match="gsplat backend needs CUDA"):
        render_gaussians(*params, camera, background, backend="gsplat")
    auto = render_gaussians(*params, camera, background)
    cpu = render_gaussians(*params, camera, background, backend="cpu")
    assert torch.equal(auto.color, cpu.color)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's rasterizer needs CUDA, which is absent here")
def test_gsplat_matches_cpu():
    params, camera = random_scene(21, 300, 64, 48)
    params[3] = params[3].clamp(max=2.0)  # keep alphas below both clamps (ours 0.99, gsplat 0.999)
    background = torch.rand(3)
    cpu_inputs = [p.clone().requires_grad_(True) for p in params]
    gpu_inputs = [p.clone().cuda().requires_grad_(True) for p in params]
    cpu = render_gaussians(*cpu_inputs, camera, background, backend="cpu")
    gpu = render_gaussians(*gpu_inputs, camera, background.cuda(), backend="gsplat")
    for field in ("color", "alpha", "depth"):
        diff = (getattr(gpu, field).cpu() - getattr(cpu, field)).abs().max().item()
        assert diff <= 1e-3, f"{field}: max abs difference {diff:.3g}"
    cpu_grads = torch.autograd.grad(cpu.color.sum() + cpu.depth.sum(), cpu_inputs)
    gpu_grads = torch.autograd.grad(gpu.color.sum() + gpu.depth.sum(), gpu_inputs)
    for name, expected, actual in zip(INPUT_NAMES, cpu_grads, gpu_grads):
        assert_grad_close(actual.cpu(), expected, rel_l2=1e-2, cosine=0.999, name=name)


@pytest.mark.parametrize("image_background", [False, True])
def test_no_grad_display_path_matches_reference(image_background):
    """Without gradients the CPU backend composites the background inside its tile kernel."""
    params, camera = random_scene(15, 30, 45, 38)
    g = torch.Generator().manual_seed(5)
    shape = (camera.height, camera.width, 3) if image_background else (3,)
    background = torch.rand(shape, generator=g)
    with torch.no_grad():
        out = render_gaussians(*params, camera, background, backend="cpu")
        ref = render_gaussians(*[p.double() for p in params], camera, background.double(), backend="reference")
    assert ref.alpha.max() > 0.9 and ref.alpha.min() < 0.1, "scene should cover part of the image, not all"
    for field in ("color", "alpha", "depth"):
        diff = (getattr(out, field).double() - getattr(ref, field)).abs().max().item()
        assert diff <= 1e-4, f"{field}: max abs difference {diff:.3g}"
