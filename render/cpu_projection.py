"""EWA projection of 3D Gaussians in numba, forward and hand-derived backward (one thread per chunk of
Gaussians), plus a stable radix sort by depth. Same math as `render.projection` (its torch twin, which
tests compare against, gradients included); the rules are documented there.

Why by hand: the torch version costs ~40 small tensor ops forward and as many backward (10-30 ms at 30k
Gaussians here), more than the whole frame budget of a 60 FPS render; in numba it is ~1 ms.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from render.cpu_binning import PRANGE_ONLY

NEAR_PLANE = np.float32(0.01)
LOW_PASS = np.float32(0.3)
FOV_CLAMP_MARGIN = 0.3
SCREEN_COLUMNS = 6  # u, v, conic a, b, c, z


def fov_limits(width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """[x_neg, x_pos, y_neg, y_pos]: the clamp range of x/z and y/z used in the Jacobian."""
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    return np.array([
        -(cx / fx + FOV_CLAMP_MARGIN * tan_x), (width - cx) / fx + FOV_CLAMP_MARGIN * tan_x,
        -(cy / fy + FOV_CLAMP_MARGIN * tan_y), (height - cy) / fy + FOV_CLAMP_MARGIN * tan_y,
    ], np.float64)


@nb.njit(inline="always")
def _rotation(qw, qx, qy, qz):
    return (
        1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy),
        2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx),
        2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy),
    )


@nb.njit(cache=True, parallel=PRANGE_ONLY)
def project_forward(means, quats, log_scales, view, intrinsics, limits, screen, in_front):
    """Fill screen [N, 6] (u, v, conic a, b, c, z) and in_front [N] (uint8). Computed in float64."""
    fx, fy, cx, cy = intrinsics[0], intrinsics[1], intrinsics[2], intrinsics[3]
    for i in nb.prange(means.shape[0]):
        m0, m1, m2 = float(means[i, 0]), float(means[i, 1]), float(means[i, 2])
        x = view[0, 0] * m0 + view[0, 1] * m1 + view[0, 2] * m2 + view[0, 3]
        y = view[1, 0] * m0 + view[1, 1] * m1 + view[1, 2] * m2 + view[1, 3]
        z = view[2, 0] * m0 + view[2, 1] * m1 + view[2, 2] * m2 + view[2, 3]
        screen[i, 5] = z
        if not z >= NEAR_PLANE:
            in_front[i] = 0
            screen[i, 0] = screen[i, 1] = screen[i, 2] = screen[i, 3] = screen[i, 4] = 0.0
            continue
        in_front[i] = 1
        qw, qx, qy, qz = float(quats[i, 0]), float(quats[i, 1]), float(quats[i, 2]), float(quats[i, 3])
        norm = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        rot = _rotation(qw / norm, qx / norm, qy / norm, qz / norm)
        s0, s1, s2 = math.exp(log_scales[i, 0]), math.exp(log_scales[i, 1]), math.exp(log_scales[i, 2])
        rx = min(max(x / z, limits[0]), limits[1])
        ry = min(max(y / z, limits[2]), limits[3])
        # Rows of J W (J is 2x3, W the view rotation), then F = J W R_q S.
        j0 = (fx / z * view[0, 0] - fx * rx / z * view[2, 0], fx / z * view[0, 1] - fx * rx / z * view[2, 1],
              fx / z * view[0, 2] - fx * rx / z * view[2, 2])
        j1 = (fy / z * view[1, 0] - fy * ry / z * view[2, 0], fy / z * view[1, 1] - fy * ry / z * view[2, 1],
              fy / z * view[1, 2] - fy * ry / z * view[2, 2])
        f00 = (j0[0] * rot[0] + j0[1] * rot[3] + j0[2] * rot[6]) * s0
        f01 = (j0[0] * rot[1] + j0[1] * rot[4] + j0[2] * rot[7]) * s1
        f02 = (j0[0] * rot[2] + j0[1] * rot[5] + j0[2] * rot[8]) * s2
        f10 = (j1[0] * rot[0] + j1[1] * rot[3] + j1[2] * rot[6]) * s0
        f11 = (j1[0] * rot[1] + j1[1] * rot[4] + j1[2] * rot[7]) * s1
        f12 = (j1[0] * rot[2] + j1[1] * rot[5] + j1[2] * rot[8]) * s2
        cxx = f00 * f00 + f01 * f01 + f02 * f02 + LOW_PASS
        cxy = f00 * f10 + f01 * f11 + f02 * f12
        cyy = f10 * f10 + f11 * f11 + f12 * f12 + LOW_PASS
        det = cxx * cyy - cxy * cxy
        screen[i, 0] = fx * x / z + cx
        screen[i, 1] = fy * y / z + cy
        screen[i, 2] = cyy / det
        screen[i, 3] = -cxy / det
        screen[i, 4] = cxx / det


@nb.njit(cache=True, parallel=PRANGE_ONLY)
def project_backward(means, quats, log_scales, view, intrinsics, limits, in_front, grad_screen,
                     grad_means, grad_quats, grad_log_scales):
    """Chain grad_screen [N, 6] (d/du, d/dv, d/da, d/db, d/dc, d/dz) to the 3D parameters (float64 math)."""
    fx, fy = intrinsics[0], intrinsics[1]
    for i in nb.prange(means.shape[0]):
        if in_front[i] == 0:
            for k in range(3):
                grad_means[i, k] = 0.0
                grad_log_scales[i, k] = 0.0
            for k in range(4):
                grad_quats[i, k] = 0.0
            continue
        m0, m1, m2 = float(means[i, 0]), float(means[i, 1]), float(means[i, 2])
        x = view[0, 0] * m0 + view[0, 1] * m1 + view[0, 2] * m2 + view[0, 3]
        y = view[1, 0] * m0 + view[1, 1] * m1 + view[1, 2] * m2 + view[1, 3]
        z = view[2, 0] * m0 + view[2, 1] * m1 + view[2, 2] * m2 + view[2, 3]
        q0, q1, q2, q3 = float(quats[i, 0]), float(quats[i, 1]), float(quats[i, 2]), float(quats[i, 3])
        norm = math.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3)
        qw, qx, qy, qz = q0 / norm, q1 / norm, q2 / norm, q3 / norm
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = _rotation(qw, qx, qy, qz)
        s0, s1, s2 = math.exp(log_scales[i, 0]), math.exp(log_scales[i, 1]), math.exp(log_scales[i, 2])
        rx_raw, ry_raw = x / z, y / z
        rx = min(max(rx_raw, limits[0]), limits[1])
        ry = min(max(ry_raw, limits[2]), limits[3])
        # Rows of J W, and F = J W R_q S as in the forward pass.
        a0 = fx / z * view[0, 0] - fx * rx / z * view[2, 0]
        a1 = fx / z * view[0, 1] - fx * rx / z * view[2, 1]
        a2 = fx / z * view[0, 2] - fx * rx / z * view[2, 2]
        b0 = fy / z * view[1, 0] - fy * ry / z * view[2, 0]
        b1 = fy / z * view[1, 1] - fy * ry / z * view[2, 1]
        b2 = fy / z * view[1, 2] - fy * ry / z * view[2, 2]
        n00, n01, n02 = r00 * s0, r01 * s1, r02 * s2  # N = R_q S
        n10, n11, n12 = r10 * s0, r11 * s1, r12 * s2
        n20, n21, n22 = r20 * s0, r21 * s1, r22 * s2
        f00 = a0 * n00 + a1 * n10 + a2 * n20
        f01 = a0 * n01 + a1 * n11 + a2 * n21
        f02 = a0 * n02 + a1 * n12 + a2 * n22
        f10 = b0 * n00 + b1 * n10 + b2 * n20
        f11 = b0 * n01 + b1 * n11 + b2 * n21
        f12 = b0 * n02 + b1 * n12 + b2 * n22
        cxx = f00 * f00 + f01 * f01 + f02 * f02 + LOW_PASS
        cxy = f00 * f10 + f01 * f11 + f02 * f12
        cyy = f10 * f10 + f11 * f11 + f12 * f12 + LOW_PASS
        det = cxx * cyy - cxy * cxy
        det2 = det * det
        ga, gb, gc = grad_screen[i, 2], grad_screen[i, 3], grad_screen[i, 4]
        # conic (a, b, c) = (cyy, -cxy, cxx) / det
        g_cxx = (-ga * cyy * cyy + gb * cxy * cyy - gc * cxy * cxy) / det2
        g_cyy = (-ga * cxy * cxy + gb * cxy * cxx - gc * cxx * cxx) / det2
        g_cxy = (2.0 * ga * cxy * cyy - gb * (cxx * cyy + cxy * cxy) + 2.0 * gc * cxx * cxy) / det2
        gf00 = 2.0 * g_cxx * f00 + g_cxy * f10
        gf01 = 2.0 * g_cxx * f01 + g_cxy * f11
        gf02 = 2.0 * g_cxx * f02 + g_cxy * f12
        gf10 = 2.0 * g_cyy * f10 + g_cxy * f00
        gf11 = 2.0 * g_cyy * f11 + g_cxy * f01
        gf12 = 2.0 * g_cyy * f12 + g_cxy * f02
        # F = (J W) N: gradient of J W (rows a, b), then of J through W.
        ga0 = gf00 * n00 + gf01 * n01 + gf02 * n02
        ga1 = gf00 * n10 + gf01 * n11 + gf02 * n12
        ga2 = gf00 * n20 + gf01 * n21 + gf02 * n22
        gb0 = gf10 * n00 + gf11 * n01 + gf12 * n02
        gb1 = gf10 * n10 + gf11 * n11 + gf12 * n12
        gb2 = gf10 * n20 + gf11 * n21 + gf12 * n22
        gj00 = ga0 * view[0, 0] + ga1 * view[0, 1] + ga2 * view[0, 2]
        gj02 = ga0 * view[2, 0] + ga1 * view[2, 1] + ga2 * view[2, 2]
        gj11 = gb0 * view[1, 0] + gb1 * view[1, 1] + gb2 * view[1, 2]
        gj12 = gb0 * view[2, 0] + gb1 * view[2, 1] + gb2 * view[2, 2]
        gn00, gn01, gn02 = a0 * gf00 + b0 * gf10, a0 * gf01 + b0 * gf11, a0 * gf02 + b0 * gf12
        gn10, gn11, gn12 = a1 * gf00 + b1 * gf10, a1 * gf01 + b1 * gf11, a1 * gf02 + b1 * gf12
        gn20, gn21, gn22 = a2 * gf00 + b2 * gf10, a2 * gf01 + b2 * gf11, a2 * gf02 + b2 * gf12
        grad_log_scales[i, 0] = (gn00 * r00 + gn10 * r10 + gn20 * r20) * s0
        grad_log_scales[i, 1] = (gn01 * r01 + gn11 * r11 + gn21 * r21) * s1
        grad_log_scales[i, 2] = (gn02 * r02 + gn12 * r12 + gn22 * r22) * s2
        g00, g01, g02 = gn00 * s0, gn01 * s1, gn02 * s2  # gradient of R_q
        g10, g11, g12 = gn10 * s0, gn11 * s1, gn12 * s2
        g20, g21, g22 = gn20 * s0, gn21 * s1, gn22 * s2
        g_qw = 2 * (-qz * g01 + qy * g02 + qz * g10 - qx * g12 - qy * g20 + qx * g21)
        g_qx = 2 * (qy * g01 + qz * g02 + qy * g10 - 2 * qx * g11 - qw * g12 + qz * g20 + qw * g21 - 2 * qx * g22)
        g_qy = 2 * (-2 * qy * g00 + qx * g01 + qw * g02 + qx * g10 + qz * g12 - qw * g20 + qz * g21 - 2 * qy * g22)
        g_qz = 2 * (-2 * qz * g00 - qw * g01 + qx * g02 + qw * g10 - 2 * qz * g11 + qy * g12 + qx * g20 + qy * g21)
        dot = qw * g_qw + qx * g_qx + qy * g_qy + qz * g_qz
        grad_quats[i, 0] = (g_qw - qw * dot) / norm
        grad_quats[i, 1] = (g_qx - qx * dot) / norm
        grad_quats[i, 2] = (g_qy - qy * dot) / norm
        grad_quats[i, 3] = (g_qz - qz * dot) / norm
        # Camera-space point: through J (z and the clamped ratios) and the pixel mean.
        gu, gv = grad_screen[i, 0], grad_screen[i, 1]
        g_z = grad_screen[i, 5] - gj00 * fx / (z * z) + gj02 * fx * rx / (z * z)
        g_z += -gj11 * fy / (z * z) + gj12 * fy * ry / (z * z)
        g_rx = -gj02 * fx / z if limits[0] <= rx_raw <= limits[1] else 0.0
        g_ry = -gj12 * fy / z if limits[2] <= ry_raw <= limits[3] else 0.0
        g_rx += gu * fx
        g_ry += gv * fy
        g_x = g_rx / z
        g_y = g_ry / z
        g_z += -(g_rx * rx_raw + g_ry * ry_raw) / z
        for k in range(3):
            grad_means[i, k] = view[0, k] * g_x + view[1, k] * g_y + view[2, k] * g_z


@nb.njit(cache=True)
def depth_order(depths, in_front):
    """Indices of the in-front Gaussians sorted by depth, stable (LSD radix sort of the float32 bits,
    which order like the numbers since in-front depths are positive)."""
    keep = np.flatnonzero(in_front)
    keys = depths[keep].astype(np.float32).view(np.uint32)
    order = np.arange(keep.shape[0])
    scratch = np.empty_like(order)
    for shift in (0, 16):
        counts = np.zeros(65537, np.int64)
        for j in range(order.shape[0]):
            counts[((keys[order[j]] >> shift) & 0xFFFF) + 1] += 1
        for b in range(65536):
            counts[b + 1] += counts[b]
        for j in range(order.shape[0]):
            bucket = (keys[order[j]] >> shift) & 0xFFFF
            scratch[counts[bucket]] = order[j]
            counts[bucket] += 1
        order, scratch = scratch, order
    return keep[order]
