"""The types the completion stages pass around: a scanned front (`Scan`, read from a file and
never written) and a completed object (`Completion`). Type-only: the loaders (scan.py), the front
meshing (front.py) and the completion engines all import from here, never from each other."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from .front_map import FrontMap
from .symmetry import SymmetryPlane


@dataclass(frozen=True)
class Scan:
    """One scanned front in its file's frame."""

    name: str  # file stem: names the outputs
    points: np.ndarray  # (N, 3) float64
    normals: np.ndarray | None = None  # (N, 3) unit; facing the scanner when `normals_oriented`
    faces: np.ndarray | None = None  # (F, 3) int64 front triangles (input mesh or Alg. 1)
    normals_oriented: bool = False
    viewpoint: np.ndarray | None = None  # (3,) scanner position when known (point maps: fitted camera)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_points(self) -> int:
        return len(self.points)

    def with_note(self, note: str) -> "Scan":
        return replace(self, notes=self.notes + (note,))

    def subset(self, index: np.ndarray, name: str | None = None) -> "Scan":
        """The scan restricted to `index` (faces dropped: they would reference removed points)."""
        return replace(self, name=name or self.name, points=self.points[index],
                       normals=None if self.normals is None else self.normals[index], faces=None)


def check_points(points: np.ndarray, source: str) -> None:
    """Refuse scans that cannot define a surface: empty, one point, all coincident or collinear."""
    if len(points) == 0:
        raise InputError(f"{source}: the scan holds no valid points")
    if len(points) < 4:
        raise InputError(f"{source}: the scan holds only {len(points)} valid point(s); a front needs many")
    centred = points - points.mean(axis=0)
    sv = np.linalg.svd(centred[:: max(1, len(points) // 20000)], compute_uv=False)
    if sv[0] <= 1e-12 or sv[1] <= 1e-9 * sv[0]:
        raise InputError(f"{source}: all scan points are coincident or on one line; there is no surface to complete")


@dataclass(frozen=True)
class Completion:
    vertices: np.ndarray  # (V, 3) world
    faces: np.ndarray  # (F, 3) int64, outward winding
    front_map: FrontMap
    back_depth: np.ndarray  # (nx, ny) z_b per node
    symmetry: SymmetryPlane | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def voxel(self) -> float:
        return self.front_map.voxel
