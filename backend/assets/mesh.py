"""Triangle meshes: the `Mesh` value, OBJ/PLY reading through trimesh, normalizing (loading any
supported file by its suffix is assets/load.py's).

Conventions: positions are in the file's own frame (glTF: Y up) with node transforms applied;
UVs are per vertex with the OpenGL origin (v = 0 at the bottom of the image); triangle and vertex
order are the file's own (glTF through gltf_primitives, OBJ/PLY through trimesh with `process=False`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")


@dataclass(frozen=True)
class Mesh:
    positions: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32
    normals: np.ndarray  # (V, 3) float32, unit length (area-weighted vertex normals when the file has none)
    uvs: np.ndarray | None = None  # (V, 2) float32, OpenGL origin; None when the file has no UV map

    @property
    def num_vertices(self) -> int:
        return len(self.positions)

    @property
    def num_faces(self) -> int:
        return len(self.faces)

    def face_normals(self) -> np.ndarray:
        """Unit geometric normals per triangle (zero for degenerate triangles)."""
        v = self.positions[self.faces]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return (n / np.maximum(length, 1e-20)).astype(np.float32)

    def surface_area(self) -> float:
        v = self.positions[self.faces].astype(np.float64)
        return float(0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum())


@dataclass(frozen=True)
class Normalization:
    """The similarity that maps file coordinates into the unit box: x_n = (x - center) * scale."""

    center: np.ndarray  # (3,)
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        return ((points - self.center) * self.scale).astype(np.float32)

    def invert(self, points: np.ndarray) -> np.ndarray:
        return (points / self.scale + self.center).astype(np.float32)


def vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unit length; zero for isolated vertices)."""
    v = positions[faces].astype(np.float64)
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])  # length = 2 * area: area weighting for free
    n = np.zeros_like(positions, dtype=np.float64)
    for corner in range(3):
        np.add.at(n, faces[:, corner], fn)
    return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)).astype(np.float32)


def make_mesh(positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None,
              normals: np.ndarray | None = None, name: str = "mesh") -> Mesh:
    """Validate arrays and build a Mesh; raises InputError naming `name` when unusable."""
    positions = np.asarray(positions, dtype=np.float32).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(positions) == 0 or len(faces) == 0:
        raise InputError(f"{name}: the mesh is empty (no triangles)")
    if not np.isfinite(positions).all():
        raise InputError(f"{name}: vertex positions contain NaN or infinity")
    if faces.min() < 0 or faces.max() >= len(positions):
        raise InputError(f"{name}: triangle indices point outside the vertex list")
    mesh_uvs = None if uvs is None else np.asarray(uvs, dtype=np.float32).reshape(-1, 2)
    if mesh_uvs is not None and len(mesh_uvs) != len(positions):
        raise InputError(f"{name}: {len(mesh_uvs)} UVs for {len(positions)} vertices")
    if normals is None or len(normals) != len(positions) or not np.isfinite(normals).all():
        normals = vertex_normals(positions, faces)
    else:
        normals = np.asarray(normals, dtype=np.float32)
        normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)
    mesh = Mesh(positions, faces.astype(np.int32), normals.astype(np.float32), mesh_uvs)
    if mesh.surface_area() <= 0.0:
        raise InputError(f"{name}: the mesh has zero surface area (all triangles degenerate)")
    return mesh


def load_trimesh(path: Path):  # type: ignore[no-untyped-def]
    """The file as one trimesh.Trimesh (process=False, file order kept; a scene flattened with its
    node transforms). Raises InputError naming the file."""
    import trimesh

    try:
        loaded = trimesh.load(path, process=False, maintain_order=True)
        if isinstance(loaded, trimesh.Scene):
            if not any(isinstance(g, trimesh.Trimesh) for g in loaded.geometry.values()):
                raise InputError(f"{path.name}: the file holds no triangle mesh")
            loaded = loaded.to_geometry() if len(loaded.graph.nodes_geometry) > 1 else _single_with_transform(loaded)
    except InputError:
        raise
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise InputError(f"{path.name}: cannot read the mesh ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise InputError(f"{path.name}: the file holds no triangles (a point cloud or an empty mesh)")
    return loaded


def mesh_from_trimesh(loaded, name: str) -> Mesh:  # type: ignore[no-untyped-def]
    """A Mesh of a trimesh.Trimesh: its UVs (when it has them) and the file's normals (when given)."""
    uv = getattr(loaded.visual, "uv", None)
    normals = loaded.vertex_normals if "vertex_normals" in loaded._cache.cache else None
    return make_mesh(loaded.vertices, loaded.faces, uv, normals, name=name)


def _single_with_transform(scene):  # type: ignore[no-untyped-def]
    """The one mesh of a scene with its node transform applied (keeps its UVs and vertex order)."""
    node = scene.graph.nodes_geometry[0]
    transform, geom_name = scene.graph[node]
    mesh = scene.geometry[geom_name].copy()
    mesh.apply_transform(transform)
    return mesh


def normalize(mesh: Mesh) -> tuple[Mesh, Normalization]:
    """Centre the bounding box at the origin and scale its largest side to 1 (DESIGN.md)."""
    lo, hi = mesh.positions.min(axis=0).astype(np.float64), mesh.positions.max(axis=0).astype(np.float64)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise InputError("the mesh has zero extent")
    norm = Normalization(center=(lo + hi) / 2, scale=1.0 / extent)
    return replace(mesh, positions=norm.apply(mesh.positions)), norm
