"""The `optimize` method: the texture fitted by gradient descent so that renders match the views.

Geometry is fixed, so rasterization happens once (PyTorch/moderngl on CPU, nvdiffrast on CUDA):
every valid pixel knows its UV, and a render of a texture is a bilinear lookup at those UVs,
which is differentiable in the texture. The texture is a Laplacian-pyramid sum of levels (T, T/2,
..., 16), so texels that no pixel centre lands on still get gradients through the coarse
levels (views usually have fewer pixels on the surface than the texture has texels). L1 loss,
Adam, random pixel batches.
"""
from __future__ import annotations

import math

import torch

from ..progress import Progress, no_progress

_BATCH = 1 << 18
_COARSEST = 16


def _grid(uv: torch.Tensor) -> torch.Tensor:
    """UVs (M, 2) (OpenGL origin) -> grid_sample coordinates (1, 1, M, 2), row 0 = v 1."""
    return torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], 1)[None, None]


def _lookup(levels: list[torch.Tensor], grid: torch.Tensor) -> torch.Tensor:
    out = 0
    for level in levels:
        out = out + torch.nn.functional.grid_sample(level, grid, mode="bilinear", padding_mode="border",
                                                    align_corners=False)
    return out[0, :, 0].T  # (M, C)


def optimize_texture(uv: torch.Tensor, colour: torch.Tensor, size: int, steps: int,
                     texel_uv: torch.Tensor, progress: Progress = no_progress,
                     seed: int = 0) -> torch.Tensor:
    """Fit a texture to samples (uv (S, 2), colour (S, C)); return its values at `texel_uv` (M, 2)."""
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    uv, colour = uv.to(device), colour.to(device)
    c = colour.shape[1]
    sizes = []
    s = size
    while s >= _COARSEST:
        sizes.append(s)
        s //= 2
    sizes = sizes or [size]
    levels = [torch.zeros((1, c, s, s), device=device, requires_grad=True) for s in sizes]
    with torch.no_grad():
        levels[-1] += colour.mean(0)[None, :, None, None]
    opt = torch.optim.Adam(levels, lr=0.02)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)) * 0.9 + 0.1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(uv), (min(_BATCH, len(uv)),), generator=gen).to(device)
        pred = _lookup(levels, _grid(uv[idx]))
        loss = (pred - colour[idx]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress((step + 1) / steps, "optimizing texture")
    with torch.no_grad():
        out = torch.cat([_lookup(levels, _grid(part.to(device))) for part in texel_uv.split(1 << 20)])
    return out.clamp(0, 1).cpu()


def touched_texels(uv: torch.Tensor, size: int) -> torch.Tensor:
    """(T, T) bool: texels whose bilinear footprint some sample lands in (what the views constrain)."""
    x = (uv[:, 0] * size - 0.5).clamp(0, size - 1)
    y = ((1 - uv[:, 1]) * size - 0.5).clamp(0, size - 1)
    hit = torch.zeros(size * size, dtype=torch.bool)
    for dx in (0, 1):
        for dy in (0, 1):
            xi = (x.floor().long() + dx).clamp(max=size - 1)
            yi = (y.floor().long() + dy).clamp(max=size - 1)
            hit[yi * size + xi] = True
    return hit.view(size, size)
