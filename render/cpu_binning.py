"""Tile binning for the CPU rasterizer: which 16x16 tiles each projected Gaussian can reach.

A Gaussian reaches a pixel only where alpha = opacity exp(-0.5 d^T conic d) >= 1/255, i.e. inside the
ellipse d^T conic d <= 2 ln(255 opacity). It is listed in a tile when that ellipse meets the tile's pixel
centres widened by one pixel (slack for float32 rounding in the raster loop): an exact convex test, not
just the bounding box, so elongated and rotated Gaussians skip the corner tiles of their box. Pixels the
test rules out could not reach 1/255 anyway, so binning never changes the image (tests compare with the
per-pixel reference). Lists come from a counting sort of the depth-ordered Gaussians, so each tile's
slice is already in depth order; no per-tile sort.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

TILE = 16
ALPHA_MIN = np.float32(1.0 / 255.0)
PARAM_COLUMNS = 12  # u, v, conic a, b, c, opacity, r, g, b, depth, y_min, y_max
# Threads only for the explicit prange loops: numba would otherwise turn np.zeros/cumsum into parallel
# regions too, and each region costs a thread wake-up (milliseconds on a loaded machine).
PRANGE_ONLY = {"prange": True, "numpy": False, "reduction": False, "setitem": False, "comprehension": False,
               "inplace_binop": False, "stencil": False, "fusion": False}


@nb.njit(inline="always", error_model="numpy")
def _ellipse_meets_rect(a, b, c, level, xl, xh, yl, yh):
    """Whether d^T [[a, b], [b, c]] d <= level for some d in [xl, xh] x [yl, yh] (offsets from the
    mean): the minimum of a convex quadratic over a rectangle is inside it or on one of its edges."""
    if xl <= 0.0 <= xh and yl <= 0.0 <= yh:
        return True
    # Vertical edges dx = xl, xh (best dy clamped), then horizontal edges dy = yl, yh.
    dy = min(max(-b * xl / c, yl), yh)
    best = a * xl * xl + 2.0 * b * xl * dy + c * dy * dy
    dy = min(max(-b * xh / c, yl), yh)
    best = min(best, a * xh * xh + 2.0 * b * xh * dy + c * dy * dy)
    dx = min(max(-b * yl / a, xl), xh)
    best = min(best, a * dx * dx + 2.0 * b * dx * yl + c * yl * yl)
    dx = min(max(-b * yh / a, xl), xh)
    best = min(best, a * dx * dx + 2.0 * b * dx * yh + c * yh * yh)
    return best <= level


@nb.njit(inline="always")
def _tile_span(u, v, a, b, c, op, tiles_x, tiles_y):
    """Bounding tile range (x0, x1, y0, y1) and ellipse level of one Gaussian; empty when it cannot
    reach alpha 1/255 anywhere."""
    det = a * c - b * b
    if not (op >= ALPHA_MIN and det > 0.0 and a > 0.0):
        return 0, 0, 0, 0, 0.0
    level = 2.0 * math.log(op / ALPHA_MIN)  # d^T conic d bound where alpha >= 1/255
    half_w = math.sqrt(level * c / det) + 1.0
    half_h = math.sqrt(level * a / det) + 1.0
    x0 = int(min(max(math.floor((u - half_w) / TILE), 0.0), float(tiles_x)))
    x1 = int(min(max(math.floor((u + half_w) / TILE) + 1.0, 0.0), float(tiles_x)))
    y0 = int(min(max(math.floor((v - half_h) / TILE), 0.0), float(tiles_y)))
    y1 = int(min(max(math.floor((v + half_h) / TILE) + 1.0, 0.0), float(tiles_y)))
    return x0, x1, y0, y1, level


@nb.njit(inline="always")
def _tile_hit(u, v, a, b, c, level, tx, ty):
    # Pixel centres of the tile, widened by one pixel of slack for float32 rounding in the raster loop.
    xl = tx * TILE + 0.5 - 1.0 - u
    yl = ty * TILE + 0.5 - 1.0 - v
    return _ellipse_meets_rect(a, b, c, level, xl, xl + TILE + 1.0, yl, yl + TILE + 1.0)


@nb.njit(cache=True, parallel=PRANGE_ONLY, error_model="numpy")
def bin_tiles(screen, opacities, colors, order, width, height):
    """Bin the depth-ordered Gaussians `order` into the tiles their alpha >= 1/255 ellipse meets.

    Returns params [M, 12] (u, v, a, b, c, opacity, r, g, b, z, y_min, y_max in list order), tile_offsets
    [tiles + 1], tile_items [n_isect] (rows of params, each tile's slice in depth order), and per
    Gaussian its intersections' positions in tile_items (pair_offsets [M + 1], pair_slots [n_isect]).
    """
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    m = order.shape[0]
    params = np.empty((m, PARAM_COLUMNS), np.float32)
    per_gaussian = np.zeros(m + 1, np.int64)
    spans = np.empty((m, 4), np.int64)
    levels = np.empty(m, np.float64)
    hit_bits = np.zeros(m, np.uint64)  # the tile test's answers when the span has <= 64 tiles
    for i in nb.prange(m):
        g = order[i]
        u, v = float(screen[g, 0]), float(screen[g, 1])
        a, b, c = float(screen[g, 2]), float(screen[g, 3]), float(screen[g, 4])
        op = float(opacities[g])
        x0, x1, y0, y1, level = _tile_span(u, v, a, b, c, op, tiles_x, tiles_y)
        spans[i, 0], spans[i, 1], spans[i, 2], spans[i, 3] = x0, x1, y0, y1
        levels[i] = level
        half_h = math.sqrt(level * a / max(a * c - b * b, 1e-30)) + 1.0
        params[i, 0], params[i, 1], params[i, 2], params[i, 3], params[i, 4], params[i, 5] = u, v, a, b, c, op
        params[i, 6], params[i, 7], params[i, 8] = colors[g, 0], colors[g, 1], colors[g, 2]
        params[i, 9], params[i, 10], params[i, 11] = screen[g, 5], v - half_h, v + half_h
        n_hit = 0
        bits = np.uint64(0)
        bit = np.uint64(1)
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                if _tile_hit(u, v, a, b, c, level, tx, ty):
                    n_hit += 1
                    bits |= bit
                bit = bit << np.uint64(1)
        hit_bits[i] = bits
        per_gaussian[i + 1] = n_hit
    pair_offsets = np.cumsum(per_gaussian)
    pair_tiles = np.empty(pair_offsets[-1], np.int32)
    for i in nb.prange(m):
        g = order[i]
        u, v = float(screen[g, 0]), float(screen[g, 1])
        a, b, c = float(screen[g, 2]), float(screen[g, 3]), float(screen[g, 4])
        x0, x1, y0, y1, level = spans[i, 0], spans[i, 1], spans[i, 2], spans[i, 3], levels[i]
        small = (x1 - x0) * (y1 - y0) <= 64
        bits = hit_bits[i]
        bit = np.uint64(1)
        k = pair_offsets[i]
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                if ((bits & bit) != 0) if small else _tile_hit(u, v, a, b, c, level, tx, ty):
                    pair_tiles[k] = ty * tiles_x + tx
                    k += 1
                bit = bit << np.uint64(1)
    counts = np.zeros(tiles_x * tiles_y + 1, np.int64)
    for k in range(pair_tiles.shape[0]):
        counts[pair_tiles[k] + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    items = np.empty(pair_tiles.shape[0], np.int32)
    pair_slots = np.empty(pair_tiles.shape[0], np.int64)
    for i in range(m):  # serial, in depth order: each tile's slice comes out depth-sorted
        for k in range(pair_offsets[i], pair_offsets[i + 1]):
            t = pair_tiles[k]
            items[cursor[t]] = i
            pair_slots[k] = cursor[t]
            cursor[t] += 1
    return params, offsets, items, pair_offsets, pair_slots
