"""CPU tile rasterizer of projected 2D Gaussians: forward and backward in numba, behind torch autograd.

Why numba (and not a C++/OpenMP torch extension): it needs no compiler toolchain on the user's machine
(a pip wheel suffices, and a C++ extension would compile on first use anyway), compiles to the same LLVM
vector code as clang for these branch-free loops, caches the machine code on disk (`cache=True`: ~0.3 s to
load instead of several seconds to compile), and its `prange` gives tile-level threads without a build
system. What it lacks, SVML (vectorised `exp`), we replace by a polynomial `exp` (`_exp_neg`).

Algorithm (3DGS / gsplat "classic", same rules as `render.reference`):
1. Bin: Gaussians sorted by camera depth (stable) are binned into 16x16 pixel tiles by counting sort,
   so each tile's list is already in depth order. A Gaussian touches the tiles of the exact bounding box
   of the ellipse where alpha can reach 1/255, i.e. d^T conic d <= 2 ln(255 opacity) (plus one pixel of
   slack for rounding); outside it alpha < 1/255 so the pixel would skip it anyway, which makes the
   tiling invisible: the result equals the per-pixel reference.
2. Forward, per tile (threads over tiles), per Gaussian front to back, over the tile's 256 pixels in a
   branch-free (vectorised) loop: alpha = min(0.99, opacity exp(-0.5 d^T conic d)); skip alpha < 1/255;
   stop a pixel before the Gaussian that would take its transmittance T to <= 1e-4 (gsplat's rule);
   stop the tile when all its pixels stopped. Stores per pixel the final T and the number of list
   entries walked up to its last contributor.
3. Backward, per tile, back to front from each pixel's last contributor, recovering T_k = T_{k+1} /
   (1 - alpha_k) (3DGS), and writing one gradient row per (tile, Gaussian) intersection; rows are then
   summed per Gaussian in a fixed serial order (deterministic, no atomics).
Outputs are *premultiplied* (no background): colour sum_i w_i c_i, alpha 1 - T, depth sum_i w_i z_i with
w_i = alpha_i T_i; the caller composites the background with torch so its gradient comes for free.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

if not os.access(Path(__file__).parent, os.W_OK) and "NUMBA_CACHE_DIR" not in os.environ:
    # The cache sits next to the module by default; read-only installs get a per-user cache folder.
    os.environ["NUMBA_CACHE_DIR"] = str(Path.home() / ".cache" / "talking-avatar-numba")

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

TILE = 16
TILE_PIXELS = TILE * TILE
ALPHA_MIN = np.float32(1.0 / 255.0)
ALPHA_MAX = np.float32(0.99)
T_STOP = np.float32(1e-4)
GRAD_COLUMNS = 10  # u, v, conic a, b, c, opacity, r, g, b, depth

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_HALF = np.float32(0.5)
_POWER_FLOOR = np.float32(-6.0)  # exp(-6) < 1/255: clamping here never changes the 1/255 decision
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693145751953125)
_LN2_LO = np.float32(1.4286068203094172e-06)
_C2 = np.float32(1 / 2)
_C3 = np.float32(1 / 6)
_C4 = np.float32(1 / 24)
_C5 = np.float32(1 / 120)
_C6 = np.float32(1 / 720)
_C7 = np.float32(1 / 5040)
_P1 = np.float32(0.5)
_P2 = np.float32(0.25)
_P4 = np.float32(1 / 16)
_P8 = np.float32(1 / 256)


@nb.njit(inline="always", fastmath=True)
def _exp_neg(x):
    """exp(x) for float32 x in [-6, 0], branch-free so that loops calling it vectorise (~2 ulp).

    x = -m ln2 + r with |r| <= ln2/2; exp(r) by a degree-7 Taylor polynomial (error < 1e-8);
    2^-m (m in 0..9) by selecting powers of two from m's bits (exact).
    """
    n = np.floor(x * _LOG2E + _HALF)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    p = p * r + _F1
    p = p * r + _F1
    m = np.int32(-n)
    s = (_P1 if (m & 1) else _F1) * (_P2 if (m & 2) else _F1)
    s = s * (_P4 if (m & 4) else _F1) * (_P8 if (m & 8) else _F1)
    return p * s


@nb.njit(cache=True)
def _bin_tiles(means2d, conics, depths, opacities, colors, order, width, height):
    """Counting-sort the depth-ordered Gaussians `order` into tiles.

    Returns params [M, 10] (u, v, a, b, c, opacity, r, g, b, z in list order), tile_offsets
    [tiles + 1] and tile_items [n_isect] (rows of params, each tile's slice in depth order).
    """
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    m = order.shape[0]
    params = np.empty((m, GRAD_COLUMNS), np.float32)
    rects = np.zeros((m, 4), np.int64)
    counts = np.zeros(tiles_x * tiles_y + 1, np.int64)
    for i in range(m):
        g = order[i]
        u, v = means2d[g, 0], means2d[g, 1]
        a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
        op = opacities[g]
        params[i, 0] = u
        params[i, 1] = v
        params[i, 2] = a
        params[i, 3] = b
        params[i, 4] = c
        params[i, 5] = op
        params[i, 6] = colors[g, 0]
        params[i, 7] = colors[g, 1]
        params[i, 8] = colors[g, 2]
        params[i, 9] = depths[g]
        det = float(a) * float(c) - float(b) * float(b)
        if not (op >= ALPHA_MIN and det > 0.0 and a > 0.0):
            continue
        level = 2.0 * math.log(float(op) / float(ALPHA_MIN))  # d^T conic d bound where alpha >= 1/255
        half_w = math.sqrt(level * float(c) / det) + 1.0
        half_h = math.sqrt(level * float(a) / det) + 1.0
        x0 = min(max(math.floor((u - half_w) / TILE), 0.0), float(tiles_x))
        x1 = min(max(math.floor((u + half_w) / TILE) + 1.0, 0.0), float(tiles_x))
        y0 = min(max(math.floor((v - half_h) / TILE), 0.0), float(tiles_y))
        y1 = min(max(math.floor((v + half_h) / TILE) + 1.0, 0.0), float(tiles_y))
        rects[i, 0], rects[i, 1], rects[i, 2], rects[i, 3] = int(x0), int(x1), int(y0), int(y1)
        for ty in range(int(y0), int(y1)):
            for tx in range(int(x0), int(x1)):
                counts[ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    items = np.empty(offsets[-1], np.int32)
    for i in range(m):
        for ty in range(rects[i, 2], rects[i, 3]):
            for tx in range(rects[i, 0], rects[i, 1]):
                t = ty * tiles_x + tx
                items[cursor[t]] = i
                cursor[t] += 1
    return params, offsets, items


@nb.njit(cache=True, fastmath=True, parallel=True)
def _forward_tiles(params, offsets, items, width, height, out_color, out_alpha, out_depth, out_T, out_count):
    """Front-to-back compositing per tile; fills the [H, W(, 3)] outputs and out_T / out_count."""
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = offsets.shape[0] - 1
    for t in nb.prange(n_tiles):
        tile_y = t // tiles_x
        tile_x = t - tile_y * tiles_x
        px = np.empty(TILE_PIXELS, np.float32)
        py = np.empty(TILE_PIXELS, np.float32)
        trans = np.ones(TILE_PIXELS, np.float32)
        acc_r = np.zeros(TILE_PIXELS, np.float32)
        acc_g = np.zeros(TILE_PIXELS, np.float32)
        acc_b = np.zeros(TILE_PIXELS, np.float32)
        acc_z = np.zeros(TILE_PIXELS, np.float32)
        count = np.zeros(TILE_PIXELS, np.int32)
        active = np.zeros(TILE_PIXELS, np.int32)
        n_done = 0
        for p in range(TILE_PIXELS):
            x = tile_x * TILE + p % TILE
            y = tile_y * TILE + p // TILE
            px[p] = np.float32(x) + _HALF
            py[p] = np.float32(y) + _HALF
            if x < width and y < height:
                active[p] = 1
            else:
                n_done += 1
        start = offsets[t]
        for k in range(offsets[t + 1] - start):
            if n_done == TILE_PIXELS:
                break
            i = items[start + k]
            u, v = params[i, 0], params[i, 1]
            ca, cb, cc, op = params[i, 2], params[i, 3], params[i, 4], params[i, 5]
            cr, cg, cbl, cz = params[i, 6], params[i, 7], params[i, 8], params[i, 9]
            k_next = np.int32(k + 1)
            n_done = 0
            for p in range(TILE_PIXELS):
                dx = px[p] - u
                dy = py[p] - v
                power = -_HALF * (ca * dx * dx + cc * dy * dy) - cb * dx * dy
                alpha = min(ALPHA_MAX, op * _exp_neg(max(power, _POWER_FLOOR)))
                t_old = trans[p]
                t_new = t_old * (_F1 - alpha)
                ok = (alpha >= ALPHA_MIN) & (active[p] != 0)
                stop = ok & (t_new <= T_STOP)
                take = ok & (t_new > T_STOP)
                w = alpha * t_old if take else _F0
                acc_r[p] += w * cr
                acc_g[p] += w * cg
                acc_b[p] += w * cbl
                acc_z[p] += w * cz
                trans[p] = t_new if take else t_old
                count[p] = k_next if take else count[p]
                active[p] = 0 if stop else active[p]
                n_done += 1 - active[p]
        for p in range(TILE_PIXELS):
            x = tile_x * TILE + p % TILE
            y = tile_y * TILE + p // TILE
            if x < width and y < height:
                out_color[y, x, 0] = acc_r[p]
                out_color[y, x, 1] = acc_g[p]
                out_color[y, x, 2] = acc_b[p]
                out_alpha[y, x] = _F1 - trans[p]
                out_depth[y, x] = acc_z[p]
                out_T[y, x] = trans[p]
                out_count[y, x] = count[p]


@nb.njit(cache=True, fastmath=True, parallel=True)
def _backward_tiles(params, offsets, items, width, height, final_T, counts, grad_color, grad_alpha, grad_depth):
    """Back-to-front gradient walk per tile; returns one gradient row [n_isect, 10] per intersection."""
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = offsets.shape[0] - 1
    rows = np.zeros((items.shape[0], GRAD_COLUMNS), np.float32)
    for t in nb.prange(n_tiles):
        tile_y = t // tiles_x
        tile_x = t - tile_y * tiles_x
        px = np.empty(TILE_PIXELS, np.float32)
        py = np.empty(TILE_PIXELS, np.float32)
        trans = np.zeros(TILE_PIXELS, np.float32)
        t_final = np.zeros(TILE_PIXELS, np.float32)
        last = np.zeros(TILE_PIXELS, np.int32)
        g_r = np.zeros(TILE_PIXELS, np.float32)
        g_g = np.zeros(TILE_PIXELS, np.float32)
        g_b = np.zeros(TILE_PIXELS, np.float32)
        g_a = np.zeros(TILE_PIXELS, np.float32)
        g_z = np.zeros(TILE_PIXELS, np.float32)
        behind_r = np.zeros(TILE_PIXELS, np.float32)
        behind_g = np.zeros(TILE_PIXELS, np.float32)
        behind_b = np.zeros(TILE_PIXELS, np.float32)
        behind_z = np.zeros(TILE_PIXELS, np.float32)
        max_last = 0
        for p in range(TILE_PIXELS):
            x = tile_x * TILE + p % TILE
            y = tile_y * TILE + p // TILE
            px[p] = np.float32(x) + _HALF
            py[p] = np.float32(y) + _HALF
            if x < width and y < height:
                trans[p] = final_T[y, x]
                t_final[p] = final_T[y, x]
                last[p] = counts[y, x]
                g_r[p] = grad_color[y, x, 0]
                g_g[p] = grad_color[y, x, 1]
                g_b[p] = grad_color[y, x, 2]
                g_a[p] = grad_alpha[y, x]
                g_z[p] = grad_depth[y, x]
                max_last = max(max_last, counts[y, x])
        start = offsets[t]
        for k in range(max_last - 1, -1, -1):
            i = items[start + k]
            u, v = params[i, 0], params[i, 1]
            ca, cb, cc, op = params[i, 2], params[i, 3], params[i, 4], params[i, 5]
            cr, cg, cbl, cz = params[i, 6], params[i, 7], params[i, 8], params[i, 9]
            k32 = np.int32(k)
            s_u = s_v = s_a = s_b = s_c = s_op = s_r = s_g = s_bl = s_z = _F0
            for p in range(TILE_PIXELS):
                dx = px[p] - u
                dy = py[p] - v
                power = -_HALF * (ca * dx * dx + cc * dy * dy) - cb * dx * dy
                gauss = _exp_neg(max(power, _POWER_FLOOR))
                raw = op * gauss
                alpha = min(ALPHA_MAX, raw)
                ok = (alpha >= ALPHA_MIN) & (k32 < last[p])
                one_minus = _F1 - alpha
                t_k = trans[p] / one_minus
                w = alpha * t_k
                d_alpha = (
                    g_r[p] * (cr * t_k - behind_r[p] / one_minus)
                    + g_g[p] * (cg * t_k - behind_g[p] / one_minus)
                    + g_b[p] * (cbl * t_k - behind_b[p] / one_minus)
                    + g_z[p] * (cz * t_k - behind_z[p] / one_minus)
                    + g_a[p] * t_final[p] / one_minus
                )
                live = ok & (raw <= ALPHA_MAX)  # the 0.99 clamp has zero gradient
                d_alpha = d_alpha if live else _F0
                d_power = d_alpha * alpha
                w_ok = w if ok else _F0
                s_r += w_ok * g_r[p]
                s_g += w_ok * g_g[p]
                s_bl += w_ok * g_b[p]
                s_z += w_ok * g_z[p]
                s_op += d_alpha * gauss
                s_u += d_power * (ca * dx + cb * dy)
                s_v += d_power * (cb * dx + cc * dy)
                s_a += d_power * (-_HALF * dx * dx)
                s_b += d_power * (-dx * dy)
                s_c += d_power * (-_HALF * dy * dy)
                behind_r[p] += w_ok * cr
                behind_g[p] += w_ok * cg
                behind_b[p] += w_ok * cbl
                behind_z[p] += w_ok * cz
                trans[p] = t_k if ok else trans[p]
            row = start + k
            rows[row, 0] = s_u
            rows[row, 1] = s_v
            rows[row, 2] = s_a
            rows[row, 3] = s_b
            rows[row, 4] = s_c
            rows[row, 5] = s_op
            rows[row, 6] = s_r
            rows[row, 7] = s_g
            rows[row, 8] = s_bl
            rows[row, 9] = s_z
    return rows


@nb.njit(cache=True)
def _reduce_rows(rows, items, order, n_gaussians):
    """Sum intersection rows per Gaussian (serial, fixed order: deterministic); [N, 10] in input order."""
    grads = np.zeros((n_gaussians, GRAD_COLUMNS), np.float32)
    for r in range(items.shape[0]):
        g = order[items[r]]
        for j in range(GRAD_COLUMNS):
            grads[g, j] += rows[r, j]
    return grads


def _numpy(tensor: Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


class RasterizeCPU(torch.autograd.Function):
    """(means2d [N,2], conics [N,3], depths [N], opacities [N], colors [N,3]) -> premultiplied
    (color [H,W,3], alpha [H,W], depth [H,W]); `in_front` [N] bool and the size are not differentiable."""

    @staticmethod
    def forward(ctx, means2d, conics, depths, opacities, colors, in_front, width, height):  # noqa: D102
        depth_np = _numpy(depths)
        visible = np.flatnonzero(in_front.detach().cpu().numpy())
        order = visible[np.argsort(depth_np[visible], kind="stable")].astype(np.int64)
        params, offsets, items = _bin_tiles(
            _numpy(means2d), _numpy(conics), depth_np, _numpy(opacities), _numpy(colors), order, width, height
        )
        color = np.zeros((height, width, 3), np.float32)
        alpha = np.zeros((height, width), np.float32)
        depth = np.zeros((height, width), np.float32)
        final_T = np.ones((height, width), np.float32)
        counts = np.zeros((height, width), np.int32)
        _forward_tiles(params, offsets, items, width, height, color, alpha, depth, final_T, counts)
        ctx.saved = (params, offsets, items, order, final_T, counts, width, height, means2d.shape[0])
        return torch.from_numpy(color), torch.from_numpy(alpha), torch.from_numpy(depth)

    @staticmethod
    def backward(ctx, grad_color, grad_alpha, grad_depth):  # noqa: D102
        params, offsets, items, order, final_T, counts, width, height, n = ctx.saved
        rows = _backward_tiles(
            params, offsets, items, width, height, final_T, counts,
            _numpy(grad_color), _numpy(grad_alpha), _numpy(grad_depth),
        )
        grads = torch.from_numpy(_reduce_rows(rows, items, order, n))
        return grads[:, 0:2], grads[:, 2:5], grads[:, 9], grads[:, 5], grads[:, 6:9], None, None, None


def rasterize_cpu(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    depths: Tensor,  # [N]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, 3]
    in_front: Tensor,  # [N] bool
    width: int,
    height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Premultiplied colour [H, W, 3], alpha [H, W] and depth sum_i w_i z_i [H, W] (float32, CPU)."""
    return RasterizeCPU.apply(means2d, conics, depths, opacities, colors, in_front, int(width), int(height))
