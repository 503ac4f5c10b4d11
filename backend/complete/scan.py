"""Scanned fronts: load a mesh, a PLY point cloud or a point map (.npy / .exr) as a `Scan`.

A scan is read, never written. Point maps become a front mesh by Consistent3DGen's Alg. 1
(front.py); huge inputs are thinned with a note in `Scan.notes` rather than exhausting memory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .front import densify_mesh_front, scan_from_point_map
from .types import Scan, check_points

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")
POINT_MAP_SUFFIXES = (".npy", ".exr")
SCAN_SUFFIXES = tuple(sorted(set(MESH_SUFFIXES + POINT_MAP_SUFFIXES)))
DEFAULT_MAX_POINTS = 1_000_000


def load_scan(path: str | Path, max_points: int = DEFAULT_MAX_POINTS,
              confidence_threshold: float = 0.0) -> Scan:
    """Read a scan file (mesh, PLY points, .npy/.exr point map) without modifying it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SCAN_SUFFIXES:
        raise InputError(f"{path.name}: unsupported scan format {suffix!r}; use one of {', '.join(SCAN_SUFFIXES)}")
    if suffix in POINT_MAP_SUFFIXES:
        points, confidence = read_point_map(path)
        scan = scan_from_point_map(points, confidence, path.stem, source=path.name,
                                   confidence_threshold=confidence_threshold, max_points=max_points)
    elif suffix == ".ply" and _ply_is_point_cloud(path):
        scan = _load_ply_points(path, max_points)
    else:
        scan = _load_mesh_scan(path, max_points)
    check_points(scan.points, path.name)
    return scan


# ---------------------------------------------------------------------------------------- point maps

def read_point_map(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) points and optional (H, W) confidence. .npy: (H, W, 3) or (H, W, 4) with confidence
    in the 4th channel. .exr: channels X Y Z or R G B (grouped RGB/RGBA too), confidence in
    'confidence', 'C' or 'A'. Non-finite points are invalid pixels."""
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise InputError(f"{path.name}: cannot read the point map ({type(exc).__name__}: {exc})") from None
        if data.ndim != 3 or data.shape[2] not in (3, 4) or data.shape[0] < 2 or data.shape[1] < 2:
            raise InputError(f"{path.name}: a point map must be an H x W x 3 (or x 4 with confidence) array, "
                             f"got shape {tuple(data.shape)}")
        if not np.issubdtype(data.dtype, np.floating):
            raise InputError(f"{path.name}: a point map must hold floating-point values, got {data.dtype}")
        points = data[..., :3]
        confidence = data[..., 3] if data.shape[2] == 4 else None
        return points, confidence
    return _read_exr(path)


def _read_exr(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        import OpenEXR
    except ImportError:
        raise InputError(f"{path.name}: reading .exr point maps needs the OpenEXR package: pip install openexr") from None
    try:
        with OpenEXR.File(str(path)) as exr:
            channels = {name: np.asarray(ch.pixels) for name, ch in exr.channels().items()}
    except Exception as exc:
        raise InputError(f"{path.name}: cannot read the EXR file ({type(exc).__name__}: {exc})") from None
    flat: dict[str, np.ndarray] = {}
    for name, pixels in channels.items():  # split grouped RGB / RGBA / XYZ channels
        if pixels.ndim == 3:
            for i, letter in enumerate(name if len(name) == pixels.shape[2] else "RGBA"[: pixels.shape[2]]):
                flat[letter] = pixels[..., i]
        else:
            flat[name.split(".")[-1]] = pixels
    for names in (("X", "Y", "Z"), ("x", "y", "z"), ("R", "G", "B")):
        if all(n in flat for n in names):
            points = np.stack([flat[n].astype(np.float32) for n in names], axis=-1)
            break
    else:
        raise InputError(f"{path.name}: the EXR has no X/Y/Z or R/G/B channels for a point map "
                         f"(channels: {', '.join(sorted(flat))})")
    confidence = next((flat[n].astype(np.float32) for n in ("confidence", "C", "A") if n in flat), None)
    if points.shape[0] < 2 or points.shape[1] < 2:
        raise InputError(f"{path.name}: the point map is smaller than 2 x 2 pixels")
    return points, confidence


# ---------------------------------------------------------------------------------------- PLY points

def _ply_is_point_cloud(path: Path) -> bool:
    from plyfile import PlyData

    try:
        header = PlyData.read(str(path), mmap=True)
    except Exception as exc:
        raise InputError(f"{path.name}: cannot read the PLY file ({type(exc).__name__}: {exc})") from None
    names = [e.name for e in header.elements]
    return "vertex" in names and ("face" not in names or header["face"].count == 0)


def _load_ply_points(path: Path, max_points: int) -> Scan:
    from plyfile import PlyData

    ply = PlyData.read(str(path), mmap=True)  # binary PLYs are memory-mapped: thinning reads only what is kept
    vertex = ply["vertex"]
    props = {p.name for p in vertex.properties}
    if not {"x", "y", "z"} <= props:
        raise InputError(f"{path.name}: the PLY vertices have no x, y, z properties")
    count = vertex.count
    notes: list[str] = []
    step = 1
    if count > max_points:
        step = int(np.ceil(count / max_points))
        notes.append(f"{count} points exceed the limit of {max_points}: every {step}th point was used")
    data = vertex.data[::step]
    points = np.stack([np.asarray(data[a], dtype=np.float64) for a in "xyz"], axis=1)
    normals = None
    if {"nx", "ny", "nz"} <= props:
        normals = np.stack([np.asarray(data[a], dtype=np.float64) for a in ("nx", "ny", "nz")], axis=1)
    keep = np.isfinite(points).all(axis=1)
    if normals is not None:
        length = np.linalg.norm(normals, axis=1)
        if np.isfinite(normals).all() and (length > 1e-6).mean() > 0.99:
            normals = normals / np.maximum(length, 1e-12)[:, None]
            keep &= length > 1e-6
        else:
            normals = None
    if (~keep).any():
        notes.append(f"{int((~keep).sum())} points with non-finite coordinates were ignored")
    points = points[keep]
    normals = normals[keep] if normals is not None else None
    return Scan(path.stem, points, normals, None, normals is not None, None, tuple(notes))


# ---------------------------------------------------------------------------------------- meshes

def _load_mesh_scan(path: Path, max_points: int) -> Scan:
    import trimesh

    try:
        loaded = trimesh.load(path, process=False, force="mesh")
    except Exception as exc:
        raise InputError(f"{path.name}: cannot read the scan ({type(exc).__name__}: {exc})") from None
    if isinstance(loaded, trimesh.PointCloud):
        points = np.asarray(loaded.vertices, dtype=np.float64)
        return Scan(path.stem, points[np.isfinite(points).all(axis=1)])
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.vertices) == 0:
        raise InputError(f"{path.name}: the file holds no points or triangles")
    points = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)
    if not np.isfinite(points).all():
        raise InputError(f"{path.name}: vertex positions contain NaN or infinity")
    notes: list[str] = []
    if len(faces) == 0:
        return Scan(path.stem, points)
    if len(points) > max_points:
        step = int(np.ceil(len(points) / max_points))
        notes.append(f"{len(points)} vertices exceed the limit of {max_points}: every {step}th vertex was used "
                     "and the triangles were dropped")
        return Scan(path.stem, points[::step], None, None, False, None, tuple(notes))
    return densify_mesh_front(Scan(path.stem, points, None, faces, True, None, tuple(notes)), max_points)
