"""avatar.ssim_fast against its slow twin losses.ssim_map: the map and the prediction gradient, exactly.

Reference of record is `ssim_map` in float64 (exact to ~1e-13 here): the fast path sums in float64 and must
match it to float32 rounding. The float32 reference is itself up to ~1e-4 off in smooth regions (the
cancellation in E[x^2] - mu^2), so against it the fast path may differ by that reference's own error only.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avatar import ssim_fast
from avatar.losses import dssim_loss, photometric_loss, ssim_map
from avatar.ssim_fast import ROWS_PER_BAND, ssim_map_fast

MAP_ATOL_EXACT = 1e-6  # fast (float32 out) vs float64 reference; measured <= 3e-8
MAP_ATOL_REF32 = 1e-5  # fast vs float32 reference on textured images; measured <= 3e-6
GRAD_RTOL_EXACT = 1e-5  # max |difference| / max |gradient|, vs float64 reference; measured <= 1e-7
GRAD_RTOL_REF32 = 1e-4  # the same vs float32 reference on textured images; measured <= 2e-6


def map_and_grad(fn, prediction, target, upstream):
    """fn's SSIM map and d(sum(map * upstream))/d prediction, in prediction's dtype."""
    x = prediction.detach().clone().requires_grad_(True)
    s = fn(x, target)
    (s * upstream).sum().backward()
    return s.detach(), x.grad


def relative_max(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def smooth_image(h, w, g):  # [h, w, 3]: blurred blobs, a colour ramp, and a flat background band
    img = F.avg_pool2d(torch.rand(1, 3, h, w, generator=g), 7, 1, 3, count_include_pad=False)[0].permute(1, 2, 0)
    ramp = torch.linspace(0, 1, w)[None, :, None] * torch.tensor([0.3, 0.1, -0.2])
    img = (0.25 + img + ramp).clamp(0, 1)
    img[: h // 4] = torch.tensor([0.8, 0.75, 0.7])  # uniform background: sigma ~ 0, the hard case in float32
    return img.contiguous()


@pytest.mark.parametrize("h, w", [(7, 9), (1, 1), (16, 16), (40, 48), (23, 70), (2 * ROWS_PER_BAND + 3, 37)])
def test_random_images_match_the_reference(h, w):
    g = torch.Generator().manual_seed(1000 * h + w)
    x, y, up = torch.rand(h, w, 3, generator=g), torch.rand(h, w, 3, generator=g), torch.randn(h, w, generator=g)
    fast_map, fast_grad = map_and_grad(ssim_map_fast, x, y, up)
    exact_map, exact_grad = map_and_grad(ssim_map, x.double(), y.double(), up.double())
    ref_map, ref_grad = map_and_grad(ssim_map, x, y, up)
    assert fast_map.dtype == torch.float32 and fast_map.shape == (h, w) and fast_grad.shape == (h, w, 3)
    torch.testing.assert_close(fast_map.double(), exact_map, rtol=0, atol=MAP_ATOL_EXACT)
    torch.testing.assert_close(fast_map, ref_map, rtol=0, atol=MAP_ATOL_REF32)
    assert relative_max(fast_grad, exact_grad) < GRAD_RTOL_EXACT
    assert relative_max(fast_grad, ref_grad) < GRAD_RTOL_REF32


def test_realistic_pair_matches_the_exact_map_and_is_never_further_from_float32_than_it():
    g = torch.Generator().manual_seed(7)
    target = smooth_image(90, 120, g)
    blurred = F.avg_pool2d(target.permute(2, 0, 1)[None], 3, 1, 1, count_include_pad=False)[0].permute(1, 2, 0)
    prediction = (blurred + 0.02 * torch.randn(blurred.shape, generator=g)).clamp(0, 1)
    prediction[:10] = torch.tensor([0.82, 0.74, 0.69])  # a flat region that differs from the target's
    up = torch.full((90, 120), 1.0 / (90 * 120))  # what .mean() sends back
    fast_map, fast_grad = map_and_grad(ssim_map_fast, prediction, target, up)
    exact_map, exact_grad = map_and_grad(ssim_map, prediction.double(), target.double(), up.double())
    ref_map, _ = map_and_grad(ssim_map, prediction, target, up)
    torch.testing.assert_close(fast_map.double(), exact_map, rtol=0, atol=MAP_ATOL_EXACT)
    assert relative_max(fast_grad, exact_grad) < GRAD_RTOL_EXACT
    ref_error = (ref_map.double() - exact_map).abs()
    assert float(ref_error.max()) > 1e-5  # the float32 reference really is this far off here...
    assert bool(((fast_map - ref_map).abs().double() <= ref_error + 1e-6).all())  # ...and the fast map no further


def test_gradcheck_in_float64():
    g = torch.Generator().manual_seed(3)
    for h, w in [(6, 8), (13, 12)]:  # smaller than and about the size of the window
        x = torch.rand(h, w, 3, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.rand(h, w, 3, generator=g, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda p: ssim_map_fast(p, y), (x,), eps=1e-6, atol=1e-7, rtol=1e-5)
        torch.testing.assert_close(ssim_map_fast(x, y), ssim_map(x, y), rtol=0, atol=1e-12)


def test_views_and_no_grad_give_the_same_map():
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(3, 30, 20, generator=g), torch.rand(30, 20, 3, generator=g)
    view = x.permute(1, 2, 0)  # not contiguous
    with torch.no_grad():
        plain = ssim_map_fast(view, y)
    leaf = view.detach().clone().requires_grad_(True)
    assert torch.equal(plain, ssim_map_fast(leaf, y).detach())
    assert float(ssim_map_fast(y, y).min()) > 1 - 1e-6


def test_refusals():
    x = torch.rand(8, 8, 3)
    with pytest.raises(ValueError, match="no gradient for the target"):
        ssim_map_fast(x, x.clone().requires_grad_(True))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        ssim_map_fast(torch.rand(8, 8, 4), torch.rand(8, 8, 4))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim_map_fast(x, torch.rand(8, 9, 3))
    with pytest.raises(TypeError, match="float32"):
        ssim_map_fast(x.half(), x.half())
    with pytest.raises(ValueError, match="empty"):
        ssim_map_fast(torch.rand(0, 8, 3), torch.rand(0, 8, 3))


def test_losses_route_float32_cpu_to_the_fast_path_and_the_rest_to_the_reference(monkeypatch):
    calls = []
    monkeypatch.setattr(ssim_fast, "ssim_map_fast", lambda p, t: calls.append(p.dtype) or ssim_map_fast(p, t))
    g = torch.Generator().manual_seed(11)
    x = torch.rand(24, 20, 3, generator=g, requires_grad=True)
    y = torch.rand(24, 20, 3, generator=g)
    fast = dssim_loss(x, y)
    assert calls == [torch.float32]
    reference = (1.0 - ssim_map(x, y).mean()) / 2
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)
    (gx,) = torch.autograd.grad(photometric_loss(x, y), x)
    (rx,) = torch.autograd.grad(0.8 * (x - y).abs().mean() + 0.4 * reference, x)
    assert relative_max(gx, rx) < GRAD_RTOL_REF32
    y_grad = y.clone().requires_grad_(True)  # a target that needs a gradient gets one, from the reference
    dssim_loss(x, y_grad).backward()
    assert y_grad.grad is not None and float(y_grad.grad.abs().max()) > 0
    x64 = x.detach().double()
    torch.testing.assert_close(dssim_loss(x64, y.double()), (1.0 - ssim_map(x64, y.double()).mean()) / 2)
    assert calls == [torch.float32, torch.float32]  # photometric_loss took the fast path, the others did not
