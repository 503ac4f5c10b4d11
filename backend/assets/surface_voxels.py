"""Sparse surface voxels and their 6-connected graph (TextureOptimizer's sample structure).

A voxel is a cell of a regular grid over the mesh's bounding box (`voxel_res` cells across the
largest side) *and* a normal class (the dominant axis and sign of the surface normal), so the
two sides of a part thinner than a voxel are separate voxels that never share a label. Voxels
are made from the texel points plus random area-uniform surface samples (about four per voxel
face), so the graph stays connected where the texture is coarser than the voxels. Two voxels
are neighbours when their cells are equal or 6-adjacent and their normals are not opposed.
Unseen voxels are filled by a multi-source BFS from the seen ones (`bfs_fill`). The bake and the
projection generator both use these, so they live below both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mesh import Mesh

NORMAL_CLASSES = 6
_OPPOSED_COS = -0.3  # normals more opposed than this (thin shells' two sides) are not neighbours


@dataclass(frozen=True)
class VoxelGraph:
    """Surface voxels: centres, unit normals, grid cells and undirected edges (i < j)."""

    centres: np.ndarray  # (N, 3) float32
    normals: np.ndarray  # (N, 3) float32
    cells: np.ndarray  # (N, 3) int64
    edges: np.ndarray  # (E, 2) int64, i < j
    voxel_size: float

    def __len__(self) -> int:
        return len(self.centres)

    def adjacency(self):  # type: ignore[no-untyped-def]
        """Symmetric scipy CSR adjacency (unit weights)."""
        import scipy.sparse as sp

        n, e = len(self), self.edges
        data = np.ones(2 * len(e), dtype=np.float32)
        return sp.csr_matrix((data, (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n))


def surface_samples(mesh: Mesh, spacing: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform random points (about one per spacing^2 of area) and their face normals."""
    v = mesh.positions[mesh.faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    count = np.ceil(area / spacing**2).astype(np.int64) * (area > 0)
    face = np.repeat(np.arange(len(area)), count)
    rng = np.random.default_rng(seed)
    r1, r2 = rng.random(len(face)), rng.random(len(face))
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    points = np.einsum("mk,mkd->md", bary, v[face]).astype(np.float32)
    return points, mesh.face_normals()[face]


def normal_class(normals: np.ndarray) -> np.ndarray:
    axis = np.abs(normals).argmax(1)
    negative = normals[np.arange(len(normals)), axis] < 0
    return axis * 2 + negative


def build_voxels(mesh: Mesh, points: np.ndarray, normals: np.ndarray, voxel_res: int,
                 seed: int = 0) -> tuple[VoxelGraph, np.ndarray]:
    """Voxelize `points` (e.g. texel surface points) together with random surface samples.

    Returns the graph and the voxel index of each of `points` (so every texel knows its voxel).
    """
    lo = mesh.positions.min(0).astype(np.float64)
    extent = float((mesh.positions.max(0) - lo).max())
    size = extent / voxel_res
    extra, extra_normals = surface_samples(mesh, size / 2, seed)
    all_points = np.concatenate([points, extra]).astype(np.float64)
    all_normals = np.concatenate([normals, extra_normals])
    res = voxel_res + 1
    cells = np.clip(np.floor((all_points - lo) / size).astype(np.int64), 0, voxel_res)
    keys = ((cells[:, 0] * res + cells[:, 1]) * res + cells[:, 2]) * NORMAL_CLASSES + normal_class(all_normals)
    unique, inverse = np.unique(keys, return_inverse=True)
    count = np.bincount(inverse).astype(np.float64)
    centres = np.stack([np.bincount(inverse, all_points[:, d]) for d in range(3)], 1) / count[:, None]
    nsum = np.stack([np.bincount(inverse, all_normals[:, d]) for d in range(3)], 1)
    vnormals = nsum / np.maximum(np.linalg.norm(nsum, axis=1, keepdims=True), 1e-20)
    cell_key = unique // NORMAL_CLASSES
    vcells = np.stack([cell_key // (res * res), (cell_key // res) % res, cell_key % res], 1)
    edges = _edges(unique, vcells, vnormals, res)
    graph = VoxelGraph(centres.astype(np.float32), vnormals.astype(np.float32), vcells, edges, size)
    return graph, inverse[: len(points)].astype(np.int64)


def _edges(keys: np.ndarray, cells: np.ndarray, normals: np.ndarray, res: int) -> np.ndarray:
    """Pairs (i < j) of voxels in equal or 6-adjacent cells whose normals are not opposed."""
    found = []
    offsets = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]  # the other three directions give j < i
    for dx, dy, dz in offsets:
        nc = cells + np.array([dx, dy, dz])
        ok = (nc < res).all(1)
        base = ((nc[:, 0] * res + nc[:, 1]) * res + nc[:, 2]) * NORMAL_CLASSES
        for cls in range(NORMAL_CLASSES):
            target = base + cls
            pos = np.searchsorted(keys, target)
            pos = np.minimum(pos, len(keys) - 1)
            hit = ok & (keys[pos] == target)
            i, j = np.nonzero(hit)[0], pos[hit]
            found.append(np.stack([i, j], 1))
    pairs = np.concatenate(found)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.sort(pairs, axis=1)
    code = np.unique(pairs[:, 0] * len(keys) + pairs[:, 1])
    pairs = np.stack([code // len(keys), code % len(keys)], 1)
    cos = (normals[pairs[:, 0]] * normals[pairs[:, 1]]).sum(1)
    return pairs[cos > _OPPOSED_COS].astype(np.int64)


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
