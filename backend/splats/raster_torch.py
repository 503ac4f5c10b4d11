"""Plain-PyTorch tiled Gaussian rasterizer: the CPU path and the reference for gsplat.

Same image model as 3DGS / gsplat (so the two agree on one scene): EWA projection of each
Gaussian to a 2D screen-space Gaussian with a 0.3 px^2 low-pass, per-pixel front-to-back alpha
compositing with alpha = min(0.999, o * exp(-sigma)), contributions below 1/255 skipped and a
pixel finished once its transmittance would fall to 1e-4.

How it runs on a CPU: Gaussians are sorted by depth once; each is listed in every tile of
`tile_size` x `tile_size` pixels its alpha >= 1/255 footprint touches; the (tile, Gaussian) pairs
are ordered by tile, keeping depth order inside a tile. Every pair is evaluated on all pixels of
its tile as one dense (pairs, tile pixels) block, and the transmittance in front of each pair is
a segmented exclusive cumulative sum of log(1 - alpha) along the pairs of its tile. Everything is
torch ops; the compositing's gradient is written out (`Composite`), the projection's is autograd's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..assets.cameras import Camera
from .model import Gaussians

NEAR_PLANE = 0.01
EPS_2D = 0.3  # px^2 added to every projected covariance (anti-aliasing low-pass, as in 3DGS)
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
TILE_SIZE = 4  # on a CPU small tiles waste fewer evaluations than they cost in extra pairs

_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


@dataclass
class Render:
    """One view. `means2d` / `visible` / `radii` feed densification: means2d is the screen
    position (M, 2) of the visible Gaussians `visible` (indices into the model), kept in the graph
    so its gradient can be read (call retain_grad() before backward)."""

    color: torch.Tensor  # (H, W, 3) composited over the background
    alpha: torch.Tensor  # (H, W) accumulated opacity
    depth: torch.Tensor  # (H, W) alpha-weighted depth (divide by alpha for the surface depth)
    means2d: torch.Tensor  # (M, 2)
    visible: torch.Tensor  # (M,) long
    radii: torch.Tensor  # (M,) float pixel radius of the footprint


def camera_tensors(camera: Camera, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World-to-camera rotation and translation in the OpenCV convention (+Z forward, +Y down), and
    the camera centre; the image model's pinhole is then u = fx x/z + cx, v = fy y/z + cy."""
    flip = np.diag([1.0, -1.0, -1.0])
    w2c = camera.w2c()
    rot = torch.as_tensor(flip @ w2c[:3, :3], dtype=dtype, device=device)
    trans = torch.as_tensor(flip @ w2c[:3, 3], dtype=dtype, device=device)
    centre = torch.as_tensor(camera.position, dtype=dtype, device=device)
    return rot, trans, centre


def eval_sh(sh: torch.Tensor, dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Colour (N, 3) of SH coefficients (N, K, 3) along unit directions (N, 3) (3DGS convention:
    + 0.5, clamped at 0)."""
    out = _SH_C0 * sh[:, 0]
    if degree > 0:
        x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
        out = out - _SH_C1 * y * sh[:, 1] + _SH_C1 * z * sh[:, 2] - _SH_C1 * x * sh[:, 3]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            out = (out + _SH_C2[0] * xy * sh[:, 4] + _SH_C2[1] * yz * sh[:, 5]
                   + _SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6] + _SH_C2[3] * xz * sh[:, 7]
                   + _SH_C2[4] * (xx - yy) * sh[:, 8])
            if degree > 2:
                out = (out + _SH_C3[0] * y * (3 * xx - yy) * sh[:, 9] + _SH_C3[1] * xy * z * sh[:, 10]
                       + _SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                       + _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                       + _SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + _SH_C3[5] * z * (xx - yy) * sh[:, 14]
                       + _SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15])
    return torch.clamp_min(out + 0.5, 0.0)


@dataclass
class Projection:
    visible: torch.Tensor  # (M,) indices into the model, sorted front to back
    means2d: torch.Tensor  # (M, 2) pixels
    conics: torch.Tensor  # (M, 3) inverse 2D covariance (a, b, c)
    depths: torch.Tensor  # (M,)
    opacities: torch.Tensor  # (M,)
    colors: torch.Tensor  # (M, 3)
    extent: torch.Tensor  # (M, 2) half-size in pixels of the alpha >= 1/255 footprint's box


def project(g: Gaussians, camera: Camera, sh_degree: int | None = None) -> Projection:
    """EWA projection of the Gaussians in front of the camera whose footprint meets the image."""
    dev = g.device
    rot, trans, centre = camera_tensors(camera, dev, g.means.dtype)
    w, h, fx, fy, cx, cy = camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy
    with torch.no_grad():
        z_all = g.means.detach() @ rot[2] + trans[2]
        candidates = torch.nonzero((z_all > NEAR_PLANE) & (g.opacity_logits.detach() > math.log(ALPHA_MIN / (1 - ALPHA_MIN))))[:, 0]
    means = g.means[candidates]
    mc = means @ rot.T + trans
    x, y, z = mc.unbind(-1)
    # clamp the Jacobian's evaluation point to 1.3x the field of view (3DGS), for stability at the edges
    lim_x = 0.3 * 0.5 * w / fx
    lim_y = 0.3 * 0.5 * h / fy
    tx = z * torch.clamp(x / z, -(cx / fx + lim_x), (w - cx) / fx + lim_x)
    ty = z * torch.clamp(y / z, -(cy / fy + lim_y), (h - cy) / fy + lim_y)
    zeros = torch.zeros_like(z)
    jac = torch.stack([torch.stack([fx / z, zeros, -fx * tx / (z * z)], -1),
                       torch.stack([zeros, fy / z, -fy * ty / (z * z)], -1)], -2)  # (M, 2, 3)
    rs = (rot @ g.rotations()[candidates]) * g.scales()[candidates][:, None, :]
    jrs = jac @ rs
    cov = jrs @ jrs.transpose(1, 2)
    a = cov[:, 0, 0] + EPS_2D
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + EPS_2D
    det = (a * c - b * b).clamp_min(1e-12)
    conics = torch.stack([c / det, -b / det, a / det], -1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    opac = torch.sigmoid(g.opacity_logits[candidates])
    with torch.no_grad():
        # the box where o * exp(-sigma) >= 1/255: sigma <= ln(255 o), sigma = d^T C^-1 d / 2
        reach = 2.0 * torch.log(opac.detach() / ALPHA_MIN).clamp_min(0.0)
        extent = torch.stack([torch.sqrt(reach * a.detach()), torch.sqrt(reach * c.detach())], -1)
        m2 = means2d.detach()
        on_screen = ((m2[:, 0] + extent[:, 0] > 0) & (m2[:, 0] - extent[:, 0] < w)
                     & (m2[:, 1] + extent[:, 1] > 0) & (m2[:, 1] - extent[:, 1] < h) & (reach > 0))
        keep = torch.nonzero(on_screen)[:, 0]
        keep = keep[torch.argsort(z.detach()[keep], stable=True)]
    visible = candidates[keep]
    degree = g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)
    dirs = torch.nn.functional.normalize(g.means[visible] - centre, dim=-1)
    colors = eval_sh(g.sh[visible], dirs, degree)
    return Projection(visible, means2d[keep], conics[keep], z[keep], opac[keep], colors, extent[keep])


def render(g: Gaussians, camera: Camera, background: tuple[float, float, float] | torch.Tensor = (1.0, 1.0, 1.0),
           sh_degree: int | None = None, tile_size: int = TILE_SIZE) -> Render:
    """Render one view of the Gaussians (differentiable w.r.t. every Gaussian tensor)."""
    dev = g.device
    w, h, ts = camera.width, camera.height, tile_size
    bg = torch.as_tensor(background, dtype=g.means.dtype, device=dev).reshape(3)
    p = project(g, camera, sh_degree)
    tiles_x, tiles_y = -(-w // ts), -(-h // ts)
    n_tiles = tiles_x * tiles_y
    pair_g, pair_tile = _tile_pairs(p, ts, tiles_x, tiles_y, w, h)

    lx = torch.arange(ts * ts, device=dev, dtype=g.means.dtype) % ts
    ly = torch.div(torch.arange(ts * ts, device=dev), ts, rounding_mode='floor').to(g.means.dtype)
    px = ((pair_tile % tiles_x) * ts)[:, None] + lx[None] + 0.5  # (P, ts*ts) pixel centres
    py = ((pair_tile // tiles_x) * ts)[:, None] + ly[None] + 0.5
    counts = torch.bincount(pair_tile, minlength=n_tiles)
    seg_start = (torch.cumsum(counts, 0) - counts).index_select(0, pair_tile)
    seg_end = seg_start + counts.index_select(0, pair_tile)
    tiles_rgbad = Composite.apply(p.means2d, p.conics, p.opacities, p.colors, p.depths,
                                  pair_g, pair_tile, px, py, seg_start, seg_end, n_tiles)
    image = tiles_rgbad.reshape(tiles_y, tiles_x, ts, ts, 5).permute(0, 2, 1, 3, 4).reshape(tiles_y * ts, tiles_x * ts, 5)
    image = image[:h, :w]
    alpha_img = image[..., 3]
    color = image[..., :3] + (1.0 - alpha_img)[..., None] * bg
    radii = p.extent.max(-1).values
    return Render(color, alpha_img, image[..., 4], p.means2d, p.visible, radii)


def _segment_sum_before(x: torch.Tensor, seg_start: torch.Tensor) -> torch.Tensor:
    """out[p] = sum of x[q] for seg_start[p] <= q < p along dim 0 (a segment's rows are contiguous),
    summed in float64 so the running sum over all segments keeps the small terms."""
    excl = torch.cumsum(x.double(), 0) - x.double()
    return excl - excl.index_select(0, seg_start)


def _segment_sum_after(x: torch.Tensor, seg_end: torch.Tensor) -> torch.Tensor:
    """out[p] = sum of x[q] for p < q < seg_end[p] along dim 0."""
    x = x.double()
    rev = torch.flip(torch.cumsum(torch.flip(x, [0]), 0), [0])  # rev[q] = sum of x[q:]
    rev = torch.cat([rev, rev.new_zeros((1,) + rev.shape[1:])])
    return rev[:-1] - x - rev.index_select(0, seg_end)


class Composite(torch.autograd.Function):
    """Front-to-back alpha compositing of (Gaussian, tile) pairs over their tile's pixels, with the
    gradient written out (as 3DGS's backward kernel does) instead of taped by autograd: only the
    per-pixel alphas and transmittances are kept for the backward pass.

    Per pair p and pixel j: alpha = min(0.999, o exp(-sigma)) (0 when sigma < 0 or alpha < 1/255),
    T = prod over earlier pairs of its tile of (1 - alpha), weight = alpha T while T (1 - alpha) > 1e-4.
    Output per tile pixel: (sum w rgb, sum w, sum w depth)."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, pair_g, pair_tile, px, py,  # type: ignore[override]
                seg_start, seg_end, n_tiles):
        mean, conic = means2d.index_select(0, pair_g), conics.index_select(0, pair_g)
        dx, dy = px - mean[:, 0:1], py - mean[:, 1:2]
        sigma = 0.5 * (conic[:, 0:1] * dx * dx + conic[:, 2:3] * dy * dy) + conic[:, 1:2] * dx * dy
        raw = opacities.index_select(0, pair_g)[:, None] * torch.exp(-sigma)
        valid = (sigma >= 0) & (raw >= ALPHA_MIN)
        alpha = torch.where(valid, raw.clamp_max(ALPHA_MAX), torch.zeros_like(raw))
        log_t = torch.log1p(-alpha)
        before = _segment_sum_before(log_t, seg_start)
        alive = (before + log_t) > math.log(T_MIN)  # the pixel stops before T would reach 1e-4
        trans = torch.exp(before).to(alpha.dtype)
        weight = alpha * trans * alive
        contrib = torch.cat([weight[..., None] * colors.index_select(0, pair_g)[:, None, :], weight[..., None],
                             (weight * depths.index_select(0, pair_g)[:, None])[..., None]], -1)
        out = torch.zeros(n_tiles, px.shape[1], 5, dtype=weight.dtype, device=weight.device)
        out.index_add_(0, pair_tile, contrib)
        ctx.save_for_backward(means2d, conics, opacities, colors, depths, pair_g, pair_tile, px, py, seg_end,
                              alpha, trans, alive, valid & (raw < ALPHA_MAX))
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (means2d, conics, opacities, colors, depths, pair_g, pair_tile, px, py, seg_end,
         alpha, trans, alive, free) = ctx.saved_tensors
        g = grad_out.index_select(0, pair_tile)  # (P, S, 5)
        col, dep = colors.index_select(0, pair_g), depths.index_select(0, pair_g)
        weight = alpha * trans * alive
        d_weight = (g[..., :3] * col[:, None, :]).sum(-1) + g[..., 3] + g[..., 4] * dep[:, None]
        d_col = (weight[..., None] * g[..., :3]).sum(1)
        d_dep = (weight * g[..., 4]).sum(1)
        # alpha_p scales its own weight and the transmittance of every later pair q of the tile:
        # d w_q / d alpha_p = -w_q / (1 - alpha_p)
        later = _segment_sum_after(d_weight * weight, seg_end).to(alpha.dtype)
        d_alpha = (d_weight * trans * alive - later / (1.0 - alpha)) * free
        mean, conic = means2d.index_select(0, pair_g), conics.index_select(0, pair_g)
        opac = opacities.index_select(0, pair_g)
        dx, dy = px - mean[:, 0:1], py - mean[:, 1:2]
        d_raw = d_alpha * alpha  # alpha = o exp(-sigma) where free
        d_opac = d_raw.sum(1) / opac
        d_sigma = -d_raw
        a, b, c = conic[:, 0:1], conic[:, 1:2], conic[:, 2:3]
        d_conic = torch.stack([(d_sigma * 0.5 * dx * dx).sum(1), (d_sigma * dx * dy).sum(1),
                               (d_sigma * 0.5 * dy * dy).sum(1)], -1)
        d_mean = torch.stack([-(d_sigma * (a * dx + b * dy)).sum(1), -(d_sigma * (c * dy + b * dx)).sum(1)], -1)
        m = means2d.shape[0]

        def scatter(values: torch.Tensor) -> torch.Tensor:
            return values.new_zeros((m,) + values.shape[1:]).index_add_(0, pair_g, values)

        return (scatter(d_mean), scatter(d_conic), scatter(d_opac), scatter(d_col), scatter(d_dep),
                None, None, None, None, None, None, None)


@torch.no_grad()
def _tile_pairs(p: Projection, ts: int, tiles_x: int, tiles_y: int, w: int, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Gaussian, tile) pairs ordered by tile, front to back inside a tile."""
    dev = p.means2d.device
    m = p.means2d
    # pixel index ranges whose centres (i + 0.5) lie inside the footprint box
    x0 = torch.ceil(m[:, 0] - p.extent[:, 0] - 0.5).clamp(0, w - 1).long() // ts
    x1 = torch.floor(m[:, 0] + p.extent[:, 0] - 0.5).clamp(0, w - 1).long() // ts
    y0 = torch.ceil(m[:, 1] - p.extent[:, 1] - 0.5).clamp(0, h - 1).long() // ts
    y1 = torch.floor(m[:, 1] + p.extent[:, 1] - 0.5).clamp(0, h - 1).long() // ts
    nx, ny = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    counts = nx * ny
    gid = torch.repeat_interleave(torch.arange(len(m), device=dev), counts)
    offset = torch.arange(len(gid), device=dev) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    tile = (y0[gid] + offset // nx[gid]) * tiles_x + x0[gid] + offset % nx[gid]
    tile, order = torch.sort(tile, stable=True)  # stable: Gaussians stay front to back inside a tile
    return gid[order], tile
