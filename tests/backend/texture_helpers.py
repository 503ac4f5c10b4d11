"""Synthetic assets for the texture tests and benchmark: a UV-mapped lathe (vase-like) mesh, a
procedural texture, and reference images rendered from it by an independent ray caster."""
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
                     size: int) -> tuple[np.ndarray, np.ndarray]:
    """The textured mesh seen from the reference view at `size`: RGB on black and the coverage mask.

    Built independently of the code under test (no backend camera, rasterizer or sampler), from the
    conventions as DESIGN.md states them, so a convention error in the pipeline cannot cancel out:
    the box is centred and its largest side scaled to 1; the camera sits at (0, 0, 1.5) looking down
    -Z with +Y up and a vertical FoV of 2 atan(16/35); pixel (0, 0) is the top-left corner; UVs
    have v = 0 at the bottom row of the texture. Rays are cast through pixel centres (one sample,
    Moller-Trumbore in numpy) and the texture is read with OpenCV's bilinear remap."""
    import cv2

    lo, hi = positions.min(0), positions.max(0)
    verts = ((positions - (lo + hi) / 2) / (hi - lo).max()).astype(np.float64)
    focal = 0.5 * size / (16.0 / 35.0)
    eye = np.array([0.0, 0.0, 1.5])
    rows, cols = np.mgrid[0:size, 0:size]
    dirs = np.stack([(cols + 0.5 - size / 2) / focal, -(rows + 0.5 - size / 2) / focal, -np.ones_like(cols, float)], -1)
    dirs = dirs.reshape(-1, 3) / np.linalg.norm(dirs.reshape(-1, 3), axis=1, keepdims=True)
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    e1, e2, to_eye = b - a, c - a, eye - a
    # rows of the image each triangle can cover (the mesh lies in front of the camera): a cheap cull
    tri_rows = size / 2 - focal * verts[faces][..., 1] / (eye[2] - verts[faces][..., 2])
    row_lo, row_hi = np.floor(tri_rows.min(1)) - 1, np.ceil(tri_rows.max(1)) + 1
    best_t = np.full(len(dirs), np.inf)
    best_uv = np.zeros((len(dirs), 2))
    band = 4
    for top in range(0, size, band):
        near = np.nonzero((row_hi >= top) & (row_lo <= top + band))[0]
        if not len(near):
            continue
        sl = slice(top * size, min(top + band, size) * size)
        d = dirs[sl, None, :]  # (R, 1, 3) against the triangles near these rows (1, F, 3)
        f1, f2, fe = e1[near][None], e2[near][None], to_eye[near][None]
        p = np.cross(d, f2)
        det = (f1 * p).sum(-1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        w1 = (fe * p).sum(-1) * inv
        q = np.cross(fe, f1)
        w2 = (d * q).sum(-1) * inv
        t = (f2 * q).sum(-1) * inv
        hit = ok & (w1 >= 0) & (w2 >= 0) & (w1 + w2 <= 1) & (t > 1e-9)
        t = np.where(hit, t, np.inf)
        pick = t.argmin(1)
        ray = np.arange(len(pick))
        best_t[sl] = t[ray, pick]
        w1, w2 = w1[ray, pick], w2[ray, pick]
        corner = uvs[faces[near[pick]]].astype(np.float64)  # (R, 3, 2)
        best_uv[sl] = (1 - w1 - w2)[:, None] * corner[:, 0] + w1[:, None] * corner[:, 1] + w2[:, None] * corner[:, 2]
    mask = np.isfinite(best_t).reshape(size, size)
    h, w = texture.shape[:2]
    map_x = (best_uv[:, 0] * w - 0.5).reshape(size, size).astype(np.float32)
    map_y = ((1.0 - best_uv[:, 1]) * h - 0.5).reshape(size, size).astype(np.float32)
    rgb = cv2.remap(texture.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return (rgb * mask[..., None]).astype(np.float32), mask


def write_rgba(path: Path, rgb: np.ndarray, mask: np.ndarray) -> Path:
    from backend.assets.images import write_png

    return write_png(path, np.concatenate([rgb, mask[..., None].astype(np.float32)], -1))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = diff[mask].mean() if mask is not None else diff.mean()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))
