"""Scene split: remove a dominant ground plane (RANSAC), then cluster what stands on it into
objects (connected components of a radius graph)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..errors import InputError

MIN_GROUND_FRACTION = 0.15  # a plane holding less of the scan is not "the ground"


@dataclass(frozen=True)
class SceneSplit:
    objects: list[np.ndarray]  # point indices per object, largest first
    ground: np.ndarray | None  # (4,) plane n.x + c = 0, n pointing to the objects' side; None if none found
    ground_points: int
    notes: tuple[str, ...]


def fit_ground_plane(points: np.ndarray, tolerance: float, iterations: int = 300,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """The plane with the most inliers (RANSAC on 3-point samples, refined by least squares),
    when it holds at least MIN_GROUND_FRACTION of the points: (plane (4,), inlier mask)."""
    rng = np.random.default_rng(seed)
    sample = points[rng.choice(len(points), size=min(len(points), 20000), replace=False)]
    best, best_count = None, 0
    for _ in range(iterations):
        a, b, c = sample[rng.choice(len(sample), 3, replace=False)]
        n = np.cross(b - a, c - a)
        if np.linalg.norm(n) < 1e-12:
            continue
        n /= np.linalg.norm(n)
        count = int((np.abs((sample - a) @ n) < tolerance).sum())
        if count > best_count:
            best, best_count = (n, -float(n @ a)), count
    if best is None or best_count < MIN_GROUND_FRACTION * len(sample):
        return None
    n, c = best
    inliers = np.abs(points @ n + c) < tolerance
    centroid = points[inliers].mean(axis=0)
    n = np.linalg.svd(points[inliers] - centroid, full_matrices=False)[2][-1]  # least-squares refit
    c = -float(n @ centroid)
    inliers = np.abs(points @ n + c) < tolerance
    if inliers.mean() < MIN_GROUND_FRACTION:
        return None
    rest = points[~inliers]
    if len(rest) and np.median(rest @ n + c) < 0:
        n, c = -n, -c  # normal towards the objects
    return np.append(n, c), inliers


def split_scene(points: np.ndarray, min_fraction: float = 0.01, min_points: int = 50,
                link: float | None = None) -> SceneSplit:
    """Object point sets of a scan holding several objects."""
    diag = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    sub = points[:: max(1, len(points) // 20000)]
    spacing = float(np.median(cKDTree(sub).query(sub, k=2)[0][:, 1]))
    link = link or max(4.0 * spacing, 0.005 * diag)
    notes: list[str] = []
    fitted = fit_ground_plane(points, tolerance=max(1.5 * spacing, 0.004 * diag))
    keep = np.ones(len(points), bool)
    ground = None
    if fitted is not None:
        ground, inliers = fitted
        keep = ~inliers & (points @ ground[:3] + ground[3] > 0)
        notes.append(f"removed a ground plane holding {int(inliers.sum())} of {len(points)} points")
    else:
        notes.append("no dominant ground plane found")
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise InputError("the scene holds nothing but its ground plane")
    pairs = cKDTree(points[idx]).query_pairs(link, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(idx), len(idx)))
    count, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=count)
    order = np.argsort(sizes)[::-1]
    threshold = max(min_points, min_fraction * len(idx))
    objects = [idx[labels == lab] for lab in order if sizes[lab] >= threshold]
    dropped = int(sum(sizes[lab] for lab in order if sizes[lab] < threshold))
    if dropped:
        notes.append(f"{dropped} points in clusters too small to be objects were ignored")
    if not objects:
        raise InputError("the scene split found no object large enough to complete")
    return SceneSplit(objects, ground, int((~keep).sum()), tuple(notes))
