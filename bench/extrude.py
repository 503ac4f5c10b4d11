"""The naive baseline the benchmark compares against: extrude the front by a constant thickness
(bench and tests only, not shipped).

Same front depth map, silhouette and front term as the weight-free completion, so only the back
differs: each scanner ray leaves the object a constant depth behind where it entered.
"""
from __future__ import annotations

import numpy as np

from backend.complete.free_space import FreeSpace
from backend.complete.front_map import build_front_map
from backend.complete.geometric import make_view
from backend.complete.surface import extract_surface
from backend.complete.types import Completion


def extrude_front(points: np.ndarray, normals: np.ndarray, direction: np.ndarray,
                  viewpoint: np.ndarray | None = None, resolution: int = 128,
                  thickness: float | None = None) -> Completion:
    """`thickness` defaults to the front's own depth range (as deep again as what was seen)."""
    view = make_view(points, direction, viewpoint)
    fmap = build_front_map(points, normals, view, resolution)
    if thickness is None:
        depth = fmap.depth[fmap.mask]
        thickness = max(float(depth.max() - depth.min()), 2.5 * fmap.voxel)
    back = fmap.depth + thickness
    vertices, faces, _ = extract_surface(fmap, back, free=FreeSpace(fmap, points))
    return Completion(vertices, faces, fmap, back, None, (f"extruded by {thickness:.4g}",))
