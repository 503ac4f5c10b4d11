"""Consistent3DGen's thin SDF band: the front's unsigned distance, normalized to [-1, 1].

s(x) = clip(2 udf(x) / thickness - 1, -1, 1): -1 on the surface, 0 at thickness / 2, +1 beyond
`thickness`; the level set s = 0 is a closed shell of total thickness `thickness` around the
front (watertight even though the front is open). `cut_back_half` keeps the half of the shell
on the scanner's side, the part a 3D latent model is guided towards.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Grid:
    """A cubic grid of `size`^3 node centres covering [lo, lo + size * voxel)^3."""

    lo: np.ndarray  # (3,)
    voxel: float
    size: int

    @classmethod
    def around(cls, points: np.ndarray, size: int, margin: float = 0.1) -> "Grid":
        lo, hi = points.min(axis=0), points.max(axis=0)
        extent = float((hi - lo).max()) * (1 + 2 * margin)
        centre = (lo + hi) / 2
        voxel = extent / size
        return cls(centre - extent / 2, voxel, size)

    def centres(self) -> np.ndarray:
        """(size, size, size, 3) world positions of node centres (index order i, j, k = x, y, z)."""
        r = self.lo[None] + (np.arange(self.size)[:, None] + 0.5) * self.voxel
        return np.stack(np.meshgrid(r[:, 0], r[:, 1], r[:, 2], indexing="ij"), axis=-1)


def band_sdf(surface_points: np.ndarray, grid: Grid, thickness: float) -> np.ndarray:
    """(size, size, size) band SDF of a densely sampled front (see module doc)."""
    udf = cKDTree(surface_points).query(grid.centres().reshape(-1, 3), workers=-1,
                                        distance_upper_bound=2 * thickness)[0]
    udf = np.minimum(udf, 2 * thickness)  # inf beyond the bound
    return np.clip(2.0 * udf / thickness - 1.0, -1.0, 1.0).reshape((grid.size,) * 3).astype(np.float32)


def cut_back_half(sdf: np.ndarray, surface_points: np.ndarray, grid: Grid, direction: np.ndarray,
                  viewpoint: np.ndarray | None = None) -> np.ndarray:
    """Set the band behind the front (further along the scan direction than its nearest front
    point) to +1 (outside), keeping the scanner-side half of the shell."""
    centres = grid.centres().reshape(-1, 3)
    inside = sdf.reshape(-1) < 1.0
    _, nn = cKDTree(surface_points).query(centres[inside], workers=-1)
    offset = centres[inside] - surface_points[nn]
    rays = (surface_points[nn] - viewpoint) if viewpoint is not None else direction[None]
    behind = np.einsum("ij,ij->i", offset, rays) > 0
    out = sdf.reshape(-1).copy()
    idx = np.flatnonzero(inside)[behind]
    out[idx] = 1.0
    return out.reshape(sdf.shape)
