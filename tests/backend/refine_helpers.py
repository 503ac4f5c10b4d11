"""Small inputs for the refine tests: a textured can GLB, a subject photo, Gaussians on the can."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.synthetic import can_mesh, plaid_texture


def can_glb(path: Path, texture_size: int = 64, n: int = 32) -> Path:
    import trimesh
    from PIL import Image

    mesh = can_mesh(n=n)
    image = Image.fromarray((plaid_texture(texture_size) * 255 + 0.5).astype(np.uint8))
    visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=trimesh.visual.material.PBRMaterial(baseColorTexture=image))
    trimesh.Trimesh(mesh.positions, mesh.faces, process=False, visual=visual).export(path)
    return path


def subject_png(path: Path, size: int = 48) -> Path:
    from PIL import Image

    rgb = (plaid_texture(size) * 255).astype(np.uint8)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[size // 6:-size // 6, size // 4:-size // 4, :3] = rgb[size // 6:-size // 6, size // 4:-size // 4]
    rgba[size // 6:-size // 6, size // 4:-size // 4, 3] = 255
    Image.fromarray(rgba).save(path)
    return path


def can_ply(path: Path, count: int = 400) -> Path:
    from backend.pipelines.reconstruct import texture_color_fn
    from backend.splats.model import from_mesh
    from backend.splats.ply import write_ply

    mesh = can_mesh(n=32)
    g = from_mesh(mesh, count, texture_color_fn(mesh, plaid_texture(64)), sh_degree=0, opacity=0.9)
    return write_ply(g, path)
