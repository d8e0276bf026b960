"""Tile binning for the CPU rasterizer: which 16x16 tiles each projected Gaussian can reach.

A Gaussian reaches a pixel only where alpha = opacity exp(-0.5 d^T conic d) >= 1/255, i.e. inside the
ellipse d^T conic d <= 2 ln(255 opacity). It is listed in a tile when that ellipse meets the rectangle of
the tile's pixel centres widened by SLACK pixels (margin for float32 rounding in the raster loop): an exact
test, not just the bounding box, so elongated and rotated Gaussians skip the corner tiles of their box. It
runs per tile row (the ellipse's x extent within the row's band, `_band_x_extent`), not per tile. The ellipse's exact x and y extents go into the parameter rows so the raster loop visits only the
rows and columns of a tile it can reach (`pixel_span`). Pixels these tests rule out could not reach 1/255
anyway, so binning never changes the image (tests compare with the per-pixel reference). Lists come from
a counting sort of the depth-ordered Gaussians, so each tile's slice is already in depth order; no
per-tile sort.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

TILE = 16
ALPHA_MIN = np.float32(1.0 / 255.0)
# Pixels of margin around the exact ellipse in every reach test. Float32 rounding in the raster loop moves
# the alpha = 1/255 boundary by ~1e-6 of the ellipse's radius; a tenth of a pixel covers that many times.
SLACK = 0.1
PARAM_COLUMNS = 14  # u, v, conic a, b, c, opacity, r, g, b, depth, x_min, x_max, y_min, y_max
# Threads only for the explicit prange loops: numba would otherwise turn np.zeros/cumsum into parallel
# regions too, and each region costs a thread wake-up (milliseconds on a loaded machine).
PRANGE_ONLY = {"prange": True, "numpy": False, "reduction": False, "setitem": False, "comprehension": False,
               "inplace_binop": False, "stencil": False, "fusion": False}


@nb.njit(inline="always")
def pixel_span(low, high, base, size):
    """Pixels [lo, hi) of a run of `size` pixels starting at pixel `base` (a tile's columns or rows)
    whose centres (index + 0.5) lie within [low - SLACK, high + SLACK] (an ellipse's extent, pixels)."""
    lo = int(math.floor(low - 0.5 - SLACK)) + 1 - base
    hi = int(math.floor(high - 0.5 + SLACK)) + 1 - base
    return max(lo, 0), min(hi, size)


@nb.njit(inline="always")
def _tile_range(low, high, tiles):
    """Tiles [t0, t1) along one axis holding a pixel whose centre can lie in [low - SLACK, high + SLACK]."""
    t0 = int(min(max(math.floor((low - 0.5 - SLACK) / TILE), 0.0), float(tiles)))
    t1 = int(min(max(math.floor((high - 0.5 + SLACK) / TILE) + 1.0, 0.0), float(tiles)))
    return t0, t1


@nb.njit(inline="always")
def _band_x_extent(a, b, c, det, level, half_w, half_h, y0, y1):
    """x extent [x_lo, x_hi] (offsets from the mean) of the ellipse a x^2 + 2 b x y + c y^2 <= level
    within the horizontal band y0 <= y <= y1 (offsets), or an empty one (x_lo > x_hi) when they miss.

    The ellipse's x extent at height y is (-b y +- sqrt(level a - det y^2)) / a; its right end is concave
    in y and peaks at the rightmost point of the ellipse, y = -b half_w / c (the left end mirrors it), so
    over a band the extremes sit at that point clamped into the band. Exact, so a tile row's tiles are
    those whose columns meet [x_lo, x_hi]: the same set as an ellipse-rectangle test per tile.
    """
    y0 = max(y0, -half_h)
    y1 = min(y1, half_h)
    if y0 > y1:
        return 1.0, -1.0
    y_right = -b * half_w / c
    y = min(max(y_right, y0), y1)
    x_hi = (-b * y + math.sqrt(max(level * a - det * y * y, 0.0))) / a
    y = min(max(-y_right, y0), y1)
    x_lo = (-b * y - math.sqrt(max(level * a - det * y * y, 0.0))) / a
    return x_lo, x_hi


@nb.njit(inline="always")
def _row_tiles(u, v, a, b, c, det, level, half_w, half_h, ty, tiles_x):
    """Tiles [tx0, tx1) of tile row ty that the ellipse reaches (pixel centres widened by SLACK)."""
    band_lo = ty * TILE + 0.5 - SLACK - v
    x_lo, x_hi = _band_x_extent(a, b, c, det, level, half_w, half_h, band_lo, band_lo + TILE - 1.0 + 2.0 * SLACK)
    if x_lo > x_hi:
        return 0, 0
    return _tile_range(u + x_lo, u + x_hi, tiles_x)


@nb.njit(cache=True, parallel=PRANGE_ONLY, error_model="numpy")
def bin_tiles(screen, opacities, colors, order, width, height):
    """Bin the depth-ordered Gaussians `order` into the tiles their alpha >= 1/255 ellipse meets.

    Returns params [M, 14] (PARAM_COLUMNS, in list order), tile_offsets [tiles + 1], tile_items [n_isect]
    (rows of params, each tile's slice in depth order), and per Gaussian its intersections' positions in
    tile_items (pair_offsets [M + 1], pair_slots [n_isect]).
    """
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    m = order.shape[0]
    params = np.empty((m, PARAM_COLUMNS), np.float32)
    box_tiles = np.zeros(m + 1, np.int64)  # tiles in each Gaussian's bounding box: room for its hits
    shape = np.zeros((m, 6), np.float64)  # det, level, half_w, half_h, first and end tile row
    for i in nb.prange(m):
        g = order[i]
        u, v = float(screen[g, 0]), float(screen[g, 1])
        a, b, c = float(screen[g, 2]), float(screen[g, 3]), float(screen[g, 4])
        op = float(opacities[g])
        params[i, 0], params[i, 1], params[i, 2], params[i, 3], params[i, 4], params[i, 5] = u, v, a, b, c, op
        params[i, 6], params[i, 7], params[i, 8], params[i, 9] = colors[g, 0], colors[g, 1], colors[g, 2], screen[g, 5]
        det = a * c - b * b
        if not (op >= ALPHA_MIN and det > 0.0 and a > 0.0):
            params[i, 10] = params[i, 12] = np.inf  # an empty extent: no pixel reachable
            params[i, 11] = params[i, 13] = -np.inf
            continue
        level = 2.0 * math.log(op / ALPHA_MIN)  # d^T conic d bound where alpha >= 1/255
        half_w = math.sqrt(level * c / det)  # the ellipse's exact half extents
        half_h = math.sqrt(level * a / det)
        params[i, 10], params[i, 11], params[i, 12], params[i, 13] = u - half_w, u + half_w, v - half_h, v + half_h
        x0, x1 = _tile_range(u - half_w, u + half_w, tiles_x)
        y0, y1 = _tile_range(v - half_h, v + half_h, tiles_y)
        shape[i, 0], shape[i, 1], shape[i, 2], shape[i, 3], shape[i, 4], shape[i, 5] = det, level, half_w, half_h, y0, y1
        box_tiles[i + 1] = (x1 - x0) * (y1 - y0)
    box_offsets = np.cumsum(box_tiles)
    box_hits = np.empty(box_offsets[-1], np.int32)  # each Gaussian's tiles from box_offsets[i] on
    hits = np.zeros(m + 1, np.int64)
    for i in nb.prange(m):
        u, v = float(params[i, 0]), float(params[i, 1])
        a, b, c = float(params[i, 2]), float(params[i, 3]), float(params[i, 4])
        det, level, half_w, half_h = shape[i, 0], shape[i, 1], shape[i, 2], shape[i, 3]
        k = box_offsets[i]
        for ty in range(int(shape[i, 4]), int(shape[i, 5])):
            tx0, tx1 = _row_tiles(u, v, a, b, c, det, level, half_w, half_h, ty, tiles_x)
            for tx in range(tx0, tx1):
                box_hits[k] = ty * tiles_x + tx
                k += 1
        hits[i + 1] = k - box_offsets[i]
    pair_offsets = np.cumsum(hits)
    counts = np.zeros(tiles_x * tiles_y + 1, np.int64)
    for i in range(m):
        for k in range(box_offsets[i], box_offsets[i] + hits[i + 1]):
            counts[box_hits[k] + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    items = np.empty(pair_offsets[-1], np.int32)
    pair_slots = np.empty(pair_offsets[-1], np.int64)
    for i in range(m):  # serial, in depth order: each tile's slice comes out depth-sorted
        first = box_offsets[i]
        for j in range(hits[i + 1]):
            t = box_hits[first + j]
            items[cursor[t]] = i
            pair_slots[pair_offsets[i] + j] = cursor[t]
            cursor[t] += 1
    return params, offsets, items, pair_offsets, pair_slots
