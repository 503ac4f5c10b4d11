"""Filling what no view sees: multi-source BFS over the voxel graph, then gutter padding.

`bfs_sources` and `bfs_fill` are the reusable pieces (the texture pipeline fills the surface its
projections never reach with them); `gutter_fill` pads colours beyond chart borders so bilinear
lookups and mipmaps never pull in the background.
"""
from __future__ import annotations

import numpy as np

from .surface import VoxelGraph


def bfs_sources(graph: VoxelGraph, seen: np.ndarray) -> np.ndarray:
    """For every voxel, the nearest seen voxel in graph hops (multi-source BFS); a seen voxel is
    its own source; -1 where no seen voxel is connected."""
    from scipy.sparse.csgraph import dijkstra

    seen = np.asarray(seen, dtype=bool)
    seeds = np.nonzero(seen)[0]
    if len(seeds) == 0:
        return np.full(len(graph), -1, dtype=np.int64)
    if len(graph.edges) == 0:
        return np.where(seen, np.arange(len(graph)), -1)
    _, _, sources = dijkstra(graph.adjacency(), directed=False, indices=seeds, unweighted=True,
                             min_only=True, return_predecessors=True)
    return np.where(sources < 0, -1, sources).astype(np.int64)


def bfs_fill(graph: VoxelGraph, seen: np.ndarray, values: np.ndarray,
             fallback: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel values (V, C) where unseen voxels take their BFS source's value; voxels cut off
    from every seen one take `fallback` (default: the mean of the seen values). Returns the
    filled values and the sources."""
    src = bfs_sources(graph, seen)
    out = np.array(values, copy=True)
    unseen = ~np.asarray(seen, dtype=bool)
    reach = unseen & (src >= 0)
    out[reach] = values[src[reach]]
    lost = unseen & (src < 0)
    if lost.any():
        if fallback is None:
            fallback = values[seen].mean(0) if np.any(seen) else np.full(values.shape[1:], 0.5)
        out[lost] = fallback
    return out, src


def gutter_fill(texture: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Every texel outside `filled` (T, T) bool takes the colour of the nearest filled texel, so
    chart borders are padded all the way out (safe for any mip level)."""
    from scipy.ndimage import distance_transform_edt

    if filled.all() or not filled.any():
        return texture
    _, (ri, ci) = distance_transform_edt(~filled, return_indices=True)
    return texture[ri, ci]
