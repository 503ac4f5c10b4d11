"""Fast CPU Gaussian rasterizer: compiled (numba) projection and 16x16-tile compositing, each with
its hand-written backward, behind the same `render` interface as raster_torch.

The image model is raster_torch's, which stays the reference this one is tested against (images
and gradients): the same EWA projection and culling, the same (tile, Gaussian) pairs ordered by
tile and front to back inside a tile, alpha = min(0.999, o exp(-sigma)) skipped below 1/255, a
pixel finished once its transmittance would fall to 1e-4. What differs is how it runs:
- projection and view-dependent colour (SH): one pass over the Gaussians each in cpu_kernels
  (no per-op tensors), the colour on the visible Gaussians only;
- compositing: per tile, Gaussians front to back, each evaluated only on the pixels of its
  footprint box inside the tile, the tile stopping once all its pixels are saturated;
- backward: per tile again, recomputing each pixel's transmittance exactly as the forward did.
Kernels compute in float64 whatever the model's dtype; they compile on first use and are cached
beside cpu_kernels.py (`warm_up()` compiles them ahead: `build.py setup` calls it).
"""
from __future__ import annotations

import numpy as np
import torch

from ..assets.cameras import Camera
from . import cpu_kernels
from .model import Gaussians
from .raster_torch import Projection, Render, _tile_pairs, camera_tensors

TILE_SIZE = 16


def _f64(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())


class Project(torch.autograd.Function):
    """(means, log_scales, quats, opacity_logits) -> per Gaussian means2d (N, 2), conics (N, 3),
    depths (N,), opacities (N,); also (not differentiable) extent (N, 2) and visible (N,) bool."""

    @staticmethod
    def forward(ctx, means, log_scales, quats, logits, rot, trans, intr, width, height):  # type: ignore[override]
        n = means.shape[0]
        inputs = (_f64(means), _f64(log_scales), _f64(quats), _f64(logits))
        cam = (rot, trans, intr, width, height)
        means2d, conics, extent = np.zeros((n, 2)), np.zeros((n, 3)), np.zeros((n, 2))
        depths, opacities = np.zeros(n), np.zeros(n)
        visible = np.zeros(n, np.bool_)
        cpu_kernels.project_forward(*inputs, *cam, means2d, conics, depths, opacities, extent, visible)
        ctx.inputs, ctx.cam, ctx.visible = inputs, cam, visible
        dtype = means.dtype
        outs = [torch.from_numpy(a).to(dtype) for a in (means2d, conics, depths, opacities, extent)]
        vis = torch.from_numpy(visible)
        ctx.mark_non_differentiable(outs[4], vis)
        return (*outs, vis)

    @staticmethod
    def backward(ctx, d_means2d, d_conics, d_depths, d_opacities, _d_extent, _d_visible):  # type: ignore[override]
        means, log_scales, quats, logits = ctx.inputs
        grads = (np.zeros_like(means), np.zeros_like(log_scales), np.zeros_like(quats), np.zeros_like(logits))

        def arr(t: torch.Tensor | None, shape: tuple[int, ...]) -> np.ndarray:
            return np.zeros(shape) if t is None else _f64(t)

        n = means.shape[0]
        cpu_kernels.project_backward(means, log_scales, quats, logits, *ctx.cam, ctx.visible,
                                     arr(d_means2d, (n, 2)), arr(d_conics, (n, 3)), arr(d_depths, (n,)),
                                     arr(d_opacities, (n,)), *grads)
        dtype = (d_means2d if d_means2d is not None else d_conics).dtype
        return (*(torch.from_numpy(g).to(dtype) for g in grads), None, None, None, None, None)


def project(g: Gaussians, camera: Camera, sh_degree: int | None = None) -> Projection:
    """raster_torch.project's result (same culling, same front-to-back order), computed by the kernels."""
    rot, trans, centre = camera_tensors(camera, torch.device("cpu"), torch.float64)
    intr = np.array([camera.fx, camera.fy, camera.cx, camera.cy], np.float64)
    means2d, conics, depths, opacities, extent, visible = Project.apply(
        g.means, g.log_scales, g.quats, g.opacity_logits, rot.numpy(), trans.numpy(), intr,
        camera.width, camera.height)
    vis = torch.nonzero(visible)[:, 0]
    vis = vis[torch.argsort(depths.detach()[vis], stable=True)]
    degree = g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)
    colors = ShColor.apply(g.means, g.sh, vis, centre.numpy(), (degree + 1) ** 2)
    pick = lambda t: t.index_select(0, vis)  # noqa: E731
    return Projection(vis, pick(means2d), pick(conics), pick(depths), pick(opacities), colors, pick(extent))


def _native(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


class ShColor(torch.autograd.Function):
    """(means (N, 3), sh (N, K, 3)) -> colours (M, 3) of the Gaussians `index` (M,) seen from `centre`:
    max(SH basis(view direction) . coefficients + 0.5, 0) over the first `n_coeffs` coefficients
    (raster_torch.eval_sh). Computed in the model's dtype."""

    @staticmethod
    def forward(ctx, means, sh, index, centre, n_coeffs):  # type: ignore[override]
        arrays = (_native(means), _native(sh), _native(index), centre.astype(np.float64))
        colors = np.empty((len(index), 3), arrays[0].dtype)
        cpu_kernels.sh_forward(*arrays, n_coeffs, colors)
        ctx.arrays, ctx.n_coeffs = arrays, n_coeffs
        return torch.from_numpy(colors)

    @staticmethod
    def backward(ctx, d_colors):  # type: ignore[override]
        means, sh = ctx.arrays[0], ctx.arrays[1]
        d_means, d_sh = np.zeros_like(means), np.zeros_like(sh)
        cpu_kernels.sh_backward(*ctx.arrays, ctx.n_coeffs, _native(d_colors).astype(means.dtype), d_means, d_sh)
        return torch.from_numpy(d_means), torch.from_numpy(d_sh), None, None, None


class TileComposite(torch.autograd.Function):
    """Compositing of the projected, depth-sorted Gaussians over their tiles; output (H, W, 5):
    premultiplied rgb, alpha, alpha-weighted depth (what raster_torch.Composite gives, as an image)."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, pair_g, tile_start, extent,  # type: ignore[override]
                tiles_x, ts, width, height):
        arrays = (_f64(means2d), _f64(conics), _f64(opacities), _f64(torch.cat([colors, depths[:, None]], 1)),
                  _f64(extent))
        index = (np.ascontiguousarray(tile_start.numpy()), np.ascontiguousarray(pair_g.numpy()))
        out = np.empty((height, width, 5))
        last = np.empty((height, width), np.int32)
        cpu_kernels.composite_forward(*index, *arrays, tiles_x, ts, width, height, out, last)
        ctx.arrays, ctx.index, ctx.out, ctx.last = arrays, index, out, last  # out in float64 for the backward
        ctx.shape = (tiles_x, ts, width, height)
        ctx.pair_g, ctx.n = pair_g, means2d.shape[0]
        return torch.from_numpy(out).to(means2d.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        pair_grads = np.zeros((len(ctx.index[1]), 10))
        cpu_kernels.composite_backward(*ctx.index, *ctx.arrays, *ctx.shape, ctx.out, ctx.last, _f64(grad_out),
                                       pair_grads)
        grads = torch.zeros(ctx.n, 10, dtype=torch.float64).index_add_(0, ctx.pair_g, torch.from_numpy(pair_grads))
        grads = grads.to(grad_out.dtype)
        return (grads[:, 0:2], grads[:, 2:5], grads[:, 5], grads[:, 6:9], grads[:, 9],
                None, None, None, None, None, None, None)


def render(g: Gaussians, camera: Camera, background: tuple[float, float, float] | torch.Tensor = (1.0, 1.0, 1.0),
           sh_degree: int | None = None, tile_size: int = TILE_SIZE) -> Render:
    """Render one view of the Gaussians (differentiable w.r.t. every Gaussian tensor); CPU tensors."""
    if g.device.type != "cpu":
        raise ValueError("raster_cpu renders CPU tensors; use raster_torch or gsplat on other devices")
    w, h, ts = camera.width, camera.height, tile_size
    bg = torch.as_tensor(background, dtype=g.means.dtype).reshape(3)
    p = project(g, camera, sh_degree)
    tiles_x, tiles_y = -(-w // ts), -(-h // ts)
    pair_g, pair_tile = _tile_pairs(p, ts, tiles_x, tiles_y, w, h)
    counts = torch.bincount(pair_tile, minlength=tiles_x * tiles_y)
    tile_start = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    image = TileComposite.apply(p.means2d, p.conics, p.opacities, p.colors, p.depths, pair_g, tile_start,
                                p.extent, tiles_x, ts, w, h)
    alpha = image[..., 3]
    color = image[..., :3] + (1.0 - alpha)[..., None] * bg
    return Render(color, alpha, image[..., 4], p.means2d, p.visible, p.extent.max(-1).values)


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) on a tiny scene, forward and backward."""
    from ..assets.cameras import look_at

    cam = Camera.from_fov(look_at(np.array([0.0, 0.0, 1.5]), np.zeros(3), np.array([0.0, 1.0, 0.0])), 40.0, 8, 8)
    n = 2
    g = Gaussians(torch.zeros(n, 3), torch.full((n, 3), -2.0), torch.tensor([[1.0, 0.0, 0.0, 0.0]] * n),
                  torch.zeros(n), torch.zeros(n, 1, 3)).map(lambda t: t.requires_grad_(True))
    render(g, cam).color.sum().backward()
