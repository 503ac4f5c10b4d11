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
true distance from above); where they disagree by more than `trust` (beyond the depth noise:
the ray term's bilinear ramp across a jump) the points decide. Where every scan ray within reach
is blocked at or before w (past the deepest points of a wall seen edge-on), the ray term may not
say the point is in front: it is at least the sideways bound behind.

The points also give the solid a skin (`skin_term`): a front that the front map's nodes cannot
hold, such as a wall seen edge-on whose points span many depths within one node, would otherwise
be cut away by the back term.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .front_map import FrontMap


class FreeSpace:
    def __init__(self, fmap: FrontMap, points: np.ndarray) -> None:
        self.fmap = fmap
        abw = fmap.view.project(points)
        order = np.argsort(abw[:, 2], kind="stable")
        self.ab = np.ascontiguousarray(abw[order, :2])
        self.w = abw[order, 2]
        self.points = cKDTree(fmap.view.to_local(points))  # local frame, for the skin

    def skin_term(self, local: np.ndarray, radius: float, where: np.ndarray) -> np.ndarray:
        """Distance to the scan points less `radius` (a union of balls around them; inf outside
        `where` and beyond 2 radius): the solid keeps this neighbourhood of every front point,
        whatever its back depth says, so a front that the front map's nodes cannot hold (a wall
        seen edge-on, the lip of an occluding edge) is not cut away behind the scan."""
        out = np.full(local.shape[:-1], np.inf)
        if where.any():
            out[where] = self.points.query(local[where], distance_upper_bound=2.0 * radius, workers=-1)[0] - radius
        return out

    def front_term(self, local: np.ndarray, reach: float, trust: float, where: np.ndarray | None = None) -> np.ndarray:
        """Signed distance (world units, > 0 in seen-empty space) at a slice of local-frame points
        (..., 3) that all lie at one depth w. Sideways distances are measured up to `reach`; beyond
        it, outside `where` (a bool mask of the slice) and where no scan point lies within reach,
        the ray term alone is used."""
        fmap, view = self.fmap, self.fmap.view
        w = float(local.reshape(-1, 3)[0, 2])
        scale = float(view.scale(w))
        ab = local[..., :2] / scale if view.perspective else local[..., :2]
        vertical = fmap.sample(fmap.depth, ab) - w
        sel = np.ones(vertical.shape, bool) if where is None else where.copy()
        split = int(np.searchsorted(self.w, w, side="right"))  # points [0, split) lie at depth <= w
        if not sel.any() or split == 0 or split == len(self.w):
            return vertical  # the whole front is on one side of this depth: nothing to measure sideways
        q = ab[sel]
        bound = 2.0 * reach / scale
        blocked = cKDTree(self.ab[:split]).query(q, distance_upper_bound=bound, workers=-1)[0]
        empty = cKDTree(self.ab[split:]).query(q, distance_upper_bound=bound, workers=-1)[0]
        with np.errstate(invalid="ignore"):
            lateral = 0.5 * (blocked - empty) * scale
        # both kinds of ray within reach: the boundary between them is measured, not guessed
        measured = np.isfinite(lateral) & (np.abs(lateral) < reach)
        v = vertical[sel]
        agree = np.sign(lateral) == np.sign(v)
        both = np.where(agree, np.sign(v) * np.minimum(np.abs(v), np.abs(lateral)),
                        np.where(np.abs(v) >= trust, lateral, v))
        out = vertical.copy()
        # every scan ray within the bound is blocked at or before this depth: the point lies behind
        # the front by at least what the bound shows, whatever the ray term says (on a wall seen
        # edge-on it jumps by voxels where its deepest points end)
        hidden = np.isfinite(blocked) & ~np.isfinite(empty)
        bounded = np.where(hidden, np.minimum(v, 0.5 * (blocked - bound) * scale), v)
        out[sel] = np.where(measured, both, bounded)  # (inf - inf = nan is never measured)
        return out
