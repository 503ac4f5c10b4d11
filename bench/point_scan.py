"""An orthographic structured-light style scanner (bench and tests, not shipped): points with
normals, as a user's scanner writes them to a PLY, made by a different simulator than the
project's own perspective depth render (bench/depth_scan.py), so the completion is not tuned to
one simulator's conventions.

Parallel rays along the scan direction, a square pixel grid. Visibility by a point z-buffer:
the surface is sampled densely (several samples per pixel), and each pixel keeps its nearest
sample, so the point is a true surface point near the pixel (not on the pixel centre) and its
normal is the truth's face normal, turned to face the scanner. Like a real structured-light
scanner it loses surfaces seen at grazing angles (|cos| < `min_cos`). Optional noise (depth along
the ray, normal jitter) and dropouts (discs of missing pixels, as from specular spots).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class PointScan:
    points: np.ndarray  # (N, 3)
    normals: np.ndarray  # (N, 3) unit, facing the scanner
    direction: np.ndarray  # (3,) the way the scanner looked


def orthographic_scan(mesh: trimesh.Trimesh, direction: np.ndarray, pixels: int = 160,
                      noise: float = 0.0, normal_noise: float = 0.0, dropouts: int = 0,
                      dropout_radius: float = 0.04, min_cos: float = 0.08, oversample: int = 6,
                      seed: int = 0) -> PointScan:
    """Scan `mesh` from far away along `direction`; `pixels` across the larger side of its shadow."""
    rng = np.random.default_rng(seed)
    d = np.asarray(direction, dtype=np.float64)
    d /= np.linalg.norm(d)
    helper = np.eye(3)[int(np.argmin(np.abs(d)))]
    e1 = np.cross(helper, d)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    rot = np.stack([e1, e2, d])
    local_v = np.asarray(mesh.vertices) @ rot.T
    lo, hi = local_v[:, :2].min(axis=0), local_v[:, :2].max(axis=0)
    pitch = float((hi - lo).max()) / pixels
    count = int(oversample * mesh.area / pitch**2)
    samples, face = trimesh.sample.sample_surface(mesh, count, seed=seed)
    normals = np.asarray(mesh.face_normals)[face]
    cos = normals @ d
    keep = cos < -min_cos  # facing the scanner, not grazing
    local = samples @ rot.T
    ij = np.floor((local[:, :2] - lo) / pitch).astype(np.int64)
    nx, ny = ij.max(axis=0) + 1
    cell = ij[:, 0] * ny + ij[:, 1]
    # z-buffer over all samples (back faces occlude too), then keep the pixels whose nearest is seen
    order = np.lexsort((local[:, 2], cell))
    first = order[np.r_[True, cell[order][1:] != cell[order][:-1]]]
    first = first[keep[first]]
    if dropouts:
        centres = local[first[rng.choice(len(first), size=dropouts, replace=False)], :2]
        span = float((hi - lo).max())
        gone = np.zeros(len(first), bool)
        for c in centres:
            gone |= np.linalg.norm(local[first, :2] - c, axis=1) < dropout_radius * span * rng.uniform(0.6, 1.0)
        first = first[~gone]
    pts = samples[first].copy()
    nrm = normals[first].copy()
    if noise > 0:
        pts += d[None] * rng.normal(0.0, noise, size=(len(pts), 1))
    if normal_noise > 0:
        nrm += rng.normal(0.0, normal_noise, size=nrm.shape)
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    return PointScan(pts, nrm, d)
