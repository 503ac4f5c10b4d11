"""Compiled (numba) kernels of the CPU splat rasterizer: EWA projection, view-dependent colour
(SH) and tile compositing, each with its hand-written backward. Pure array code in float64; raster_cpu wraps them as autograd
Functions. The image model is raster_torch's, constant for constant (see its docstring).

Parallel loops: the projection over Gaussians, the compositing over tiles (each tile writes only
its own pixels and its own (tile, Gaussian) pairs, so no two threads write the same memory).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .raster_torch import _SH_C0 as SH_C0
from .raster_torch import _SH_C1 as SH_C1
from .raster_torch import _SH_C2 as SH_C2
from .raster_torch import _SH_C3 as SH_C3
from .raster_torch import ALPHA_MAX, ALPHA_MIN, EPS_2D, NEAR_PLANE, T_MIN

# numba's plain thread pool, not its OpenMP layer: beside torch's OpenMP pool that one spins idle
# threads between kernels and made small renders 30x slower on 2 cores (thread counts: threads.py).
# The workqueue pool serves one caller at a time: render from one Python thread at a time.
numba.config.THREADING_LAYER = "workqueue"
# cache=True keys compiled kernels on this file: the raster_torch constants they bake in are read at
# compile time, so a change there needs a touch of this file (the reference tests would catch it)

LOGIT_MIN = math.log(ALPHA_MIN / (1 - ALPHA_MIN))  # below: never reaches alpha 1/255 anywhere
DET_MIN = 1e-12
FOOTPRINT_PAD = 1.0  # px added to each footprint box, so float rounding at its edge never drops a pixel
SIGMA_SLACK = 1e-9  # exp(-sigma) tested only within this of the 1/255 cut, so the cut is exactly raster_torch's


# ----------------------------------------------------------------------------- projection

@numba.njit(cache=True)
def _quat_rotation(qw, qx, qy, qz):  # type: ignore[no-untyped-def]
    """Rotation matrix entries of the normalized quaternion (w, x, y, z), and the normalized parts."""
    norm = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
    w, x, y, z = qw / norm, qx / norm, qy / norm, qz / norm
    r = (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
         2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
         2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))
    return r, w, x, y, z, norm


@numba.njit(cache=True)
def _camera_point(means, i, rot, trans):  # type: ignore[no-untyped-def]
    m0, m1, m2 = means[i, 0], means[i, 1], means[i, 2]
    return (rot[0, 0] * m0 + rot[0, 1] * m1 + rot[0, 2] * m2 + trans[0],
            rot[1, 0] * m0 + rot[1, 1] * m1 + rot[1, 2] * m2 + trans[1],
            rot[2, 0] * m0 + rot[2, 1] * m1 + rot[2, 2] * m2 + trans[2])


@numba.njit(cache=True)
def _view_rs(rot, r, s0, s1, s2):  # type: ignore[no-untyped-def]
    """rot @ Rq @ diag(s), row-major 9-tuple."""
    return ((rot[0, 0] * r[0] + rot[0, 1] * r[3] + rot[0, 2] * r[6]) * s0,
            (rot[0, 0] * r[1] + rot[0, 1] * r[4] + rot[0, 2] * r[7]) * s1,
            (rot[0, 0] * r[2] + rot[0, 1] * r[5] + rot[0, 2] * r[8]) * s2,
            (rot[1, 0] * r[0] + rot[1, 1] * r[3] + rot[1, 2] * r[6]) * s0,
            (rot[1, 0] * r[1] + rot[1, 1] * r[4] + rot[1, 2] * r[7]) * s1,
            (rot[1, 0] * r[2] + rot[1, 1] * r[5] + rot[1, 2] * r[8]) * s2,
            (rot[2, 0] * r[0] + rot[2, 1] * r[3] + rot[2, 2] * r[6]) * s0,
            (rot[2, 0] * r[1] + rot[2, 1] * r[4] + rot[2, 2] * r[7]) * s1,
            (rot[2, 0] * r[2] + rot[2, 1] * r[5] + rot[2, 2] * r[8]) * s2)


@numba.njit(cache=True)
def _jacobian_limits(intr, width, height):  # type: ignore[no-untyped-def]
    """The Jacobian's evaluation point is clamped to 1.3x the field of view (3DGS)."""
    fx, fy, cx, cy = intr[0], intr[1], intr[2], intr[3]
    lim_x, lim_y = 0.3 * 0.5 * width / fx, 0.3 * 0.5 * height / fy
    return -(cx / fx + lim_x), (width - cx) / fx + lim_x, -(cy / fy + lim_y), (height - cy) / fy + lim_y


@numba.njit(parallel=True, cache=True)
def project_forward(means, log_scales, quats, logits, rot, trans, intr, width, height,
                    means2d, conics, depths, opacities, extent, visible):  # type: ignore[no-untyped-def]
    """Per Gaussian: screen mean, conic (inverse 2D covariance a, b, c), depth, opacity, the half
    size of its alpha >= 1/255 box, and whether it is in front of the camera and on screen.
    intr = (fx, fy, cx, cy)."""
    fx, fy, cx, cy = intr[0], intr[1], intr[2], intr[3]
    lo_x, hi_x, lo_y, hi_y = _jacobian_limits(intr, width, height)
    for i in numba.prange(means.shape[0]):
        visible[i] = False
        x, y, z = _camera_point(means, i, rot, trans)
        if not (z > NEAR_PLANE and logits[i] > LOGIT_MIN):
            continue
        tx = z * min(max(x / z, lo_x), hi_x)
        ty = z * min(max(y / z, lo_y), hi_y)
        j00, j02, j11, j12 = fx / z, -fx * tx / (z * z), fy / z, -fy * ty / (z * z)
        r, _, _, _, _, _ = _quat_rotation(quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3])
        m = _view_rs(rot, r, math.exp(log_scales[i, 0]), math.exp(log_scales[i, 1]), math.exp(log_scales[i, 2]))
        # T = J M (2 x 3)
        t00, t01, t02 = j00 * m[0] + j02 * m[6], j00 * m[1] + j02 * m[7], j00 * m[2] + j02 * m[8]
        t10, t11, t12 = j11 * m[3] + j12 * m[6], j11 * m[4] + j12 * m[7], j11 * m[5] + j12 * m[8]
        a = t00 * t00 + t01 * t01 + t02 * t02 + EPS_2D
        b = t00 * t10 + t01 * t11 + t02 * t12
        c = t10 * t10 + t11 * t11 + t12 * t12 + EPS_2D
        det = max(a * c - b * b, DET_MIN)
        u, v = fx * x / z + cx, fy * y / z + cy
        o = 1.0 / (1.0 + math.exp(-logits[i]))
        reach = max(2.0 * math.log(o / ALPHA_MIN), 0.0)
        ex, ey = math.sqrt(reach * a), math.sqrt(reach * c)
        if not (u + ex > 0 and u - ex < width and v + ey > 0 and v - ey < height and reach > 0):
            continue
        visible[i] = True
        means2d[i, 0], means2d[i, 1] = u, v
        conics[i, 0], conics[i, 1], conics[i, 2] = c / det, -b / det, a / det
        depths[i] = z
        opacities[i] = o
        extent[i, 0], extent[i, 1] = ex, ey


@numba.njit(parallel=True, cache=True)
def project_backward(means, log_scales, quats, logits, rot, trans, intr, width, height, visible,
                     d_means2d, d_conics, d_depths, d_opacities,
                     d_means, d_log_scales, d_quats, d_logits):  # type: ignore[no-untyped-def]
    """Gradients of project_forward's outputs (for the visible Gaussians) to the parameters."""
    fx, fy = intr[0], intr[1]
    lo_x, hi_x, lo_y, hi_y = _jacobian_limits(intr, width, height)
    for i in numba.prange(means.shape[0]):
        if not visible[i]:
            continue
        x, y, z = _camera_point(means, i, rot, trans)
        rx, ry = x / z, y / z
        cx_, cy_ = min(max(rx, lo_x), hi_x), min(max(ry, lo_y), hi_y)
        tx, ty = z * cx_, z * cy_
        j00, j02, j11, j12 = fx / z, -fx * tx / (z * z), fy / z, -fy * ty / (z * z)
        r, qw, qx, qy, qz, qn = _quat_rotation(quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3])
        s0, s1, s2 = math.exp(log_scales[i, 0]), math.exp(log_scales[i, 1]), math.exp(log_scales[i, 2])
        m = _view_rs(rot, r, s0, s1, s2)
        t00, t01, t02 = j00 * m[0] + j02 * m[6], j00 * m[1] + j02 * m[7], j00 * m[2] + j02 * m[8]
        t10, t11, t12 = j11 * m[3] + j12 * m[6], j11 * m[4] + j12 * m[7], j11 * m[5] + j12 * m[8]
        a = t00 * t00 + t01 * t01 + t02 * t02 + EPS_2D
        b = t00 * t10 + t01 * t11 + t02 * t12
        c = t10 * t10 + t11 * t11 + t12 * t12 + EPS_2D
        det_raw = a * c - b * b
        det = max(det_raw, DET_MIN)
        # conic (A, B, C) = (c, -b, a) / det
        ga, gb, gc = d_conics[i, 0], d_conics[i, 1], d_conics[i, 2]
        d_a, d_b, d_c = gc / det, -gb / det, ga / det
        if det_raw > DET_MIN:
            d_det = -(ga * c - gb * b + gc * a) / (det * det)
            d_a += d_det * c
            d_c += d_det * a
            d_b -= 2.0 * b * d_det
        # cov = T T^T
        e00, e01, e02 = 2 * d_a * t00 + d_b * t10, 2 * d_a * t01 + d_b * t11, 2 * d_a * t02 + d_b * t12
        e10, e11, e12 = d_b * t00 + 2 * d_c * t10, d_b * t01 + 2 * d_c * t11, d_b * t02 + 2 * d_c * t12
        # T = J M
        d_j00 = e00 * m[0] + e01 * m[1] + e02 * m[2]
        d_j02 = e00 * m[6] + e01 * m[7] + e02 * m[8]
        d_j11 = e10 * m[3] + e11 * m[4] + e12 * m[5]
        d_j12 = e10 * m[6] + e11 * m[7] + e12 * m[8]
        # d M[row, k] = J[:, row] . d T[:, k]; M = rot W, W = Rq S: d W = rot^T d M
        dm = (j00 * e00, j00 * e01, j00 * e02, j11 * e10, j11 * e11, j11 * e12,
              j02 * e00 + j12 * e10, j02 * e01 + j12 * e11, j02 * e02 + j12 * e12)
        dw = (rot[0, 0] * dm[0] + rot[1, 0] * dm[3] + rot[2, 0] * dm[6],
              rot[0, 0] * dm[1] + rot[1, 0] * dm[4] + rot[2, 0] * dm[7],
              rot[0, 0] * dm[2] + rot[1, 0] * dm[5] + rot[2, 0] * dm[8],
              rot[0, 1] * dm[0] + rot[1, 1] * dm[3] + rot[2, 1] * dm[6],
              rot[0, 1] * dm[1] + rot[1, 1] * dm[4] + rot[2, 1] * dm[7],
              rot[0, 1] * dm[2] + rot[1, 1] * dm[5] + rot[2, 1] * dm[8],
              rot[0, 2] * dm[0] + rot[1, 2] * dm[3] + rot[2, 2] * dm[6],
              rot[0, 2] * dm[1] + rot[1, 2] * dm[4] + rot[2, 2] * dm[7],
              rot[0, 2] * dm[2] + rot[1, 2] * dm[5] + rot[2, 2] * dm[8])
        d_log_scales[i, 0] = (dw[0] * r[0] + dw[3] * r[3] + dw[6] * r[6]) * s0
        d_log_scales[i, 1] = (dw[1] * r[1] + dw[4] * r[4] + dw[7] * r[7]) * s1
        d_log_scales[i, 2] = (dw[2] * r[2] + dw[5] * r[5] + dw[8] * r[8]) * s2
        g = (dw[0] * s0, dw[1] * s1, dw[2] * s2, dw[3] * s0, dw[4] * s1, dw[5] * s2, dw[6] * s0, dw[7] * s1,
             dw[8] * s2)  # d Rq
        dqw = 2 * (-qz * g[1] + qy * g[2] + qz * g[3] - qx * g[5] - qy * g[6] + qx * g[7])
        dqx = 2 * (qy * g[1] + qz * g[2] + qy * g[3] - 2 * qx * g[4] - qw * g[5] + qz * g[6] + qw * g[7] - 2 * qx * g[8])
        dqy = 2 * (-2 * qy * g[0] + qx * g[1] + qw * g[2] + qx * g[3] + qz * g[5] - qw * g[6] + qz * g[7] - 2 * qy * g[8])
        dqz = 2 * (-2 * qz * g[0] - qw * g[1] + qx * g[2] + qw * g[3] - 2 * qz * g[4] + qy * g[5] + qx * g[6] + qy * g[7])
        dot = qw * dqw + qx * dqx + qy * dqy + qz * dqz  # through the normalization
        d_quats[i, 0] = (dqw - qw * dot) / qn
        d_quats[i, 1] = (dqx - qx * dot) / qn
        d_quats[i, 2] = (dqy - qy * dot) / qn
        d_quats[i, 3] = (dqz - qz * dot) / qn
        # the screen mean, the depth and J's entries as functions of the camera-space point
        du, dv = d_means2d[i, 0], d_means2d[i, 1]
        zz = z * z
        d_x = du * fx / z
        d_y = dv * fy / z
        d_z = -du * fx * x / zz - dv * fy * y / zz + d_depths[i]
        d_z += -d_j00 * fx / zz - d_j11 * fy / zz + 2.0 * (d_j02 * fx * tx + d_j12 * fy * ty) / (zz * z)
        d_tx, d_ty = -d_j02 * fx / zz, -d_j12 * fy / zz
        if lo_x <= rx <= hi_x:  # tx = x; clamped: tx = z * limit
            d_x += d_tx
        else:
            d_z += d_tx * cx_
        if lo_y <= ry <= hi_y:
            d_y += d_ty
        else:
            d_z += d_ty * cy_
        for k in range(3):
            d_means[i, k] = rot[0, k] * d_x + rot[1, k] * d_y + rot[2, k] * d_z
        o = 1.0 / (1.0 + math.exp(-logits[i]))
        d_logits[i] = d_opacities[i] * o * (1.0 - o)


# ----------------------------------------------------------------------------- compositing

@numba.njit(cache=True)
def _pixel_box(mx, my, ex, ey, x0, y0, x1, y1):  # type: ignore[no-untyped-def]
    """Pixel range [ax, bx) x [ay, by) of the footprint box, clipped to the tile [x0, x1) x [y0, y1)."""
    ax = max(x0, int(math.floor(mx - ex - FOOTPRINT_PAD)))
    bx = min(x1, int(math.ceil(mx + ex + FOOTPRINT_PAD)) + 1)
    ay = max(y0, int(math.floor(my - ey - FOOTPRINT_PAD)))
    by = min(y1, int(math.ceil(my + ey + FOOTPRINT_PAD)) + 1)
    return ax, bx, ay, by


# Both passes walk a tile's pixels and its Gaussians through these three, so the backward recomputes
# exactly the weights the forward composited.

@numba.njit(cache=True)
def _tile_box(t, tiles_x, ts, width, height):  # type: ignore[no-untyped-def]
    """Pixel range [x0, x1) x [y0, y1) of tile t."""
    x0, y0 = (t % tiles_x) * ts, (t // tiles_x) * ts
    return x0, y0, min(x0 + ts, width), min(y0 + ts, height)


@numba.njit(cache=True)
def _footprint(gi, means2d, conics, opacities, extent, x0, y0, x1, y1):  # type: ignore[no-untyped-def]
    """Gaussian gi on screen: mean, conic, opacity, the sigma past which it is under 1/255, and its
    pixel box within the tile."""
    mx, my, o = means2d[gi, 0], means2d[gi, 1], opacities[gi]
    ax, bx, ay, by = _pixel_box(mx, my, extent[gi, 0], extent[gi, 1], x0, y0, x1, y1)
    return (mx, my, conics[gi, 0], conics[gi, 1], conics[gi, 2], o, math.log(o / ALPHA_MIN) + SIGMA_SLACK,
            ax, bx, ay, by)


@numba.njit(cache=True)
def _raw_alpha(o, ca, cb, cc, sigma_cut, dx, dy):  # type: ignore[no-untyped-def]
    """The Gaussian's unclamped alpha at (dx, dy) from its mean; 0 where it does not count (past
    the cut, or under 1/255)."""
    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    if sigma < 0.0 or sigma > sigma_cut:
        return 0.0
    raw = o * math.exp(-sigma)
    return raw if raw >= ALPHA_MIN else 0.0


@numba.njit(parallel=True, cache=True)
def composite_forward(tile_start, pair_g, means2d, conics, opacities, features, extent, tiles_x, ts, width, height,
                      out, last):  # type: ignore[no-untyped-def]
    """out (H, W, 5) = sum of weight * (r, g, b, 1, depth) over a pixel's Gaussians front to back;
    last (H, W) = how many of its tile's pairs the pixel went through (last contributor + 1).
    features (M, 4) = r, g, b, depth."""
    n_tiles = tile_start.shape[0] - 1
    for t in numba.prange(n_tiles):
        x0, y0, x1, y1 = _tile_box(t, tiles_x, ts, width, height)
        tw = x1 - x0
        n_pixels = tw * (y1 - y0)
        trans = np.ones(ts * ts)
        acc = np.zeros((ts * ts, 5))
        count = np.zeros(ts * ts, np.int32)
        done = np.zeros(ts * ts, np.bool_)
        n_done = 0
        start = tile_start[t]
        for k in range(start, tile_start[t + 1]):
            if n_done == n_pixels:  # every pixel of the tile is saturated
                break
            gi = pair_g[k]
            mx, my, ca, cb, cc, o, sigma_cut, ax, bx, ay, by = _footprint(gi, means2d, conics, opacities, extent,
                                                                          x0, y0, x1, y1)
            for py in range(ay, by):
                dy = py + 0.5 - my
                for px in range(ax, bx):
                    j = (py - y0) * tw + (px - x0)
                    if done[j]:
                        continue
                    dx = px + 0.5 - mx
                    raw = _raw_alpha(o, ca, cb, cc, sigma_cut, dx, dy)
                    if raw == 0.0:
                        continue
                    alpha = min(ALPHA_MAX, raw)
                    next_t = trans[j] * (1.0 - alpha)
                    if next_t <= T_MIN:
                        done[j] = True
                        n_done += 1
                        continue
                    w = alpha * trans[j]
                    acc[j, 0] += w * features[gi, 0]
                    acc[j, 1] += w * features[gi, 1]
                    acc[j, 2] += w * features[gi, 2]
                    acc[j, 3] += w
                    acc[j, 4] += w * features[gi, 3]
                    trans[j] = next_t
                    count[j] = k - start + 1
        for py in range(y0, y1):
            for px in range(x0, x1):
                j = (py - y0) * tw + (px - x0)
                for ch in range(5):
                    out[py, px, ch] = acc[j, ch]
                last[py, px] = count[j]


@numba.njit(parallel=True, cache=True)
def composite_backward(tile_start, pair_g, means2d, conics, opacities, features, extent, tiles_x, ts, width, height,
                       out, last, grad_out, pair_grads):  # type: ignore[no-untyped-def]
    """pair_grads (P, 10) per (tile, Gaussian) pair: d means2d (2), d conic (3), d opacity,
    d features (4), from grad_out (H, W, 5). Each pixel's transmittance is recomputed front to back
    exactly as the forward did; the colour behind a Gaussian is the pixel's total minus what was
    composited up to it."""
    n_tiles = tile_start.shape[0] - 1
    for t in numba.prange(n_tiles):
        x0, y0, x1, y1 = _tile_box(t, tiles_x, ts, width, height)
        tw = x1 - x0
        trans = np.ones(ts * ts)
        composited = np.zeros(ts * ts)  # sum so far of weight * dL/dweight
        total = np.zeros(ts * ts)  # the same over the whole pixel: grad_out . out
        done = np.zeros(ts * ts, np.bool_)
        start = tile_start[t]
        stop = start
        for py in range(y0, y1):
            for px in range(x0, x1):
                j = (py - y0) * tw + (px - x0)
                s = 0.0
                for ch in range(5):
                    s += grad_out[py, px, ch] * out[py, px, ch]
                total[j] = s
                stop = max(stop, start + last[py, px])
        for k in range(start, stop):
            gi = pair_g[k]
            mx, my, ca, cb, cc, o, sigma_cut, ax, bx, ay, by = _footprint(gi, means2d, conics, opacities, extent,
                                                                          x0, y0, x1, y1)
            fr, fg, fb, fd = features[gi, 0], features[gi, 1], features[gi, 2], features[gi, 3]
            g_mx = g_my = g_ca = g_cb = g_cc = g_o = g_r = g_g = g_b = g_d = 0.0
            for py in range(ay, by):
                dy = py + 0.5 - my
                for px in range(ax, bx):
                    j = (py - y0) * tw + (px - x0)
                    if done[j]:
                        continue
                    dx = px + 0.5 - mx
                    raw = _raw_alpha(o, ca, cb, cc, sigma_cut, dx, dy)
                    if raw == 0.0:
                        continue
                    alpha = min(ALPHA_MAX, raw)
                    next_t = trans[j] * (1.0 - alpha)
                    if next_t <= T_MIN:
                        done[j] = True
                        continue
                    w = alpha * trans[j]
                    gr, gg, gb = grad_out[py, px, 0], grad_out[py, px, 1], grad_out[py, px, 2]
                    ga, gd = grad_out[py, px, 3], grad_out[py, px, 4]
                    d_w = gr * fr + gg * fg + gb * fb + ga + gd * fd
                    g_r += w * gr
                    g_g += w * gg
                    g_b += w * gb
                    g_d += w * gd
                    composited[j] += d_w * w
                    # alpha scales its own weight and the transmittance of every later Gaussian of the pixel
                    d_alpha = d_w * trans[j] - (total[j] - composited[j]) / (1.0 - alpha)
                    trans[j] = next_t
                    if raw >= ALPHA_MAX:  # clamped: no gradient to the Gaussian
                        continue
                    g_o += d_alpha * alpha / o
                    d_sigma = -d_alpha * alpha
                    g_ca += d_sigma * 0.5 * dx * dx
                    g_cb += d_sigma * dx * dy
                    g_cc += d_sigma * 0.5 * dy * dy
                    g_mx -= d_sigma * (ca * dx + cb * dy)
                    g_my -= d_sigma * (cc * dy + cb * dx)
            pair_grads[k, 0], pair_grads[k, 1] = g_mx, g_my
            pair_grads[k, 2], pair_grads[k, 3], pair_grads[k, 4] = g_ca, g_cb, g_cc
            pair_grads[k, 5] = g_o
            pair_grads[k, 6], pair_grads[k, 7], pair_grads[k, 8], pair_grads[k, 9] = g_r, g_g, g_b, g_d


# ----------------------------------------------------------------------------- view-dependent colour

@numba.njit(cache=True)
def _sh_terms(x, y, z, out):  # type: ignore[no-untyped-def]
    """The 16 real SH basis values (3DGS's signs and constants) along the unit (x, y, z), and their
    partial derivatives out[k, 1:4]."""
    c1 = SH_C1
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    out[0, 0], out[0, 1], out[0, 2], out[0, 3] = SH_C0, 0.0, 0.0, 0.0
    out[1, 0], out[1, 1], out[1, 2], out[1, 3] = -c1 * y, 0.0, -c1, 0.0
    out[2, 0], out[2, 1], out[2, 2], out[2, 3] = c1 * z, 0.0, 0.0, c1
    out[3, 0], out[3, 1], out[3, 2], out[3, 3] = -c1 * x, -c1, 0.0, 0.0
    a, b, c, d, e = SH_C2
    out[4, 0], out[4, 1], out[4, 2], out[4, 3] = a * xy, a * y, a * x, 0.0
    out[5, 0], out[5, 1], out[5, 2], out[5, 3] = b * yz, 0.0, b * z, b * y
    out[6, 0], out[6, 1], out[6, 2], out[6, 3] = c * (2 * zz - xx - yy), -2 * c * x, -2 * c * y, 4 * c * z
    out[7, 0], out[7, 1], out[7, 2], out[7, 3] = d * xz, d * z, 0.0, d * x
    out[8, 0], out[8, 1], out[8, 2], out[8, 3] = e * (xx - yy), 2 * e * x, -2 * e * y, 0.0
    f, g, h, i, j, k, m = SH_C3
    out[9, 0], out[9, 1], out[9, 2], out[9, 3] = f * y * (3 * xx - yy), 6 * f * xy, f * (3 * xx - 3 * yy), 0.0
    out[10, 0], out[10, 1], out[10, 2], out[10, 3] = g * xy * z, g * yz, g * xz, g * xy
    out[11, 0], out[11, 1], out[11, 2], out[11, 3] = (h * y * (4 * zz - xx - yy), -2 * h * xy,
                                                      h * (4 * zz - xx - 3 * yy), 8 * h * yz)
    out[12, 0], out[12, 1], out[12, 2], out[12, 3] = (i * z * (2 * zz - 3 * xx - 3 * yy), -6 * i * xz, -6 * i * yz,
                                                      i * (6 * zz - 3 * xx - 3 * yy))
    out[13, 0], out[13, 1], out[13, 2], out[13, 3] = (j * x * (4 * zz - xx - yy), j * (4 * zz - 3 * xx - yy),
                                                      -2 * j * xy, 8 * j * xz)
    out[14, 0], out[14, 1], out[14, 2], out[14, 3] = k * z * (xx - yy), 2 * k * xz, -2 * k * yz, k * (xx - yy)
    out[15, 0], out[15, 1], out[15, 2], out[15, 3] = m * x * (xx - 3 * yy), m * (3 * xx - 3 * yy), -6 * m * xy, 0.0


@numba.njit(parallel=True, cache=True)
def sh_forward(means, sh, index, centre, n_coeffs, colors):  # type: ignore[no-untyped-def]
    """colors (M, 3) = max(basis(dir) . sh[index] + 0.5, 0) over the first n_coeffs coefficients,
    dir = the unit vector from the camera centre to the mean."""
    for mi in numba.prange(index.shape[0]):
        gi = index[mi]
        terms = np.empty((16, 4))
        vx, vy, vz = means[gi, 0] - centre[0], means[gi, 1] - centre[1], means[gi, 2] - centre[2]
        norm = max(math.sqrt(vx * vx + vy * vy + vz * vz), 1e-12)
        _sh_terms(vx / norm, vy / norm, vz / norm, terms)
        for ch in range(3):
            s = 0.5
            for k in range(n_coeffs):
                s += terms[k, 0] * sh[gi, k, ch]
            colors[mi, ch] = max(s, 0.0)


@numba.njit(parallel=True, cache=True)
def sh_backward(means, sh, index, centre, n_coeffs, d_colors, d_means, d_sh):  # type: ignore[no-untyped-def]
    """Gradients of sh_forward to the coefficients and (through the view direction) to the means."""
    for mi in numba.prange(index.shape[0]):
        gi = index[mi]
        terms = np.empty((16, 4))
        vx, vy, vz = means[gi, 0] - centre[0], means[gi, 1] - centre[1], means[gi, 2] - centre[2]
        norm = max(math.sqrt(vx * vx + vy * vy + vz * vz), 1e-12)
        x, y, z = vx / norm, vy / norm, vz / norm
        _sh_terms(x, y, z, terms)
        gx = gy = gz = 0.0
        for ch in range(3):
            s = 0.5
            for k in range(n_coeffs):
                s += terms[k, 0] * sh[gi, k, ch]
            if s < 0.0:  # clamped at 0
                continue
            g = d_colors[mi, ch]
            for k in range(n_coeffs):
                d_sh[gi, k, ch] += terms[k, 0] * g
                gc = g * sh[gi, k, ch]
                gx += gc * terms[k, 1]
                gy += gc * terms[k, 2]
                gz += gc * terms[k, 3]
        dot = x * gx + y * gy + z * gz  # through the normalization
        d_means[gi, 0] += (gx - x * dot) / norm
        d_means[gi, 1] += (gy - y * dot) / norm
        d_means[gi, 2] += (gz - z * dot) / norm
