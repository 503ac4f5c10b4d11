"""The completed solid as an SDF-like field (world units, < 0 inside): front term, back term per
depth layer, silhouette cone (and the scan-point skin and sideways front term of free_space.py)."""
from __future__ import annotations

import numpy as np

from .free_space import FreeSpace
from .front_map import FrontMap

FRONT_REACH_VOXELS = 2.0  # the front term measures sideways this far from the front
FRONT_TRUST_VOXELS = 0.5  # ray and sideways front terms disagreeing by more: the scan points decide
LAYER_MARGIN_VOXELS = 2.0  # a deeper layer may reach this far in front of its extrapolated front
SKIN_VOXELS = 2.0  # the solid keeps this neighbourhood of every scan point behind the front


def solid_and_seen(fmap: FrontMap, back: np.ndarray, local: np.ndarray,
                   free: FreeSpace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SDF-like field (world units, < 0 inside) of the completed solid at local-frame points (..., 3),
    and where the scanner saw empty space (in front of the front, outside the silhouette cone; the
    field is > 0 there whatever the back says). The solid is the intersection of {w >= z_f},
    {w <= z_b} (per depth layer, `layered_back_term`) and the silhouette cone. With `free` (then
    `local` must be one constant-depth slice) the front term also measures sideways on the scan
    points, so it stays a distance across depth jumps, and {w <= z_b} is widened by a skin of
    SKIN_VOXELS around every scan point (free_space.py)."""
    view = fmap.view
    w = local[..., 2]
    scale = view.scale(w)
    ab = local[..., :2] / (scale[..., None] if view.perspective else 1.0)
    lateral = fmap.sample(fmap.lateral, ab) * scale
    margin = 0.0 if free is None else LAYER_MARGIN_VOXELS * fmap.voxel
    behind = layered_back_term(fmap, back, ab, w, margin)
    if free is None:
        front = fmap.sample(fmap.depth, ab) - w
    else:
        reach = FRONT_REACH_VOXELS * fmap.voxel
        front = free.front_term(local, reach, FRONT_TRUST_VOXELS * fmap.voxel,
                                where=(lateral < reach) & (behind < reach))
        skin = SKIN_VOXELS * fmap.voxel
        near = (behind > -skin) & (front < skin) & (lateral < skin)
        behind = np.minimum(behind, free.skin_term(local, skin, where=near))
    seen = np.maximum(front, lateral)
    return np.maximum(seen, behind), seen > 0


def layered_back_term(fmap: FrontMap, back: np.ndarray, ab: np.ndarray, w: np.ndarray,
                      margin: float = 0.0) -> np.ndarray:
    """w - z_b, interpolated without bridging depth jumps. A grid cell whose corner columns
    [z_f, z_b] do not overlap in depth (an occluding edge over a surface further back) holds
    separate layers: each is interpolated from its own corners only, the nearer layer bounded by
    its back (its front is the front term's business), every deeper one by its back and by its
    front extrapolated along the front's slope, less `margin` (it only has to keep the layers
    apart behind the occluder; where the scanner saw the deeper layer, the front term is exact),
    and the cell's solid is their union. A plain bilinear z_b would ramp from the near layer's thin
    back to the far one's and cut the far surface next to the occluder; where the columns overlap
    (no jump) this is the bilinear interpolation."""
    ij = fmap.node_coords(ab)
    nx, ny = fmap.shape
    i0 = np.clip(np.floor(ij[..., 0]).astype(np.int64), 0, nx - 2)
    j0 = np.clip(np.floor(ij[..., 1]).astype(np.int64), 0, ny - 2)
    fx = np.clip(ij[..., 0] - i0, 0.0, 1.0)
    fy = np.clip(ij[..., 1] - j0, 0.0, 1.0)
    ci = np.stack([i0, i0 + 1, i0, i0 + 1])
    cj = np.stack([j0, j0, j0 + 1, j0 + 1])
    wt = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    zf, zb = fmap.depth[ci, cj], back[ci, cj]
    out = w - (wt * zb).sum(axis=0)
    split = zf.max(axis=0) > zb.min(axis=0)  # some corner columns do not overlap: several layers
    if not split.any():
        return out
    w = w[split]
    ci, cj, wt, zf, zb = ci[:, split], cj[:, split], wt[:, split], zf[:, split], zb[:, split]
    i0, j0, fx, fy = i0[split], j0[split], fx[split], fy[split]
    gi, gj = _layer_slopes(fmap.depth, back)
    di, dj = fx - (ci - i0), fy - (cj - j0)  # offsets from each corner, in nodes
    zf_ext = zf + gi[ci, cj] * di + gj[ci, cj] * dj  # each corner's front carried to the sample
    order = np.argsort(zf, axis=0)
    zf, zb, wt, zf_ext = (np.take_along_axis(x, order, axis=0) for x in (zf, zb, wt, zf_ext))
    reach = np.maximum.accumulate(zb, axis=0)  # deepest back among the nearer corners
    layer = np.concatenate([np.zeros((1,) + zf.shape[1:], np.int64),
                            np.cumsum(zf[1:] > reach[:-1], axis=0)])
    union = np.full(w.shape, np.inf)
    for k in range(int(layer.max()) + 1):
        mine = np.where(layer == k, wt, 0.0)
        total = mine.sum(axis=0)
        has = total > 0
        norm = np.maximum(total, 1e-12)
        term = w - (mine * zb).sum(axis=0) / norm
        if k:  # a separator in hidden space: where the scanner saw this layer the front term rules
            term = np.maximum(term, (mine * zf_ext).sum(axis=0) / norm - w - margin)
        union = np.where(has, np.minimum(union, term), union)
    out[split] = union
    return out


def _layer_slopes(depth: np.ndarray, back: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front depth change per node along i and j, from the neighbours whose columns overlap
    (same layer); zero where a node has none along an axis."""
    slopes = []
    for axis in (0, 1):
        diffs, counts = np.zeros(depth.shape), np.zeros(depth.shape)
        n = depth.shape[axis]
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(0, n - 1), slice(1, n)
        a, b = tuple(a), tuple(b)
        same = (depth[b] <= back[a]) & (depth[a] <= back[b])
        d = np.where(same, depth[b] - depth[a], 0.0)
        diffs[a] += d
        counts[a] += same
        diffs[b] += d
        counts[b] += same
        slopes.append(diffs / np.maximum(counts, 1))
    return slopes[0], slopes[1]
