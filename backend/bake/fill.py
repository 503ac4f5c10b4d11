"""Gutter padding: colours beyond chart borders, so bilinear lookups and mipmaps never pull in the
background. (The multi-source BFS fill of unseen surface voxels lives with the voxels, in
assets/surface_voxels.py, since the projection generator uses it too.)
"""
from __future__ import annotations

import numpy as np


def gutter_fill(texture: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Every texel outside `filled` (T, T) bool takes the colour of the nearest filled texel, so
    chart borders are padded all the way out (safe for any mip level)."""
    from scipy.ndimage import distance_transform_edt

    if filled.all() or not filled.any():
        return texture
    _, (ri, ci) = distance_transform_edt(~filled, return_indices=True)
    return texture[ri, ci]
