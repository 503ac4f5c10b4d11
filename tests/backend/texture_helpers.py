"""Synthetic assets for the texture tests and benchmark: a UV-mapped lathe (vase-like) mesh, a
procedural texture, and reference images rendered from it with the project's rasterizer."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def lathe_mesh(around: int = 48, up: int = 24, closed: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vase-like surface of revolution about +Y with a cylindrical UV map (u around, v up).
    The UV seam column is duplicated (as exporters do). With `closed`, a bottom cap (own UVs)."""
    t = np.linspace(0.0, 1.0, up + 1)
    radius = 0.28 + 0.12 * np.sin(np.pi * t * 1.6 + 0.3) + 0.05 * t
    height = t - 0.5
    angles = np.linspace(0.0, 2 * np.pi, around + 1)
    a, r = np.meshgrid(angles, radius)
    _, y = np.meshgrid(angles, height)
    positions = np.stack([r * np.sin(a), y, r * np.cos(a)], -1).reshape(-1, 3)
    uu, vv = np.meshgrid(np.linspace(0, 1, around + 1), t)
    uvs = np.stack([uu * 0.98 + 0.01, vv * 0.78 + 0.01], -1).reshape(-1, 2)  # leave room for the cap
    faces = []
    for i in range(up):
        for j in range(around):
            p0, p1 = i * (around + 1) + j, i * (around + 1) + j + 1
            q0, q1 = p0 + around + 1, p1 + around + 1
            faces += [[p0, p1, q1], [p0, q1, q0]]
    faces = np.array(faces)
    if closed:
        centre = len(positions)
        ring = np.arange(around)
        cap_pos = np.concatenate([[[0.0, -0.5, 0.0]], positions[ring]])
        cap_uv = np.concatenate([[[0.5, 0.9]], 0.5 + 0.08 * np.stack([np.sin(angles[:-1]), np.cos(angles[:-1])], 1)
                                 * np.array([1.0, 1.0])])
        cap_uv[1:, 1] = 0.9 + 0.08 * np.cos(angles[:-1])
        cap_faces = np.stack([np.full(around, centre), centre + 1 + (ring + 1) % around, centre + 1 + ring], 1)
        positions = np.concatenate([positions, cap_pos])
        uvs = np.concatenate([uvs, cap_uv])
        faces = np.concatenate([faces, cap_faces])
    return positions.astype(np.float32), faces.astype(np.int32), uvs.astype(np.float32)


def save_glb(path: Path, positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray) -> Path:
    import trimesh

    mesh = trimesh.Trimesh(positions, faces, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uvs))
    mesh.export(path)
    return path


def procedural_texture(size: int = 256, seed: int = 0) -> np.ndarray:
    """Smooth coloured stripes and blobs: detailed enough to show misplacement, smooth enough
    that bilinear resampling reproduces it."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    tex = np.stack([0.5 + 0.35 * np.sin(2 * np.pi * (3 * u + 0.5 * v)),
                    0.5 + 0.35 * np.sin(2 * np.pi * (2 * v) + 1.0),
                    0.5 + 0.35 * np.cos(2 * np.pi * (u - v))], -1)
    for _ in range(6):
        cu, cv, s = rng.random(), rng.random(), 0.03 + 0.05 * rng.random()
        blob = np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * s * s))[..., None]
        tex = tex * (1 - blob) + rng.random(3) * blob
    return tex.astype(np.float32)


def render_reference(positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray,
                     size: int, rasterizer: str = "torch") -> tuple[np.ndarray, np.ndarray]:
    """The textured mesh seen from the default reference camera (frame 0 of the orbit) at
    `size`: RGB on black and the coverage mask."""
    from backend.assets.mesh import make_mesh, normalize
    from backend.pipelines.texture import reference_camera, sample_texture
    from backend.render.gbuffer import render_gbuffers

    mesh = make_mesh(positions, faces, uvs)
    norm_mesh, norm = normalize(mesh)
    camera, _ = reference_camera(size, size, norm)
    g = render_gbuffers(norm_mesh, [camera], rasterizer)
    rgb = sample_texture(mesh, texture, g.tri_id, g.bary, g.mask)[0]
    return rgb, g.mask[0].numpy()


def write_rgba(path: Path, rgb: np.ndarray, mask: np.ndarray) -> Path:
    from backend.assets.images import write_png

    return write_png(path, np.concatenate([rgb, mask[..., None].astype(np.float32)], -1))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = diff[mask].mean() if mask is not None else diff.mean()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))
