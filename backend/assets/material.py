"""Base colour of a mesh file's material: the texture image (times its colour factor), and lookup.

A textured mesh and its texture are read together, by trimesh (which reads materials and packs the
textures of several primitives into one atlas, remapping their UVs), so `Mesh.uvs` always match
the texture. Geometry alone (`load_mesh`) reads glTF with the project's glTF reader.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .mesh import MESH_SUFFIXES, Mesh, load_trimesh, mesh_from_trimesh


def load_textured_mesh(path: str | Path) -> tuple[Mesh, np.ndarray | None]:
    """The mesh in `path` with UVs matching its base-colour texture, and that texture as (H, W, 3)
    float32 in [0, 1] (sRGB values, baseColorFactor applied), None when the material has none."""
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES or not path.is_file():
        raise InputError(f"{path.name}: not a readable mesh file")
    loaded = load_trimesh(path)
    return mesh_from_trimesh(loaded, path.name), _base_color(loaded)


def load_base_color(path: str | Path) -> np.ndarray | None:
    """The base-colour texture of the mesh in `path` (see `load_textured_mesh`), or None."""
    return load_textured_mesh(path)[1]


def _base_color(loaded) -> np.ndarray | None:  # type: ignore[no-untyped-def]
    material = getattr(getattr(loaded, "visual", None), "material", None)
    if material is None:
        return None
    image = getattr(material, "baseColorTexture", None)
    factor = getattr(material, "baseColorFactor", None)
    if image is None:
        image = getattr(material, "image", None)  # OBJ/MTL map_Kd
        factor = None
    if image is None:
        return None
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if factor is not None:
        f = np.asarray(factor, dtype=np.float32).reshape(-1)[:3]
        rgb = rgb * (f / 255.0 if f.max() > 1.0 else f)
    return np.ascontiguousarray(rgb)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of `texture` (H, W, C) at UVs (..., 2) with the OpenGL origin (v = 0 at the
    bottom row) and repeat wrapping (glTF's default sampler)."""
    h, w = texture.shape[:2]
    uv = np.asarray(uv, dtype=np.float64)
    x = np.mod(uv[..., 0], 1.0) * w - 0.5
    y = np.mod(1.0 - uv[..., 1], 1.0) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = np.mod(x0, w), np.mod(x0 + 1, w)
    ya, yb = np.mod(y0, h), np.mod(y0 + 1, h)
    top = texture[ya, xa] * (1 - fx) + texture[ya, xb] * fx
    bottom = texture[yb, xa] * (1 - fx) + texture[yb, xb] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def downsample_texture(texture: np.ndarray, max_side: int) -> np.ndarray:
    """Area-filtered copy no larger than `max_side` (a one-level mip for minified lookups)."""
    h, w = texture.shape[:2]
    if max(h, w) <= max_side:
        return texture
    import cv2

    scale = max_side / max(h, w)
    return cv2.resize(texture, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
