"""Fast per-pixel SSIM with its gradient for CPU images: one numba pass forward, one numba pass backward.

Same definition as `avatar.losses.ssim_map` (the slow, obviously correct twin it is tested against):
11-tap Gaussian window (sigma 1.5), zero padding, C1 = 0.01^2, C2 = 0.03^2, the five blurred maps
mu_x = G*x, mu_y = G*y, E_xx = G*x^2, E_yy = G*y^2, E_xy = G*(xy), sigma_xx = E_xx - mu_x^2 (likewise
sigma_yy, sigma_xy = E_xy - mu_x mu_y) and S = (2 mu_x mu_y + C1)(2 sigma_xy + C2) /
((mu_x^2 + mu_y^2 + C1)(sigma_xx + sigma_yy + C2)), averaged over the 3 channels.

Gradient, with respect to the prediction x only. Write S = N1 N2 / (D1 D2) with N1 = 2 mu_x mu_y + C1,
N2 = 2 sigma_xy + C2, D1 = mu_x^2 + mu_y^2 + C1, D2 = sigma_xx + sigma_yy + C2. As a function of the blurred
maps that depend on x (mu_x, E_xx, E_xy):
    B = dS/dE_xx = dS/dsigma_xx = -S / D2
    C = dS/dE_xy = dS/dsigma_xy = 2 N1 / (D1 D2)
    A = dS/dmu_x = 2 (mu_y N2 - S mu_x D2) / (D1 D2) - 2 mu_x B - mu_y C   (sigma_xx, sigma_xy depend on mu_x)
The blur G with zero padding and a symmetric kernel is self-adjoint, so with an upstream gradient g per pixel
and channel (g = dLoss/dmap / 3), dLoss/dx = G*(gA) + 2 x G*(gB) + y G*(gC): three blurs instead of autograd
through ten. The forward pass keeps A, B, C; no gradient for the target is computed, so `ssim_map_fast`
refuses a target that requires grad (losses.py then uses the reference).

Precision. The sums run in float64 whatever the input dtype: sigma = E_xx - mu_x^2 cancels, and in flat
regions (a uniform background: sigma ~ 0, D2 ~ C2 = 9e-4) float32 sums put errors of ~1e-4 into S. The
float32 reference itself is that far from the exact (float64) SSIM: measured max |ref32 - exact| 1.7e-4
(two flat images), 1.0e-4 (a blurred + noised smooth image), 2.7e-6 (uniform noise). This module is within
float32 rounding of the exact value (< 3e-8 on the map, < 1e-7 relative on the gradient), so it differs from
the float32 reference by that reference's own error and no more; a float32-sum variant was 2x faster
(10-12 ms below) but up to 9e-5 from the exact map and 2.4e-4 from the reference.

Kernels. Images are viewed as [H, L = 3W] rows (channels last, contiguous): a horizontal tap of d pixels is
an offset of 3d floats, and zero padding is a row copied between 15 zeros, so every inner loop is a
contiguous, vectorisable run over 3W numbers. Rows are split into bands of ROWS_PER_BAND (prange tasks);
a band keeps a ring of 11 horizontally blurred rows (5 maps forward, 3 backward; ~680 KB at W = 512), so each
input row is blurred horizontally once (plus a 10-row halo per band), and each output row is the vertical
sum of the ring followed in the same row loop by the SSIM formula and its derivatives (forward) or by the
gradient combination (backward). No torch temporaries, nothing of size [5, H, W, 3]. numba settings follow
`render.cpu_backend`: `cache=True` (machine code cached on disk), `fastmath`, `error_model="numpy"` (no
branch on division) and threads only for the explicit prange (`PRANGE_ONLY`).

Measured on this 2-core CPU (AMD EPYC, AVX-512), 512x512x3 float32, forward + backward of
ssim_map(...).mean(), 25 interleaved runs, median (min):
    reference `losses.ssim_map` (11x11 grouped conv2d, autograd)   2 threads 105 ms (94), 1 thread 172 ms (143)
    this module, float64 sums                                       2 threads  12.9 ms (11.8), 1 thread 22 ms (19)
      (1 thread, kernels alone: forward ~11 ms, backward ~8 ms; the rest is allocation and torch glue)
    the same kernels with float32 sums (not used, see Precision)    2 threads   5.8 ms, 1 thread 9-12 ms
    a grouped separable F.conv2d of the 15 blurred channels alone (forward only; the task's figure)   ~20 ms
While another process keeps the other core busy, 2-thread runs of both degrade badly (reference ~800 ms,
this module ~50 ms), and a numba thread woken for a tiny image costs milliseconds: each call uses no more
numba threads than it has row bands (`_threads_for`).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

if not os.access(Path(__file__).parent, os.W_OK) and "NUMBA_CACHE_DIR" not in os.environ:
    # The cache sits next to the module by default; read-only installs get a per-user cache folder.
    os.environ["NUMBA_CACHE_DIR"] = str(Path.home() / ".cache" / "talking-avatar-numba")

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.autograd.function import once_differentiable  # noqa: E402

from render.cpu_binning import PRANGE_ONLY  # noqa: E402

WINDOW = 11  # the kernels hard-code these 11 taps (pairs around the centre)
SIGMA = 1.5
C1 = 0.01**2
C2 = 0.03**2
PAD = 3 * (WINDOW // 2)  # zeros either side of a padded [3W] row: the taps reach 5 pixels = 15 floats
ROWS_PER_BAND = 64  # output rows per prange task; each band blurs 10 halo rows more


def gaussian_taps() -> np.ndarray:  # [WINDOW] float64
    """The normalised 1-D Gaussian whose outer product is `losses._gaussian_window` (computed the same way)."""
    coords = torch.arange(WINDOW, dtype=torch.float64) - (WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SIGMA**2))
    return (g / g.sum()).numpy()


@nb.njit(inline="always")
def _hblur(out, pad, g):
    """out [L] = horizontal blur of a channels-last row held in pad [L + 2 PAD] between PAD zeros:
    out[j] = sum_t g[t] pad[j + 3t] (a tap of d pixels is 3d floats); symmetric taps share a multiply."""
    g0, g1, g2, g3, g4, g5 = g[0], g[1], g[2], g[3], g[4], g[5]
    for j in range(out.shape[0]):
        out[j] = (g5 * pad[j + 15] + g4 * (pad[j + 12] + pad[j + 18]) + g3 * (pad[j + 9] + pad[j + 21])
                  + g2 * (pad[j + 6] + pad[j + 24]) + g1 * (pad[j + 3] + pad[j + 27]) + g0 * (pad[j] + pad[j + 30]))


@nb.njit(inline="always")
def _vpair(out, lo, hi, w):
    for j in range(out.shape[0]):
        out[j] += w * (lo[j] + hi[j])


@nb.njit(inline="always")
def _vblur(out, ring, q, r, g):
    """out [L] = vertical blur of map q at output row r: sum_t g[t] ring[(r + t - 5) % 11, q] (the ring slots
    of rows outside the image hold zeros). One pass per symmetric pair of taps: a loop over 11 source rows
    at once needs more runtime alias checks than LLVM makes, and does not vectorise (measured 1.6x slower)."""
    src = ring[r % 11, q]
    w = g[5]
    for j in range(out.shape[0]):
        out[j] = w * src[j]
    for d in range(1, 6):
        _vpair(out, ring[(r - d) % 11, q], ring[(r + d) % 11, q], g[5 - d])


@nb.njit(cache=True, fastmath=True, parallel=PRANGE_ONLY, error_model="numpy")
def _ssim_forward(x, y, g, rows_per_band, ssim, da, db, dc, with_grad):
    """x, y: [H, L = 3W]; g: [11] float64. Writes ssim [H, W] (channel mean) and, if with_grad, the
    derivative maps da, db, dc [H, L] float64 (A, B, C of the module docstring)."""
    h, n = x.shape
    n_bands = (h + rows_per_band - 1) // rows_per_band
    for band in nb.prange(n_bands):
        r0 = band * rows_per_band
        r1 = min(h, r0 + rows_per_band)
        ring = np.zeros((WINDOW, 5, n))  # horizontally blurred x, y, x^2, y^2, xy; row i in slot i % 11
        pad = np.zeros((5, n + 2 * PAD))  # the same five of one input row between PAD zeros
        acc = np.empty((5, n))  # mu_x, mu_y, E_xx, E_yy, E_xy of one output row
        s_row = np.empty(n)
        px, py, pxx, pyy, pxy = pad[0, PAD:], pad[1, PAD:], pad[2, PAD:], pad[3, PAD:], pad[4, PAD:]
        for i in range(r0 - PAD // 3, r1 + PAD // 3):  # put input row i in the ring, emit output row i - 5
            slot = i % WINDOW
            if 0 <= i < h:
                xr = x[i]
                yr = y[i]
                for j in range(n):
                    px[j] = xr[j]
                    py[j] = yr[j]
                for j in range(n):
                    xv = px[j]  # float64 from here on: the square of a float32 is exact
                    yv = py[j]
                    pxx[j] = xv * xv
                    pyy[j] = yv * yv
                    pxy[j] = xv * yv
                for q in range(5):
                    _hblur(ring[slot, q], pad[q], g)
            else:
                ring[slot, :, :] = 0.0
            r = i - PAD // 3
            if r < r0:
                continue
            for q in range(5):
                _vblur(acc[q], ring, q, r, g)
            mx_row, my_row, exx_row, eyy_row, exy_row = acc[0], acc[1], acc[2], acc[3], acc[4]
            if with_grad:
                dar, dbr, dcr = da[r], db[r], dc[r]
                for j in range(n):
                    mx = mx_row[j]
                    my = my_row[j]
                    n1 = 2.0 * mx * my + C1
                    n2 = 2.0 * (exy_row[j] - mx * my) + C2
                    d1 = mx * mx + my * my + C1
                    d2 = (exx_row[j] - mx * mx) + (eyy_row[j] - my * my) + C2
                    inv = 1.0 / (d1 * d2)
                    s = n1 * n2 * inv
                    s_row[j] = s
                    b = -s / d2
                    c = 2.0 * n1 * inv
                    dbr[j] = b
                    dcr[j] = c
                    dar[j] = 2.0 * (my * n2 - s * mx * d2) * inv - 2.0 * mx * b - my * c
            else:
                for j in range(n):
                    mx = mx_row[j]
                    my = my_row[j]
                    d2 = (exx_row[j] - mx * mx) + (eyy_row[j] - my * my) + C2
                    s_row[j] = ((2.0 * mx * my + C1) * (2.0 * (exy_row[j] - mx * my) + C2)
                                / ((mx * mx + my * my + C1) * d2))
            sr = ssim[r]
            for p in range(n // 3):
                sr[p] = (s_row[3 * p] + s_row[3 * p + 1] + s_row[3 * p + 2]) * (1.0 / 3.0)


@nb.njit(cache=True, fastmath=True, parallel=PRANGE_ONLY, error_model="numpy")
def _ssim_backward(x, y, grad_map, da, db, dc, g, rows_per_band, grad_x):
    """x, y: [H, L = 3W]; grad_map: [H, W] (dLoss/dmap); da, db, dc: [H, L] float64 from the forward pass;
    g: [11] float64. Writes grad_x [H, L] = G*(gA) + 2 x G*(gB) + y G*(gC), g = grad_map / 3 per channel."""
    h, n = x.shape
    n_bands = (h + rows_per_band - 1) // rows_per_band
    for band in nb.prange(n_bands):
        r0 = band * rows_per_band
        r1 = min(h, r0 + rows_per_band)
        ring = np.zeros((WINDOW, 3, n))  # horizontally blurred gA, gB, gC; row i in slot i % 11
        pad = np.zeros((3, n + 2 * PAD))  # gA, gB, gC of one row between PAD zeros
        acc = np.empty((3, n))
        gw = np.empty(n)
        pa, pb, pc = pad[0, PAD:], pad[1, PAD:], pad[2, PAD:]
        for i in range(r0 - PAD // 3, r1 + PAD // 3):
            slot = i % WINDOW
            if 0 <= i < h:
                gm = grad_map[i]
                for p in range(n // 3):
                    v = gm[p] * (1.0 / 3.0)
                    gw[3 * p] = v
                    gw[3 * p + 1] = v
                    gw[3 * p + 2] = v
                ar, br, cr = da[i], db[i], dc[i]
                for j in range(n):
                    pa[j] = gw[j] * ar[j]
                    pb[j] = gw[j] * br[j]
                    pc[j] = gw[j] * cr[j]
                for q in range(3):
                    _hblur(ring[slot, q], pad[q], g)
            else:
                ring[slot, :, :] = 0.0
            r = i - PAD // 3
            if r < r0:
                continue
            for q in range(3):
                _vblur(acc[q], ring, q, r, g)
            xr, yr, out = x[r], y[r], grad_x[r]
            va, vb, vc = acc[0], acc[1], acc[2]
            for j in range(n):
                out[j] = va[j] + 2.0 * xr[j] * vb[j] + yr[j] * vc[j]


@contextmanager
def _threads_for(rows: int):
    """numba threads for one call: no more than there are bands (waking an idle thread for a small image
    costs more than the image: measured 7.8 ms instead of 0.15 ms per 13x12 call with the other core busy)."""
    before = nb.get_num_threads()
    nb.set_num_threads(max(1, min(before, -(-rows // ROWS_PER_BAND))))
    try:
        yield
    finally:
        nb.set_num_threads(before)


def _rows(image: Tensor) -> np.ndarray:  # [H, W, 3] -> [H, 3W] (a view where image is contiguous)
    h, w, _ = image.shape
    return image.detach().contiguous().numpy().reshape(h, 3 * w)


class _SSIMMap(torch.autograd.Function):
    """prediction, target: [H, W, 3] CPU float32/float64 -> SSIM map [H, W]; gradient for prediction only."""

    @staticmethod
    def forward(ctx, prediction: Tensor, target: Tensor) -> Tensor:  # [H, W, 3], [H, W, 3] -> [H, W]
        x, y = _rows(prediction), _rows(target)
        h, n = x.shape
        ssim = np.empty((h, n // 3), dtype=x.dtype)
        with_grad = bool(ctx.needs_input_grad[0])
        da, db, dc = (np.empty((h, n) if with_grad else (0, 0)) for _ in range(3))
        with _threads_for(h):
            _ssim_forward(x, y, gaussian_taps(), ROWS_PER_BAND, ssim, da, db, dc, with_grad)
        ctx.save_for_backward(prediction, target, *(torch.from_numpy(a) for a in (da, db, dc)))
        return torch.from_numpy(ssim)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_map: Tensor):  # [H, W] -> [H, W, 3], None
        prediction, target, da, db, dc = ctx.saved_tensors
        x, y = _rows(prediction), _rows(target)
        gm = grad_map.detach().to(prediction.dtype).contiguous().numpy()
        grad_x = np.empty_like(x)
        with _threads_for(x.shape[0]):
            _ssim_backward(x, y, gm, da.numpy(), db.numpy(), dc.numpy(), gaussian_taps(), ROWS_PER_BAND, grad_x)
        return torch.from_numpy(grad_x).reshape(prediction.shape), None


def supports(prediction: Tensor, target: Tensor) -> bool:
    """Whether losses.py should route this pair here: CPU float32 tensors, the target without gradient."""
    return (prediction.device.type == "cpu" and target.device.type == "cpu" and prediction.dtype == torch.float32
            and target.dtype == torch.float32 and not target.requires_grad)


def ssim_map_fast(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-pixel SSIM [H, W] of prediction, target [H, W, 3] in [0, 1] (CPU, float32; float64 also works, for
    gradcheck), the values of `losses.ssim_map` with its defaults, differentiable in `prediction` only."""
    if prediction.ndim != 3 or prediction.shape[-1] != 3:
        raise ValueError(f"prediction must be [H, W, 3], got {tuple(prediction.shape)}")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    if prediction.shape[0] == 0 or prediction.shape[1] == 0:
        raise ValueError(f"empty image {tuple(prediction.shape)}")
    if prediction.dtype not in (torch.float32, torch.float64) or target.dtype != prediction.dtype:
        raise TypeError(f"prediction and target must both be float32 (or float64), got {prediction.dtype}, "
                        f"{target.dtype}")
    if prediction.device.type != "cpu" or target.device.type != "cpu":
        raise ValueError("ssim_map_fast runs on CPU tensors only; use losses.ssim_map elsewhere")
    if target.requires_grad:
        raise ValueError("ssim_map_fast gives no gradient for the target; use losses.ssim_map for that")
    return _SSIMMap.apply(prediction, target)
