"""Scan direction: the way the scanner looked (unit vector from the scanner into the scene).

Known viewpoint: the direction from it to the scan's centroid. Oriented normals (facing the
scanner): minus their mean or the centre of their smallest cap, the one the points spread over
most evenly, refined by the points' surface density (rho n . -d for a scanner sampling its image
evenly). Unoriented normals: the axis they agree on most, its sign from the
capture's visibility (a front bulges towards its scanner: its middle is nearer than its rim).
A scan whose normals agree on no direction (e.g. a closed object sampled all round) is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .types import Scan

MIN_FACING = 0.75  # fraction of the front that must face the estimated scanner
MIN_RESULTANT = 0.25  # |mean normal|: below it the normals point every which way


@dataclass(frozen=True)
class Direction:
    vector: np.ndarray  # (3,) unit, from the scanner into the scene
    source: str  # "given", "viewpoint", "normals", "normal axis + visibility"
    facing: float  # fraction of points whose normal faces the scanner


def parse_direction(text: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise InputError(f"--direction {text!r}: expected three numbers X,Y,Z") from None
    if values.shape != (3,) or not np.isfinite(values).all() or np.linalg.norm(values) < 1e-9:
        raise InputError(f"--direction {text!r}: expected a non-zero vector X,Y,Z")
    return values / np.linalg.norm(values)


def estimate_direction(scan: Scan, given: np.ndarray | None = None) -> tuple[Direction, np.ndarray]:
    """The scan direction and unit normals oriented towards the scanner."""
    from .front import estimate_normals

    points = scan.points
    normals = scan.normals if scan.normals is not None else estimate_normals(points)
    if given is not None:
        d = np.asarray(given, dtype=np.float64)
        d = d / np.linalg.norm(d)
        source = "given"
    elif scan.viewpoint is not None:
        d = points.mean(axis=0) - scan.viewpoint
        d /= np.linalg.norm(d)
        source = "viewpoint"
    elif scan.normals is not None and scan.normals_oriented:
        mean = normals.mean(axis=0)
        if np.linalg.norm(mean) < MIN_RESULTANT:
            raise InputError(f"{scan.name}: the scan's normals agree on no direction (|mean normal| = "
                             f"{np.linalg.norm(mean):.2f}); it does not look like a scan from one side: "
                             "pass --direction X,Y,Z")
        d = _evenest_view(points, [-mean / np.linalg.norm(mean), _facing_direction(normals, -mean / np.linalg.norm(mean))])
        d = _density_direction(points, normals, d)
        source = "normals"
    else:
        d = _axis_from_unoriented(scan.name, points, normals)
        source = "normal axis + visibility"
    facing = 1.0
    if scan.normals is not None and scan.normals_oriented:
        towards = (scan.viewpoint[None] - points) if scan.viewpoint is not None else -d[None]
        facing = float((np.einsum("ij,ij->i", normals, np.broadcast_to(towards, normals.shape)) > 0).mean())
        if source == "normals" and facing < MIN_FACING:
            raise InputError(f"{scan.name}: only {facing:.0%} of the scan faces any one direction; it does not "
                             "look like a scan from one side: pass --direction X,Y,Z")
    oriented = _orient_towards(normals, d, scan.viewpoint, points)
    return Direction(d, source, facing), oriented


def _evenest_view(points: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    """The candidate along which the points spread most evenly over the image plane (least
    relative spread of their nearest-neighbour spacing there): a scanner samples its image evenly,
    so along its own direction every face is as dense as the others. The two candidates fail in
    opposite cases: the normals' mean leans towards an elongated object's broad side, the
    normals' smallest cap towards the side walls of a flat face seen head-on (45 degrees on a
    cylinder's end face)."""
    from scipy.spatial import cKDTree

    sub = points[:: max(1, len(points) // 8000)]
    best, best_score = candidates[0], np.inf
    for d in candidates:
        flat = sub - np.outer(sub @ d, d)
        spacing = cKDTree(flat).query(flat, k=2)[0][:, 1]
        lo, mid, hi = np.quantile(spacing, [0.05, 0.5, 0.95])  # wide quantiles: a wall strip is a minority
        score = (hi - lo) / max(mid, 1e-12)
        if score < best_score:
            best, best_score = d, score
    return best


def _density_direction(points: np.ndarray, normals: np.ndarray, start: np.ndarray, k: int = 10,
                       ridge: float = 0.02) -> np.ndarray:
    """Refine `start` by the sampling density: a scanner samples its image plane evenly, so the
    surface density of its points is rho (n . -d) (denser where a face is seen head-on). The
    density (from the distance to the k-th neighbour) is fitted as n . v (Huber-weighted least
    squares) and d = -v / |v|. Along directions the normals do not span (one flat face, a
    cylinder's axis) the fit says nothing: a ridge (`ridge` x the point count) keeps `start` there.
    The normals' cap alone leaves d free wherever no normal grazes it (a cone seen from its side:
    30 degrees off)."""
    from scipy.spatial import cKDTree

    step = max(1, len(points) // 20_000)
    p, n = points[::step], normals[::step]
    r = cKDTree(p).query(p, k=k + 1, workers=-1)[0][:, -1]
    sigma = k / (np.pi * np.maximum(r, 1e-12) ** 2)
    prior = -start * float(np.median(sigma) / max(np.median(n @ -start), 1e-3))
    lam = ridge * len(p)
    weight = np.ones(len(p))
    v = prior
    for _ in range(5):  # Huber: walls strips and hole borders give skewed densities
        a = n * weight[:, None]
        v = np.linalg.solve(a.T @ n + lam * np.eye(3), a.T @ sigma + lam * prior)
        res = np.abs(sigma - n @ v)
        scale = 1.48 * float(np.median(res)) + 1e-12
        weight = 1.0 / np.maximum(1.0, res / (2.0 * scale))
    d = -v / max(float(np.linalg.norm(v)), 1e-12)
    # a scanner sees its whole front: a direction most of the normals do not face is not it
    return d if float((n @ -d > 0).mean()) >= MIN_FACING else start


def _facing_direction(normals: np.ndarray, start: np.ndarray, quantile: float = 0.005) -> np.ndarray:
    """The scan direction that the normals face most evenly: the one maximizing the cosine of the
    most grazing normals (their `quantile`), i.e. the centre of the smallest cap holding the
    normals' opposites. A scanner sees its object up to grazing angles all round the silhouette,
    so that cap is centred on it. The plain mean of the normals is not: the points sample the
    image evenly, not the surface, and on an elongated object seen obliquely the mean leaned
    30 degrees towards its broad side."""
    from .symmetry import fibonacci_hemisphere

    sub = -normals[:: max(1, len(normals) // 5000)]
    best = start
    for spread, count in ((np.radians(45.0), 3000), (np.radians(5.0), 1000)):
        cand = fibonacci_hemisphere(count)  # around +z, then turned to the current best
        cand = cand[np.arccos(np.clip(cand[:, 2], -1, 1)) <= spread]
        helper = np.eye(3)[int(np.argmin(np.abs(best)))]
        e1 = np.cross(helper, best)
        e1 /= np.linalg.norm(e1)
        frame = np.stack([e1, np.cross(best, e1), best])
        cand = np.concatenate([best[None], cand @ frame])
        score = np.quantile(sub @ cand.T, quantile, axis=0)
        best = cand[int(np.argmax(score))]
    return best / np.linalg.norm(best)


def _axis_from_unoriented(name: str, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    scatter = normals.T @ normals / len(normals)
    vals, vecs = np.linalg.eigh(scatter)
    axis = vecs[:, -1]
    if vals[-1] < 0.5:
        raise InputError(f"{name}: the scan's normals agree on no direction (strongest axis holds {vals[-1]:.0%} "
                         "of them); pass --direction X,Y,Z")
    # visibility: the scanner sees a front bulging towards it, so its middle is nearer than its rim
    depth = points @ axis
    lateral = points - np.outer(depth, axis)
    radial = np.linalg.norm(lateral - lateral.mean(axis=0), axis=1)
    inner, outer = radial <= np.quantile(radial, 0.3), radial >= np.quantile(radial, 0.8)
    bulge = np.median(depth[outer]) - np.median(depth[inner])
    extent = float(np.ptp(depth)) + 1e-12
    if abs(bulge) < 0.02 * max(extent, float(radial.max())):
        raise InputError(f"{name}: cannot tell from which side the scan was taken (no normals, flat front); "
                         "pass --direction X,Y,Z")
    return axis if bulge > 0 else -axis


def _orient_towards(normals: np.ndarray, d: np.ndarray, viewpoint: np.ndarray | None,
                    points: np.ndarray) -> np.ndarray:
    """Flip normals so that each faces the scanner (towards the viewpoint, or against d)."""
    towards = (viewpoint[None] - points) if viewpoint is not None else -d[None]
    sign = np.where(np.einsum("ij,ij->i", normals, np.broadcast_to(towards, normals.shape)) < 0, -1.0, 1.0)
    return normals * sign[:, None]
