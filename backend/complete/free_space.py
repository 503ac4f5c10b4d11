"""The front term of a completed solid's field, as a distance to what the scanner saw empty.

Along each scanner ray (a, b) the space before the front depth z_f(a, b) was seen empty. The
plain front term z_f - w measures along the ray only. Across a depth jump that is badly wrong:
the front map's nodes straddle the occluding edge, bilinear z_f ramps from the near to the far
surface over a whole node, and a point just past the edge reads many voxels "in front" although
the near surface is a fraction of a voxel away sideways; marching cubes, interpolating such
values, pulls the occluding edge in by a voxel or more.

`FreeSpace` measures sideways too, on the scan points themselves (finer than the front map): in
the plane of depth w, the rays of scan points at depth <= w are blocked there and the rays of
scan points deeper than w are still empty, so half the difference of the lateral distances to
the nearest point of each kind is a signed distance to the front's cross-section at w (the
bisector between the last near and the first far point at a jump, the cut line on an oblique
front). Where it agrees in sign with the ray term the smaller magnitude wins (both bound the
true distance from above). Where they disagree, the points decide only in grid cells the front
map cannot represent (corners straddling a depth jump or the silhouette border, where the ray
term is a bilinear ramp between unrelated depths) and only beyond `trust` (noise); elsewhere the
front map's fitted depth is the better judge.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .front_map import FrontMap

JUMP_VOXELS = 4.0  # corner front depths of a cell further apart than this straddle a depth jump


class FreeSpace:
    def __init__(self, fmap: FrontMap, points: np.ndarray) -> None:
        self.fmap = fmap
        abw = fmap.view.project(points)
        order = np.argsort(abw[:, 2], kind="stable")
        self.ab = np.ascontiguousarray(abw[order, :2])
        self.w = abw[order, 2]
        d, m = fmap.depth, fmap.mask
        corners_z = np.stack([d[:-1, :-1], d[1:, :-1], d[:-1, 1:], d[1:, 1:]])
        corners_m = np.stack([m[:-1, :-1], m[1:, :-1], m[:-1, 1:], m[1:, 1:]])
        # cells (i, j)-(i+1, j+1) whose bilinear front depth is a ramp between unrelated surfaces
        self.rough = (np.ptp(corners_z, axis=0) > JUMP_VOXELS * fmap.voxel) | (corners_m.any(axis=0) & ~corners_m.all(axis=0))

    def front_term(self, local: np.ndarray, cap: float, trust: float, where: np.ndarray | None = None) -> np.ndarray:
        """Signed distance (world units, > 0 in seen-empty space, clipped to +-`cap`) at a slice of
        local-frame points (..., 3) that all lie at one depth w. The ray term alone is used outside
        `where` (a bool mask of the slice) and where no scan point lies within `cap` sideways."""
        fmap, view = self.fmap, self.fmap.view
        w = float(local.reshape(-1, 3)[0, 2])
        scale = float(view.scale(w))
        ab = local[..., :2] / scale if view.perspective else local[..., :2]
        vertical = np.clip(fmap.sample(fmap.depth, ab) - w, -cap, cap)
        sel = np.ones(vertical.shape, bool) if where is None else where.copy()
        split = int(np.searchsorted(self.w, w, side="right"))  # points [0, split) lie at depth <= w
        if not sel.any() or split == 0 or split == len(self.w):
            return vertical  # the whole front is on one side of this depth: nothing to measure sideways
        q = ab[sel]
        bound = 2.0 * cap / scale
        blocked = cKDTree(self.ab[:split]).query(q, distance_upper_bound=bound, workers=-1)[0]
        empty = cKDTree(self.ab[split:]).query(q, distance_upper_bound=bound, workers=-1)[0]
        known = np.isfinite(blocked) | np.isfinite(empty)
        with np.errstate(invalid="ignore"):
            lateral = np.clip(0.5 * (np.minimum(blocked, bound) - np.minimum(empty, bound)) * scale, -cap, cap)
        v = vertical[sel]
        ij = fmap.node_coords(q)
        ci = np.clip(np.floor(ij[:, 0]).astype(np.int64), 0, self.rough.shape[0] - 1)
        cj = np.clip(np.floor(ij[:, 1]).astype(np.int64), 0, self.rough.shape[1] - 1)
        points_decide = np.abs(v) >= trust
        agree = np.sign(lateral) == np.sign(v)
        both = np.where(agree, np.sign(v) * np.minimum(np.abs(v), np.abs(lateral)),
                        np.where(points_decide, lateral, v))
        out = vertical.copy()
        out[sel] = np.where(known, both, v)
        return out
