"""Ink3D's conditioning encoding of G-buffers as images/videos (DESIGN.md, Formats): positions in
the normalized frame mapped from [-0.5, 0.5] to [0, 1], normals from [-1, 1] to [0, 1], black
where the mesh is not. Used by render-orbit's files and the video generators' control inputs."""
from __future__ import annotations

from typing import Any

import numpy as np


def _array(values: Any) -> np.ndarray:
    """A torch tensor (any device) or array as a float32 numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def _on_mask(encoded: np.ndarray, mask: Any) -> np.ndarray:
    covered = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask, dtype=bool)
    return np.where(covered[..., None], np.clip(encoded, 0.0, 1.0), 0.0).astype(np.float32)


def encode_positions(position: Any, mask: Any) -> np.ndarray:
    """(..., H, W, 3) positions in [-0.5, 0.5] -> [0, 1] on the mesh (mask (..., H, W)), black elsewhere."""
    return _on_mask(_array(position) + 0.5, mask)


def encode_normals(normal: Any, mask: Any) -> np.ndarray:
    """(..., H, W, 3) unit normals in [-1, 1] -> [0, 1] on the mesh (mask (..., H, W)), black elsewhere."""
    return _on_mask((_array(normal) + 1.0) * 0.5, mask)
