"""CPU tile rasterizer of 3D Gaussians: forward and backward in numba, behind one torch autograd Function.

Why numba (and not a C++/OpenMP torch extension): it needs no compiler toolchain on the user's machine
(a pip wheel suffices; a torch C++ extension compiles on first use and needs g++ and headers), compiles
through LLVM to the same vector code as clang for these branch-free loops, caches the machine code on disk
(`cache=True`: under a second to load instead of a cold compile of ~10-30 s), and its `prange` gives
tile-level threads without a build system. What it lacks, SVML (vectorised `exp`), we replace by a
polynomial `exp` (`_exp_neg`). Two numba details matter for speed: `error_model="numpy"` (Python's
zero-division check is a branch that stops LLVM from vectorising any loop with a division), and pixel
loops that start at index 0 of a slice (LLVM does not vectorise them from a variable start offset).

Pipeline per frame (3DGS / gsplat "classic" rules, identical to `render.reference` pixel by pixel):
1. `render.cpu_projection`: EWA projection (0.3 px^2 low-pass, near plane 0.01) and a stable radix sort
   of the Gaussians in front of the near plane by camera depth.
2. `render.cpu_binning`: per-tile lists in depth order (counting sort; exact ellipse-tile test per tile row).
3. Forward, threads over 16x16 tiles (in a scattered order, so that both threads get face and background
   tiles alike), each kept as two strips of 16 rows x 8 columns: per Gaussian front to back, over the rows
   of each strip that its ellipse reaches (its exact extent from the binning, less the rows whose pixels
   have all stopped), in a branch-free (vectorised) loop: alpha = min(0.99, opacity exp(-0.5 d^T conic
   d)); skip alpha < 1/255; stop a pixel before the Gaussian that would take its transmittance T to
   <= 1e-4 (gsplat's rule); stop the tile when all its pixels have stopped. Stores per pixel the final T
   and the number of list entries up to its last contributor.
4. Backward, per tile in the same strips and reach tests, back to front from each pixel's last
   contributor, recovering T_k = T_{k+1} / (1 - alpha_k) as 3DGS does, writing one gradient row per
   (tile, Gaussian) intersection; the rows are summed per Gaussian in a fixed order (deterministic, no
   atomics), then chained through the projection by hand (`project_backward`) and through the sigmoid.
Through autograd (`rasterize_cpu`) the outputs are *premultiplied* (no background): colour sum_i w_i c_i,
alpha 1 - T, depth sum_i w_i z_i with w_i = alpha_i T_i; the caller composites the background with torch
so its gradient comes for free. Without gradients (`render_cpu_no_grad`, the display path) the tile
kernel composites the background itself and nothing is kept for a backward pass.
Memory is O(N + intersections + pixels); nothing of size pixels x Gaussians.
"""
from __future__ import annotations

import os
from pathlib import Path

if not os.access(Path(__file__).parent, os.W_OK) and "NUMBA_CACHE_DIR" not in os.environ:
    # The cache sits next to the module by default; read-only installs get a per-user cache folder.
    os.environ["NUMBA_CACHE_DIR"] = str(Path.home() / ".cache" / "talking-avatar-numba")

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from render.camera import Camera  # noqa: E402
from render.cpu_binning import ALPHA_MIN, PRANGE_ONLY, TILE, bin_tiles, pixel_span  # noqa: E402
from render.cpu_projection import (  # noqa: E402
    SCREEN_COLUMNS, depth_order, fov_limits, project_backward, project_forward,
)

TILE_PIXELS = TILE * TILE
STRIP = 8  # pixel columns per strip: the forward pass keeps a tile as 2 strips of 16 rows x 8 columns
STRIPS = TILE // STRIP
STRIP_PIXELS = STRIP * TILE
TILE_SCATTER = 7919  # a prime: j -> j * 7919 mod n_tiles is a permutation unless n_tiles is a multiple
ALPHA_MAX = np.float32(0.99)
T_STOP = np.float32(1e-4)
GRAD_COLUMNS = 10  # u, v, conic a, b, c, opacity, r, g, b, depth (the first 10 of PARAM_COLUMNS)

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


@nb.njit(inline="always", fastmath=True)
def _exp_neg(x):
    """exp(x) for float32 x in [-6, 0], branch-free so that loops calling it vectorise (~2 ulp).

    x = n ln2 + r with |r| <= ln2/2; exp(r) by a degree-7 Taylor polynomial (error < 1e-8);
    2^n (n in -9..0) built from its float32 bit pattern (exact).
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
    scale = np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)
    return p * scale


@nb.njit(inline="always")
def _scattered_tile(j, n_tiles):
    """The tile that loop index j works on: numba splits a prange into one contiguous block of indices per
    thread, and neighbouring tiles cost alike (face versus background), so a multiplicative scatter gives
    every thread a share of every image region (same work per thread)."""
    stride = TILE_SCATTER if n_tiles % TILE_SCATTER else 1
    return (j * stride) % n_tiles


@nb.njit(inline="always")
def _tile_pixels(t, tiles_x, px, py):
    """Tile t's (tile_x, tile_y), with px / py [256] filled with its pixel centres in strip layout."""
    tile_y = t // tiles_x
    tile_x = t - tile_y * tiles_x
    for p in range(TILE_PIXELS):
        strip = p // STRIP_PIXELS
        q = p - strip * STRIP_PIXELS
        px[p] = np.float32(tile_x * TILE + strip * STRIP + q % STRIP) + _HALF
        py[p] = np.float32(tile_y * TILE + q // STRIP) + _HALF
    return tile_x, tile_y


@nb.njit(inline="always")
def _pixel_xy(p, tile_x, tile_y):
    """Image column and row of tile pixel p (strip layout)."""
    strip = p // STRIP_PIXELS
    q = p - strip * STRIP_PIXELS
    return tile_x * TILE + strip * STRIP + q % STRIP, tile_y * TILE + q // STRIP


@nb.njit(inline="always")
def _live_rows(trans, lo, hi):
    """Shrink the row range [lo, hi) of one strip past rows whose pixels have all stopped (trans < 0)."""
    while lo < hi:
        alive = 0
        for p in range(lo * STRIP, lo * STRIP + STRIP):
            alive += 1 if trans[p] > _F0 else 0
        if alive:
            break
        lo += 1
    while hi > lo:
        alive = 0
        for p in range(hi * STRIP - STRIP, hi * STRIP):
            alive += 1 if trans[p] > _F0 else 0
        if alive:
            break
        hi -= 1
    return lo, hi


@nb.njit(inline="always")
def _blend(px, py, trans, acc_r, acc_g, acc_b, acc_z, count, u, v, ca, cb, cc, op, cr, cg, cbl, cz, k_next):
    """Composite one Gaussian over a contiguous run of pixels (slices starting at 0: a loop from 0 over
    them vectorises; LLVM gives up when it starts at a variable offset into whole-tile arrays).
    Returns the number of pixels that stopped."""
    stopped = _F0
    qa, qb, qc = -_HALF * ca, -cb, -_HALF * cc  # power = -(a dx^2 + 2 b dx dy + c dy^2) / 2
    for p in range(px.shape[0]):
        dx = px[p] - u
        dy = py[p] - v
        power = dx * (qa * dx + qb * dy) + qc * dy * dy
        alpha = min(ALPHA_MAX, op * _exp_neg(max(power, _POWER_FLOOR)))
        t_old = trans[p]
        t_new = t_old * (_F1 - alpha)
        ok = (alpha >= ALPHA_MIN) & (t_old > _F0)
        stop = ok & (t_new <= T_STOP)
        take = ok & (t_new > T_STOP)
        w = alpha * t_old if take else _F0
        acc_r[p] += w * cr
        acc_g[p] += w * cg
        acc_b[p] += w * cbl
        acc_z[p] += w * cz
        trans[p] = t_new if take else (-t_old if stop else t_old)
        count[p] = k_next if take else count[p]
        stopped += _F1 if stop else _F0
    return int(stopped)


@nb.njit(cache=True, fastmath=True, parallel=PRANGE_ONLY, error_model="numpy")
def _forward_tiles(params, offsets, items, width, height, background, out_color, out_alpha, out_depth, out_T,
                   out_count):
    """Front-to-back compositing per tile; fills the [H, W(, 3)] outputs and out_T / out_count.

    background: [H, W, 3] or [1, 1, 3] composited into out_color (colour + T background), or [0, 0, 3] for
    premultiplied colour (training: torch composites, which gives the background its gradient).

    Each Gaussian visits only the strips and rows of the tile that its ellipse's box reaches, minus the
    rows whose pixels have all stopped. A pixel's transmittance is stored negated once it has stopped (or
    lies outside the image), so one sign test replaces a separate "active" flag.
    """
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = offsets.shape[0] - 1
    for j in nb.prange(n_tiles):
        t = _scattered_tile(j, n_tiles)
        px = np.empty(TILE_PIXELS, np.float32)
        py = np.empty(TILE_PIXELS, np.float32)
        tile_x, tile_y = _tile_pixels(t, tiles_x, px, py)
        trans = np.ones(TILE_PIXELS, np.float32)
        acc_r = np.zeros(TILE_PIXELS, np.float32)
        acc_g = np.zeros(TILE_PIXELS, np.float32)
        acc_b = np.zeros(TILE_PIXELS, np.float32)
        acc_z = np.zeros(TILE_PIXELS, np.float32)
        count = np.zeros(TILE_PIXELS, np.int32)
        live = np.empty((STRIPS, 2), np.int64)  # per strip: rows [lo, hi) that still have running pixels
        n_done = 0
        for p in range(TILE_PIXELS):
            if px[p] > width or py[p] > height:
                trans[p] = -_F1
                n_done += 1
        for s in range(STRIPS):
            live[s, 0], live[s, 1] = _live_rows(trans[s * STRIP_PIXELS:(s + 1) * STRIP_PIXELS], 0, TILE)
        start = offsets[t]
        for k in range(offsets[t + 1] - start):
            if n_done == TILE_PIXELS:
                break
            i = items[start + k]
            col_lo, col_hi = pixel_span(params[i, 10], params[i, 11], tile_x * TILE, TILE)
            row_lo, row_hi = pixel_span(params[i, 12], params[i, 13], tile_y * TILE, TILE)
            k_next = np.int32(k + 1)
            for s in range(col_lo // STRIP, (col_hi + STRIP - 1) // STRIP):
                lo = max(row_lo, live[s, 0])
                hi = min(row_hi, live[s, 1])
                if hi <= lo:
                    continue
                a = s * STRIP_PIXELS + lo * STRIP
                b = s * STRIP_PIXELS + hi * STRIP
                stopped = _blend(px[a:b], py[a:b], trans[a:b], acc_r[a:b], acc_g[a:b], acc_b[a:b], acc_z[a:b],
                                 count[a:b], params[i, 0], params[i, 1], params[i, 2], params[i, 3], params[i, 4],
                                 params[i, 5], params[i, 6], params[i, 7], params[i, 8], params[i, 9], k_next)
                if stopped:
                    n_done += stopped
                    live[s, 0], live[s, 1] = _live_rows(trans[s * STRIP_PIXELS:(s + 1) * STRIP_PIXELS],
                                                        live[s, 0], live[s, 1])
        for p in range(TILE_PIXELS):
            x, y = _pixel_xy(p, tile_x, tile_y)
            if x < width and y < height:
                t_final = abs(trans[p])
                r, g, b = acc_r[p], acc_g[p], acc_b[p]
                if background.shape[0]:
                    by = y if background.shape[0] > 1 else 0
                    bx = x if background.shape[1] > 1 else 0
                    r += t_final * background[by, bx, 0]
                    g += t_final * background[by, bx, 1]
                    b += t_final * background[by, bx, 2]
                out_color[y, x, 0] = r
                out_color[y, x, 1] = g
                out_color[y, x, 2] = b
                out_alpha[y, x] = _F1 - t_final
                out_depth[y, x] = acc_z[p]
                out_T[y, x] = t_final
                out_count[y, x] = count[p]


@nb.njit(inline="always")
def _blend_backward(px, py, trans, t_final, last, g_r, g_g, g_b, g_a, g_z, behind_r, behind_g, behind_b, behind_z,
                    u, v, ca, cb, cc, op, cr, cg, cbl, cz, k32):
    """Gradients of one Gaussian (list entry k32) over a contiguous run of pixels, walking back to front:
    undoes its compositing in trans (T_k = T_{k+1} / (1 - alpha_k), as 3DGS does) and adds what it put on
    top of the pixels' behind_* sums. Returns the sums of d/du, d/dv, d/d(conic a, b, c) without the
    -1/2 / -1 factors, d/dopacity, d/d(r, g, b, depth)."""
    s_u = s_v = s_a = s_b = s_c = s_op = s_r = s_g = s_bl = s_z = _F0
    qa, qb, qc = -_HALF * ca, -cb, -_HALF * cc  # the forward pass's exact formula: same alpha decisions
    for p in range(px.shape[0]):
        dx = px[p] - u
        dy = py[p] - v
        power = dx * (qa * dx + qb * dy) + qc * dy * dy
        gauss = _exp_neg(max(power, _POWER_FLOOR))
        raw = op * gauss
        alpha = min(ALPHA_MAX, raw)
        ok = (alpha >= ALPHA_MIN) & (k32 < last[p])
        inv = _F1 / (_F1 - alpha)
        t_k = trans[p] * inv
        w = alpha * t_k
        # dL/dalpha_k = g . (c_k T_k - B_k / (1 - alpha_k)) + g_A T_final / (1 - alpha_k), where
        # B_k is what the Gaussians behind k added (colour and depth), g the pixel's gradients.
        own = g_r[p] * cr + g_g[p] * cg + g_b[p] * cbl + g_z[p] * cz
        behind = g_r[p] * behind_r[p] + g_g[p] * behind_g[p] + g_b[p] * behind_b[p] + g_z[p] * behind_z[p]
        d_alpha = own * t_k - (behind - g_a[p] * t_final[p]) * inv
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
        s_a += d_power * dx * dx
        s_b += d_power * dx * dy
        s_c += d_power * dy * dy
        behind_r[p] += w_ok * cr
        behind_g[p] += w_ok * cg
        behind_b[p] += w_ok * cbl
        behind_z[p] += w_ok * cz
        trans[p] = t_k if ok else trans[p]
    return s_u, s_v, s_a, s_b, s_c, s_op, s_r, s_g, s_bl, s_z


@nb.njit(cache=True, fastmath=True, parallel=PRANGE_ONLY, error_model="numpy")
def _backward_tiles(params, offsets, items, width, height, final_T, counts, grad_color, grad_alpha, grad_depth):
    """Back-to-front gradient walk per tile (the forward pass's strips and reach tests); returns one
    gradient row [n_isect, 10] per intersection."""
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = offsets.shape[0] - 1
    rows = np.zeros((items.shape[0], GRAD_COLUMNS), np.float32)
    for j in nb.prange(n_tiles):
        t = _scattered_tile(j, n_tiles)
        px = np.empty(TILE_PIXELS, np.float32)
        py = np.empty(TILE_PIXELS, np.float32)
        tile_x, tile_y = _tile_pixels(t, tiles_x, px, py)
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
            x, y = _pixel_xy(p, tile_x, tile_y)
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
            col_lo, col_hi = pixel_span(params[i, 10], params[i, 11], tile_x * TILE, TILE)
            row_lo, row_hi = pixel_span(params[i, 12], params[i, 13], tile_y * TILE, TILE)
            s_u = s_v = s_a = s_b = s_c = s_op = s_r = s_g = s_bl = s_z = _F0
            for s in range(col_lo // STRIP, (col_hi + STRIP - 1) // STRIP):
                if row_hi <= row_lo:
                    break
                a = s * STRIP_PIXELS + row_lo * STRIP
                b = s * STRIP_PIXELS + row_hi * STRIP
                d_u, d_v, d_a, d_b, d_c, d_op, d_r, d_g, d_bl, d_z = _blend_backward(
                    px[a:b], py[a:b], trans[a:b], t_final[a:b], last[a:b], g_r[a:b], g_g[a:b], g_b[a:b], g_a[a:b],
                    g_z[a:b], behind_r[a:b], behind_g[a:b], behind_b[a:b], behind_z[a:b], params[i, 0],
                    params[i, 1], params[i, 2], params[i, 3], params[i, 4], params[i, 5], params[i, 6], params[i, 7],
                    params[i, 8], params[i, 9], np.int32(k))
                s_u += d_u
                s_v += d_v
                s_a += d_a
                s_b += d_b
                s_c += d_c
                s_op += d_op
                s_r += d_r
                s_g += d_g
                s_bl += d_bl
                s_z += d_z
            row = start + k
            rows[row, 0] = s_u
            rows[row, 1] = s_v
            rows[row, 2] = -_HALF * s_a
            rows[row, 3] = -s_b
            rows[row, 4] = -_HALF * s_c
            rows[row, 5] = s_op
            rows[row, 6] = s_r
            rows[row, 7] = s_g
            rows[row, 8] = s_bl
            rows[row, 9] = s_z
    return rows


@nb.njit(cache=True, parallel=PRANGE_ONLY)
def _reduce_rows(rows, pair_offsets, pair_slots, order, n_gaussians):
    """Sum each Gaussian's intersection rows (fixed order per Gaussian: deterministic); scatter to
    input order as screen gradients [N, 6] (u, v, a, b, c, z), opacity [N] and colour [N, 3] grads."""
    grad_screen = np.zeros((n_gaussians, 6), np.float32)
    grad_opacity = np.zeros(n_gaussians, np.float32)
    grad_colors = np.zeros((n_gaussians, 3), np.float32)
    for i in nb.prange(order.shape[0]):
        g = order[i]
        s_u = s_v = s_a = s_b = s_c = s_op = s_r = s_g = s_bl = s_z = np.float32(0.0)
        for k in range(pair_offsets[i], pair_offsets[i + 1]):
            row = pair_slots[k]
            s_u += rows[row, 0]
            s_v += rows[row, 1]
            s_a += rows[row, 2]
            s_b += rows[row, 3]
            s_c += rows[row, 4]
            s_op += rows[row, 5]
            s_r += rows[row, 6]
            s_g += rows[row, 7]
            s_bl += rows[row, 8]
            s_z += rows[row, 9]
        grad_screen[g, 0], grad_screen[g, 1], grad_screen[g, 2] = s_u, s_v, s_a
        grad_screen[g, 3], grad_screen[g, 4], grad_screen[g, 5] = s_b, s_c, s_z
        grad_opacity[g] = s_op
        grad_colors[g, 0], grad_colors[g, 1], grad_colors[g, 2] = s_r, s_g, s_bl
    return grad_screen, grad_opacity, grad_colors


def _numpy(tensor: Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def _camera_arrays(camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    view = camera.world_to_camera.detach().cpu().double().numpy()
    intrinsics = np.array([camera.fx, camera.fy, camera.cx, camera.cy], np.float64)
    limits = fov_limits(camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy)
    return np.ascontiguousarray(view), intrinsics, limits


def _rasterize_arrays(means, quats, log_scales, opacity_logits, colors, camera, background):
    """The forward pass on numpy copies of the inputs; background [0, 0, 3] (premultiplied colour) or
    [1 or H, 1 or W, 3] (composited). Returns the outputs and what the backward pass needs."""
    width, height = camera.width, camera.height
    view, intrinsics, limits = _camera_arrays(camera)
    arrays = [_numpy(t) for t in (means, quats, log_scales, colors)]
    opacities = _numpy(torch.sigmoid(opacity_logits.detach()))
    n = arrays[0].shape[0]
    screen = np.empty((n, SCREEN_COLUMNS), np.float32)
    in_front = np.empty(n, np.uint8)
    project_forward(arrays[0], arrays[1], arrays[2], view, intrinsics, limits, screen, in_front)
    order = depth_order(screen[:, 5], in_front)
    params, offsets, items, pair_offsets, pair_slots = bin_tiles(screen, opacities, arrays[3], order, width, height)
    # Every pixel is written by its tile, so no initialisation.
    color = np.empty((height, width, 3), np.float32)
    alpha = np.empty((height, width), np.float32)
    depth = np.empty((height, width), np.float32)
    final_T = np.empty((height, width), np.float32)
    counts = np.empty((height, width), np.int32)
    _forward_tiles(params, offsets, items, width, height, background, color, alpha, depth, final_T, counts)
    saved = (arrays, opacities, view, intrinsics, limits, in_front, params, offsets, items,
             pair_offsets, pair_slots, order, final_T, counts, width, height)
    return color, alpha, depth, saved


_PREMULTIPLIED = np.zeros((0, 0, 3), np.float32)


class RasterizeCPU(torch.autograd.Function):
    """(means, quats, log_scales, opacity_logits, colors) -> premultiplied (color [H,W,3], alpha [H,W],
    depth [H,W]) through `camera` (not differentiable)."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, opacity_logits, colors, camera):  # noqa: D102
        color, alpha, depth, ctx.saved = _rasterize_arrays(means, quats, log_scales, opacity_logits, colors, camera,
                                                           _PREMULTIPLIED)
        return torch.from_numpy(color), torch.from_numpy(alpha), torch.from_numpy(depth)

    @staticmethod
    def backward(ctx, grad_color, grad_alpha, grad_depth):  # noqa: D102
        (arrays, opacities, view, intrinsics, limits, in_front, params, offsets, items,
         pair_offsets, pair_slots, order, final_T, counts, width, height) = ctx.saved
        rows = _backward_tiles(params, offsets, items, width, height, final_T, counts,
                               _numpy(grad_color), _numpy(grad_alpha), _numpy(grad_depth))
        n = arrays[0].shape[0]
        grad_screen, grad_opacity, grad_colors = _reduce_rows(rows, pair_offsets, pair_slots, order, n)
        grad_means = np.empty((n, 3), np.float32)
        grad_quats = np.empty((n, 4), np.float32)
        grad_log_scales = np.empty((n, 3), np.float32)
        project_backward(arrays[0], arrays[1], arrays[2], view, intrinsics, limits, in_front, grad_screen,
                         grad_means, grad_quats, grad_log_scales)
        grad_logits = grad_opacity * opacities * (1.0 - opacities)
        return (torch.from_numpy(grad_means), torch.from_numpy(grad_quats), torch.from_numpy(grad_log_scales),
                torch.from_numpy(grad_logits), torch.from_numpy(grad_colors), None)


def rasterize_cpu(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    colors: Tensor,  # [N, 3]
    camera: Camera,
) -> tuple[Tensor, Tensor, Tensor]:
    """Premultiplied colour [H, W, 3], alpha [H, W] and depth sum_i w_i z_i [H, W] (float32, CPU)."""
    return RasterizeCPU.apply(means, quats, log_scales, opacity_logits, colors, camera)


def render_cpu_no_grad(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    colors: Tensor,  # [N, 3]
    camera: Camera,
    background: Tensor,  # [3] or [H, W, 3]
) -> tuple[Tensor, Tensor, Tensor]:
    """Colour composited over the background [H, W, 3], alpha [H, W] and depth [H, W] (float32, CPU), with
    the compositing done in the tile kernel: the display path, where no gradient is wanted."""
    bg = _numpy(background).reshape(1, 1, 3) if background.dim() == 1 else _numpy(background)
    color, alpha, depth, _ = _rasterize_arrays(means, quats, log_scales, opacity_logits, colors, camera, bg)
    return torch.from_numpy(color), torch.from_numpy(alpha), torch.from_numpy(depth)
