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
from ..render.raster_torch import pixel_boxes

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
    coeff, ok = _edge_functions(px[f], py[f])
    tri_ids = torch.nonzero(ok).squeeze(1)
    fx, fy, coeff = px[f[tri_ids]], py[f[tri_ids]], coeff[tri_ids].float()
    x0, y0, bw, counts = pixel_boxes(fx, fy, size, size)
    best = torch.full((size * size,), -1, dtype=torch.int64)
    cum = torch.cumsum(counts, 0)
    start = 0
    while start < len(tri_ids):
        base = int(cum[start - 1]) if start else 0
        end = max(int(torch.searchsorted(cum, base + _CANDIDATES_PER_CHUNK, right=True)), start + 1)
        n = counts[start:end]
        if int(n.sum()):
            local = torch.repeat_interleave(torch.arange(start, end), n)
            offset = torch.arange(len(local)) - (cum[local] - counts[local] - base)
            width = bw[local]
            ys = y0[local] + offset // width
            xs = x0[local] + offset - (ys - y0[local]) * width
            b = _apply(coeff[local], xs.float() + 0.5, ys.float() + 0.5)
            inside = (b >= -1e-6).all(1)
            best.scatter_reduce_(0, (ys * size + xs)[inside], tri_ids[local[inside]], reduce="amax")
        start = end
    tri = best.view(size, size)
    bary = torch.zeros((size, size, 3), dtype=torch.float32)
    ys, xs = torch.nonzero(tri >= 0, as_tuple=True)
    if len(ys):
        full, _ = _edge_functions(px[f[tri[ys, xs]]], py[f[tri[ys, xs]]])
        b = _apply(full, xs.double() + 0.5, ys.double() + 0.5).clamp(min=0)
        bary[ys, xs] = (b / b.sum(1, keepdim=True).clamp(min=1e-12)).float()
    return tri, bary


def _edge_functions(cx: torch.Tensor, cy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per triangle (corners cx, cy (F, 3)) the matrix (F, 3, 3) with barycentrics = M @ (x, y, 1)
    for either winding, and whether the triangle has area."""
    area = (cx[:, 1] - cx[:, 0]) * (cy[:, 2] - cy[:, 0]) - (cx[:, 2] - cx[:, 0]) * (cy[:, 1] - cy[:, 0])
    ok = area.abs() > 1e-12
    inv = 1.0 / torch.where(ok, area, torch.ones_like(area))
    rows = []
    for k in range(3):  # b_k = edge function of the edge opposite corner k, over the area
        i, j = (k + 1) % 3, (k + 2) % 3
        a = -(cy[:, j] - cy[:, i])
        b = cx[:, j] - cx[:, i]
        c = (cy[:, j] - cy[:, i]) * cx[:, i] - (cx[:, j] - cx[:, i]) * cy[:, i]
        rows.append(torch.stack([a, b, c], 1) * inv[:, None])
    return torch.stack(rows, 1), ok


def _apply(m: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return m[:, :, 0] * x[:, None] + m[:, :, 1] * y[:, None] + m[:, :, 2]


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
