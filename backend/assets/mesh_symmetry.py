"""Symmetries of a mesh's geometry: mirror planes and a continuous rotation axis.

Judged on the whole closed-or-open surface (not a scan): area-uniform samples are mapped by a
candidate transform and count as matched when they land on the surface (point-to-plane distance
to the nearest sample within a small tolerance, nearest sample close, normals agreeing). A
symmetry of the shape maps the surface onto itself, so its centre of area lies on every mirror
plane and on the rotation axis, and every such plane's normal or axis is an eigenvector of the
area covariance: candidates are those (plus diagonals where two eigenvalues are close, so
near-degenerate shapes such as cubes are not missed). A rotation axis counts as continuous when
rotations by several unrelated angles all match (a cube's 90 degree turns do not make it a lathe).

Used by the fill of unseen surface (surface_fill.py, for the bake and the projection generator);
it lives with the mesh values because it is pure geometry, below every stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mesh import Mesh

MATCH_FRACTION = 0.93  # samples that must land back on the surface
PLANE_TOLERANCE = 0.004  # point-to-plane distance, fraction of the largest bounding-box side
NORMAL_AGREEMENT = 0.8  # cos between a mapped normal and the surface normal it lands on
ROTATION_ANGLES = (23.0, 61.0, 97.0, 143.0, 180.0)  # degrees; unrelated, so no discrete symmetry passes all


@dataclass(frozen=True)
class MirrorPlane:
    normal: np.ndarray  # (3,) unit; plane: normal . (x - centre) = 0
    match: float  # fraction of samples that land back on the surface

    def as_dict(self) -> dict:
        return {"kind": "mirror", "normal": np.round(self.normal, 4).tolist(), "match": round(self.match, 4)}


@dataclass(frozen=True)
class RotationAxis:
    direction: np.ndarray  # (3,) unit, through the centre
    match: float  # worst fraction over the test angles

    def as_dict(self) -> dict:
        return {"kind": "rotation", "axis": np.round(self.direction, 4).tolist(), "match": round(self.match, 4)}


@dataclass(frozen=True)
class Symmetry:
    centre: np.ndarray  # (3,) centre of area: on every plane and on the axis
    axes: np.ndarray  # (3, 3) rows: principal directions of the area covariance (largest spread first)
    planes: list[MirrorPlane] = field(default_factory=list)
    rotation: RotationAxis | None = None

    def as_dict(self) -> dict:
        found = [p.as_dict() for p in self.planes] + ([self.rotation.as_dict()] if self.rotation else [])
        return {"centre": np.round(self.centre, 5).tolist(), "found": found}


def reflect(points: np.ndarray, normal: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return points - 2.0 * ((points - centre) @ normal)[:, None] * normal[None]


def rotation_matrix(axis: np.ndarray, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def surface_points(mesh: Mesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` area-uniform samples and their face normals."""
    v = mesh.positions[mesh.faces].astype(np.float64)
    cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    if area.sum() <= 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    face = rng.choice(len(area), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    points = np.einsum("mk,mkd->md", bary, v[face])
    normals = cross[face] / np.maximum(np.linalg.norm(cross[face], axis=1, keepdims=True), 1e-20)
    return points, normals


def area_moments(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Exact centre of area and area covariance of the triangle surface (no sampling noise, which
    would shift the centre off the planes by more than the match tolerance)."""
    v = mesh.positions[mesh.faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    total = max(float(area.sum()), 1e-20)
    s = v.sum(1)
    centre = (area[:, None] * s / 3.0).sum(0) / total
    # per triangle: integral of x x^T dA / A = (sum_i v_i v_i^T + s s^T) / 12
    second = np.einsum("f,fki,fkj->ij", area, v, v) + np.einsum("f,fi,fj->ij", area, s, s)
    return centre, second / (12.0 * total) - np.outer(centre, centre)


class _Matcher:
    """How many mapped samples land on the surface (nearest-sample test, cKDTree)."""

    def __init__(self, points: np.ndarray, normals: np.ndarray, extent: float):
        from scipy.spatial import cKDTree

        self.tree = cKDTree(points)
        self.normals = normals
        self.points = points
        spacing = np.sqrt(4.0 / len(points)) * extent  # rough sample spacing on a unit-ish surface
        self.reach = 3.0 * spacing + PLANE_TOLERANCE * extent
        self.tol = PLANE_TOLERANCE * extent

    def fraction(self, mapped: np.ndarray, mapped_normals: np.ndarray) -> float:
        dist, idx = self.tree.query(mapped, k=1, distance_upper_bound=self.reach, workers=1)
        hit = np.isfinite(dist)
        idx = np.where(hit, idx, 0)
        plane = np.abs(((mapped - self.points[idx]) * self.normals[idx]).sum(1))
        # two-sided surfaces (open shells): a flipped normal on the same sheet still matches
        agree = np.abs((mapped_normals * self.normals[idx]).sum(1)) > NORMAL_AGREEMENT
        return float((hit & (plane < self.tol) & agree).mean())


def detect_symmetry(mesh: Mesh, samples: int = 12000, seed: int = 0) -> Symmetry:
    """Mirror planes and a continuous rotation axis of the mesh, in the mesh's own frame."""
    points, normals = surface_points(mesh, samples, seed)
    if len(points) < 100:
        return Symmetry(np.zeros(3), np.eye(3))
    lo, hi = mesh.positions.min(0), mesh.positions.max(0)
    extent = float((hi - lo).max())
    # the target is a denser, independent sample set, so a sample never matches itself by construction
    target, target_normals = surface_points(mesh, 4 * samples, seed + 1)
    matcher = _Matcher(target, target_normals, extent)
    centre, cov = area_moments(mesh)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, axes = values[order], vectors[:, order].T

    rotation = None
    for i in range(3):
        # a lathe's axis has the two other eigenvalues equal
        others = [values[j] for j in range(3) if j != i]
        if abs(others[0] - others[1]) > 0.05 * max(others):
            continue
        worst = min(matcher.fraction((points - centre) @ rotation_matrix(axes[i], a).T + centre,
                                     normals @ rotation_matrix(axes[i], a).T) for a in ROTATION_ANGLES)
        if worst >= MATCH_FRACTION and (rotation is None or worst > rotation.match):
            rotation = RotationAxis(axes[i], worst)

    planes: list[MirrorPlane] = []
    if rotation is None:  # a lathe has a plane through every direction around its axis: say the axis
        candidates = [axes[i] for i in range(3)]
        for i in range(3):
            for j in range(i + 1, 3):
                if abs(values[i] - values[j]) < 0.1 * values[i]:
                    candidates += [(axes[i] + axes[j]) / np.sqrt(2), (axes[i] - axes[j]) / np.sqrt(2)]
        for n in candidates:
            n = n / np.linalg.norm(n)
            reflected_normals = normals - 2.0 * (normals @ n)[:, None] * n[None]
            match = matcher.fraction(reflect(points, n, centre), reflected_normals)
            if match >= MATCH_FRACTION:
                planes.append(MirrorPlane(n, match))
        planes.sort(key=lambda p: -p.match)
    return Symmetry(centre, axes, planes, rotation)
