"""Which corner of a returned GLB's triangles is which face corner of ours (numpy + mathutils).

The backend keeps triangle order, but a UV map made by xatlas splits vertices along its seams
and a writer may flatten node transforms, so vertex indices mean nothing across the round trip.
Corners are matched by position instead: triangle by triangle in order when that fits (the usual
case), else each triangle is looked up by its centroid in a KD-tree and its corners by distance.
"""
from __future__ import annotations

import numpy as np
from mathutils import Vector
from mathutils.kdtree import KDTree

from .glb_read import GlbMesh

# Blender world (Z up) -> glTF (Y up), as Blender's glTF exporter converts.
GLTF_FROM_BLENDER = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
# the six ways three corners can correspond (rotations and, for mirrored files, reflections)
_ORDERS = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2]])


class MatchError(ValueError):
    """The result's triangles do not fit the mesh they should belong to."""


def tolerance(corners: np.ndarray) -> float:
    flat = corners.reshape(-1, 3)
    extent = float((flat.max(0) - flat.min(0)).max()) if len(flat) else 0.0
    return 1e-4 * extent + 1e-7


def match_corners(src: np.ndarray, dst: GlbMesh, what: str) -> np.ndarray:
    """For src corner positions (T, 3, 3) in dst's frame: (T, 3) dst vertex indices."""
    tol = tolerance(src)
    dst_corners = dst.corner_positions
    if len(src) == len(dst_corners) and float(np.abs(src - dst_corners).max(initial=0.0)) <= tol:
        return dst.triangles.copy()
    centroids = dst_corners.mean(axis=1)
    tree = KDTree(len(centroids))
    for i, c in enumerate(centroids):
        tree.insert(Vector(c), i)
    tree.balance()
    out = np.empty((len(src), 3), dtype=np.int64)
    unmatched = 0
    for t, corners in enumerate(src):
        best, best_cost = None, np.inf
        for _co, j, dist in tree.find_n(Vector(corners.mean(axis=0)), 8):
            if dist > 3 * tol:
                break
            d = np.linalg.norm(corners[:, None, :] - dst_corners[j][None, :, :], axis=-1)  # (3 src, 3 dst)
            cost = d[np.arange(3), _ORDERS]  # (6 orders, 3 corners): degenerate triangles stay one-to-one
            k = int(cost.sum(axis=1).argmin())
            if cost[k].max() <= tol and cost[k].sum() < best_cost:
                best, best_cost = dst.triangles[j][_ORDERS[k]], cost[k].sum()
        if best is None:
            unmatched += 1
        else:
            out[t] = best
    if unmatched:
        raise MatchError(f"{unmatched} of {len(src)} triangles of {what} have no counterpart in the result "
                         "(was the mesh edited after the job was submitted?)")
    return out


def loop_uvs(loops: np.ndarray, corner_uvs: np.ndarray, loop_count: int) -> tuple[np.ndarray, int]:
    """Per-loop UVs (L, 2) from per-triangle-corner UVs (T, 3, 2) of loop-triangle `loops` (T, 3),
    and how many loops got two different UVs from two triangles (xatlas split a polygon)."""
    flat_loops, flat_uvs = loops.reshape(-1), corner_uvs.reshape(-1, 2)
    out = np.zeros((loop_count, 2), dtype=np.float64)
    out[flat_loops] = flat_uvs  # the last triangle wins where a polygon was split
    conflicts = np.abs(out[flat_loops] - flat_uvs).max(axis=1) > 1e-5
    return out, int(len(np.unique(flat_loops[conflicts])))
