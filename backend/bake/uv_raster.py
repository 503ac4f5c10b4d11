"""Rasterize a mesh's UV layout: which triangle (and where in it) each texel centre lies.

The texture's row 0 is its top (v = 1 in OpenGL-origin UVs), texel (r, c) has its centre at
u = (c + 0.5) / T, v = 1 - (r + 0.5) / T. Same candidate/scatter scheme as the PyTorch G-buffer
rasterizer, without depth: where UV islands overlap (mirrored or stacked charts) the texel goes
to the highest triangle id, deterministically. Texels outside [0, 1]^2 (tiling UVs) are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..assets.mesh import Mesh

_CANDIDATES_PER_CHUNK = 4_000_000


@dataclass(frozen=True)
class Texels:
    """The covered texels of a texture, each with its surface point."""

    size: int
    rows: np.ndarray  # (M,) int64
    cols: np.ndarray  # (M,) int64
    tri: np.ndarray  # (M,) int64 triangle index
    bary: np.ndarray  # (M, 3) float32
    position: np.ndarray  # (M, 3) float32 surface point
    normal: np.ndarray  # (M, 3) float32 geometric (face) normal

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def flat(self) -> np.ndarray:
        return self.rows * self.size + self.cols


def rasterize_uv(uvs: np.ndarray, faces: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangle id (T, T) int64 (-1 = no chart) and barycentrics (T, T, 3) float32 per texel."""
    uv = torch.as_tensor(np.asarray(uvs, dtype=np.float64))
    f = torch.as_tensor(np.asarray(faces, dtype=np.int64))
    px, py = uv[:, 0] * size, (1.0 - uv[:, 1]) * size  # texel-pixel coordinates, row 0 at the top
    fx, fy = px[f], py[f]
    area = (fx[:, 1] - fx[:, 0]) * (fy[:, 2] - fy[:, 0]) - (fx[:, 2] - fx[:, 0]) * (fy[:, 1] - fy[:, 0])
    tri_ids = torch.nonzero(area.abs() > 1e-12).squeeze(1)
    fx, fy = fx[tri_ids], fy[tri_ids]
    x0 = torch.ceil(fx.min(1).values - 0.5).clamp(min=0).long()
    x1 = torch.floor(fx.max(1).values - 0.5).clamp(max=size - 1).long()
    y0 = torch.ceil(fy.min(1).values - 0.5).clamp(min=0).long()
    y1 = torch.floor(fy.max(1).values - 0.5).clamp(max=size - 1).long()
    bw, bh = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    counts = bw * bh
    best = torch.full((size * size,), -1, dtype=torch.int64)
    cum = torch.cumsum(counts, 0)
    start = 0
    while start < len(tri_ids):
        base = int(cum[start - 1]) if start else 0
        end = max(int(torch.searchsorted(cum, base + _CANDIDATES_PER_CHUNK, right=True)), start + 1)
        n = counts[start:end]
        if int(n.sum()):
            local = torch.repeat_interleave(torch.arange(len(n)), n)
            offset = torch.arange(len(local)) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
            width = bw[start:end][local]
            xs = x0[start:end][local] + offset % width
            ys = y0[start:end][local] + offset // width
            b = _barycentrics(fx[start:end][local], fy[start:end][local], xs + 0.5, ys + 0.5)
            inside = (b >= -1e-9).all(1)
            best.scatter_reduce_(0, (ys * size + xs)[inside], tri_ids[start:end][local][inside], reduce="amax")
        start = end
    tri = best.view(size, size)
    bary = torch.zeros((size, size, 3), dtype=torch.float32)
    ys, xs = torch.nonzero(tri >= 0, as_tuple=True)
    if len(ys):
        corners = f[tri[ys, xs]]
        b = _barycentrics(px[corners], py[corners], xs + 0.5, ys + 0.5).clamp(min=0)
        bary[ys, xs] = (b / b.sum(1, keepdim=True)).float()
    return tri, bary


def _barycentrics(cx: torch.Tensor, cy: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Barycentrics (M, 3) of points (x, y) in triangles with corners (cx, cy) (M, 3), either winding."""
    e0 = (cx[:, 2] - cx[:, 1]) * (y - cy[:, 1]) - (cy[:, 2] - cy[:, 1]) * (x - cx[:, 1])
    e1 = (cx[:, 0] - cx[:, 2]) * (y - cy[:, 2]) - (cy[:, 0] - cy[:, 2]) * (x - cx[:, 2])
    e2 = (cx[:, 1] - cx[:, 0]) * (y - cy[:, 0]) - (cy[:, 1] - cy[:, 0]) * (x - cx[:, 0])
    area = e0 + e1 + e2
    return torch.stack([e0, e1, e2], 1) / torch.where(area.abs() < 1e-12, torch.ones_like(area), area)[:, None]


def texel_samples(mesh: Mesh, size: int) -> Texels:
    """The covered texels of a `size` x `size` texture on `mesh.uvs` with their surface points."""
    assert mesh.uvs is not None, "texel_samples needs a UV map"
    tri, bary = rasterize_uv(mesh.uvs, mesh.faces, size)
    rows, cols = (a.numpy() for a in torch.nonzero(tri >= 0, as_tuple=True))
    t = tri[rows, cols].numpy()
    b = bary[rows, cols].numpy()
    corners = mesh.positions[mesh.faces[t]]  # (M, 3, 3)
    position = np.einsum("mk,mkd->md", b, corners).astype(np.float32)
    normal = mesh.face_normals()[t]
    return Texels(size, rows.astype(np.int64), cols.astype(np.int64), t.astype(np.int64), b, position, normal)
