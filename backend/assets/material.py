"""Base colour of a mesh file's material: the texture image (times its colour factor), and lookup.

The file is loaded the same way `load_mesh` loads it (trimesh, process=False, the same scene
flattening), so the texture matches `Mesh.uvs`: several textured primitives are packed into one
atlas by trimesh exactly when `load_mesh` concatenates them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


def load_base_color(path: str | Path) -> np.ndarray | None:
    """The base-colour texture of the mesh in `path` as (H, W, 3) float32 in [0, 1] (sRGB values,
    baseColorFactor applied), or None when the material has no texture."""
    import trimesh

    from .mesh import MESH_SUFFIXES, _single_with_transform

    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES or not path.is_file():
        raise InputError(f"{path.name}: not a readable mesh file")
    try:
        loaded = trimesh.load(path, process=False, maintain_order=True)
        if isinstance(loaded, trimesh.Scene):
            if not any(isinstance(g, trimesh.Trimesh) for g in loaded.geometry.values()):
                return None
            loaded = loaded.to_geometry() if len(loaded.graph.nodes_geometry) > 1 else _single_with_transform(loaded)
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise InputError(f"{path.name}: cannot read the mesh ({type(exc).__name__}: {exc})") from None
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
