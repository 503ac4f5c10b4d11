"""Exact per-pixel barycentrics from a triangle-id image (shared by the hardware rasterizers).

GPU-style rasterizers (OpenGL, nvdiffrast) snap vertices to a sub-pixel grid (1/256 px), so a
pixel centre lying within a few thousandths of a pixel of an edge can go to the neighbouring
triangle, and their interpolated barycentrics carry that snapping error. This module takes their
triangle ids and redoes what the PyTorch reference does, in float64, from the exact projected
vertices: pixels whose centre is outside their triangle (and empty pixels touching covered ones)
pick, among the triangles of their 3x3 neighbourhood, the nearest one that contains the centre,
with the reference's tie rule (float32 depth, then lower id); barycentrics are the reference's
perspective-correct ones, by the same float64 formulas, so wherever ids agree every rasterizer
gives the same buffers to float64 rounding.
Works batched over views and on any torch device.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..assets.cameras import Camera

_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def project_vertices(positions: torch.Tensor, cameras: Sequence[Camera]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel x, pixel y and view depth (N, V) float64 of vertices (V, 3) in each camera."""
    dev = positions.device
    w2c = torch.as_tensor(np.stack([c.w2c() for c in cameras]), dtype=torch.float64, device=dev)
    intr = torch.as_tensor([[c.fx, c.fy, c.cx, c.cy] for c in cameras], dtype=torch.float64, device=dev)
    cam = positions.double()[None] @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
    z = -cam[..., 2]
    safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    px = intr[:, 0:1] * cam[..., 0] / safe + intr[:, 2:3]
    py = -intr[:, 1:2] * cam[..., 1] / safe + intr[:, 3:4]
    return px, py, z


def _screen(faces: torch.Tensor, px: torch.Tensor, py: torch.Tensor, view: torch.Tensor, tri: torch.Tensor,
            x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen-space barycentrics (M, 3) of pixel centres (x, y) in triangles `tri` of views `view`."""
    corners = faces[tri]
    v = view[:, None]
    cx, cy = px[v, corners], py[v, corners]
    e0 = (cx[:, 2] - cx[:, 1]) * (y - cy[:, 1]) - (cy[:, 2] - cy[:, 1]) * (x - cx[:, 1])
    e1 = (cx[:, 0] - cx[:, 2]) * (y - cy[:, 2]) - (cy[:, 0] - cy[:, 2]) * (x - cx[:, 2])
    e2 = (cx[:, 1] - cx[:, 0]) * (y - cy[:, 0]) - (cy[:, 1] - cy[:, 0]) * (x - cx[:, 0])
    area = e0 + e1 + e2
    ok = area.abs() >= 1e-12
    b = torch.stack([e0, e1, e2], 1) / torch.where(ok, area, torch.ones_like(area))[:, None]
    return b, ok & (b >= 0).all(1)


def resolve(tri: torch.Tensor, faces: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
            z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangle ids (N, H, W) from a snapping rasterizer -> exact ids (N, H, W) int32 and
    perspective-correct barycentrics (N, H, W, 3) float32. `faces` (F, 3) long; px, py, z (N, V)."""
    tri = tri.long().clone()
    covered = tri >= 0
    n, y, x = torch.nonzero(covered, as_tuple=True)
    b, inside = _screen(faces, px, py, n, tri[n, y, x], x + 0.5, y + 0.5)
    # suspects: covered pixels whose centre is outside their triangle, and empty pixels on the rim
    suspect = _dilate(covered) & ~covered
    suspect[n[~inside], y[~inside], x[~inside]] = True
    sn, sy, sx = torch.nonzero(suspect, as_tuple=True)
    if len(sn):
        padded = torch.nn.functional.pad(tri, (1, 1, 1, 1), value=-1)
        cand = torch.stack([padded[sn, sy + 1 + dy, sx + 1 + dx] for dy, dx in _NEIGHBOURS], 1)  # (S, 9)
        row, col = torch.nonzero(cand >= 0, as_tuple=True)
        cid = cand[row, col]
        cb, ok = _screen(faces, px, py, sn[row], cid, sx[row] + 0.5, sy[row] + 0.5)
        inv_depth = (cb / z[sn[row, None], faces[cid]]).sum(1)
        ok &= inv_depth > 0
        # the reference's order: float32 depth bits, then triangle id
        depth = (1.0 / inv_depth[ok]).float()
        key = (depth.view(torch.int32).long() << 32) | cid[ok]
        empty = torch.iinfo(torch.int64).max
        best = torch.full((len(sn),), empty, dtype=torch.int64, device=tri.device)
        best.scatter_reduce_(0, row[ok], key, reduce="amin")
        found = best != empty
        sn, sy, sx = sn[found], sy[found], sx[found]
        tri[sn, sy, sx] = best[found] & 0xFFFFFFFF
    else:
        sn = sy = sx = n[:0]
    bary = torch.zeros((*tri.shape, 3), dtype=torch.float32, device=tri.device)
    bary[n, y, x] = _perspective(b, inside, faces[tri[n, y, x]], z, n)
    if len(sn):  # pixels that changed triangle
        ids = tri[sn, sy, sx]
        cb, cin = _screen(faces, px, py, sn, ids, sx + 0.5, sy + 0.5)
        bary[sn, sy, sx] = _perspective(cb, cin, faces[ids], z, sn)
    return tri.int(), bary


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """3x3 dilation of (N, H, W) bool masks."""
    grown = mask.clone()
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    rows = grown.clone()
    grown[:, :, 1:] |= rows[:, :, :-1]
    grown[:, :, :-1] |= rows[:, :, 1:]
    return grown


def _perspective(b: torch.Tensor, inside: torch.Tensor, corners: torch.Tensor, z: torch.Tensor,
                 view: torch.Tensor) -> torch.Tensor:
    """Screen barycentrics (M, 3) -> perspective-correct float32 ones. A centre just outside its
    triangle (kept where no neighbour holds it) is clamped onto the triangle."""
    clamped = b.clamp(min=0)
    b = torch.where(inside[:, None], b, clamped / clamped.sum(1, keepdim=True).clamp(min=1e-30))
    persp = b / z[view[:, None], corners]
    return (persp / persp.sum(1, keepdim=True).clamp(min=1e-30)).float()
