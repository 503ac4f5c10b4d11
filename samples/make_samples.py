"""Make the sample assets shipped in samples/ (run: .venv/backend/bin/python samples/make_samples.py).

vase.glb: a closed, thick-walled vase (a surface of revolution of a wavy profile: base, outer wall,
rounded lip, inner wall, inner floor), ~20k triangles, glTF Y up, in metres (0.3 m tall), with
analytic smooth normals and its own UV map from the parametrisation (u around the axis, v along the
profile's arc length, so inside and outside get separate bands), and no material or texture: a
white mesh as an artist would hand it over.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HEIGHT = 0.30
WALL = 0.008


def outer_radius(y: np.ndarray) -> np.ndarray:
    """Wavy vase profile: a belly, a narrow neck, a flared mouth and a fine ripple."""
    s = y / HEIGHT
    return (0.045 + 0.055 * np.exp(-((s - 0.33) / 0.22) ** 2) + 0.03 * s ** 4
            + 0.004 * np.sin(2 * math.pi * 6 * s) * np.sin(math.pi * s))


def profile(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed profile (r, y) from the bottom pole to the inner-floor pole, and its normals (nr, ny)
    pointing out of the solid. The first and last points lie on the axis."""
    n_base, n_lip = samples // 10, samples // 10
    n_wall = (samples - 2 * n_base - n_lip) // 2
    y_out = np.linspace(0, HEIGHT, n_wall)
    y_in = np.linspace(HEIGHT, WALL, n_wall)
    r_top = outer_radius(np.array([HEIGHT]))[0]
    lip = np.linspace(0, math.pi, n_lip + 2)[1:-1]  # over the top, outer to inner edge
    parts = [
        np.stack([np.linspace(0, outer_radius(np.zeros(1))[0], n_base + 1)[:-1], np.zeros(n_base)], 1),
        np.stack([outer_radius(y_out), y_out], 1),
        np.stack([r_top - WALL / 2 + WALL / 2 * np.cos(lip), HEIGHT + WALL / 2 * np.sin(lip)], 1),
        np.stack([outer_radius(y_in) - WALL, y_in], 1),
        np.stack([np.linspace(outer_radius(np.array([WALL]))[0] - WALL, 0, n_base + 1)[1:], np.full(n_base, WALL)], 1),
    ]
    points = np.concatenate(parts)
    # normals: the profile tangent turned clockwise (the curve runs counter-clockwise around the
    # solid's cross-section seen with r to the right and y up, so clockwise points out)
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normals = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
    normals[0], normals[-1] = (0, -1), (0, 1)
    return points, normals


def surface_of_revolution(points: np.ndarray, normals2d: np.ndarray, segments: int):
    """Revolve a profile about +Y. Rings of `segments` + 1 vertices (a seam column for the UVs);
    each pole is one vertex per segment (its UV at the segment's middle), so no triangle is
    degenerate. Returns positions, faces, normals, uvs."""
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    v = 1 - arc / arc[-1]  # v = 1 at the bottom pole (OpenGL UV origin at the image's bottom-left)
    inner = points[1:-1]
    rings = len(inner)
    theta = np.linspace(0, 2 * math.pi, segments + 1)
    cos, sin = np.cos(theta), np.sin(theta)
    ring_pos = np.stack([inner[:, :1] * cos, np.repeat(inner[:, 1:], segments + 1, 1), -inner[:, :1] * sin], -1)
    ring_nrm = np.stack([normals2d[1:-1, :1] * cos, np.repeat(normals2d[1:-1, 1:], segments + 1, 1),
                         -normals2d[1:-1, :1] * sin], -1)
    ring_uv = np.stack([np.broadcast_to(theta / (2 * math.pi), (rings, segments + 1)),
                        np.repeat(v[1:-1, None], segments + 1, 1)], -1)
    mid = (np.arange(segments) + 0.5) / segments
    poles = []
    for point, normal, pv in ((points[0], normals2d[0], v[0]), (points[-1], normals2d[-1], v[-1])):
        poles.append((np.tile([0.0, point[1], 0.0], (segments, 1)), np.tile([0.0, normal[1], 0.0], (segments, 1)),
                      np.stack([mid, np.full(segments, pv)], 1)))
    positions = np.concatenate([ring_pos.reshape(-1, 3), poles[0][0], poles[1][0]])
    normals = np.concatenate([ring_nrm.reshape(-1, 3), poles[0][1], poles[1][1]])
    uvs = np.concatenate([ring_uv.reshape(-1, 2), poles[0][2], poles[1][2]])
    idx = np.arange(rings * (segments + 1)).reshape(rings, segments + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    quads = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    bottom = rings * (segments + 1) + np.arange(segments)
    top = bottom + segments
    caps = np.concatenate([np.stack([bottom, idx[0, :-1], idx[0, 1:]], 1),
                           np.stack([top, idx[-1, 1:], idx[-1, :-1]], 1)])
    faces = np.concatenate([quads, caps])
    # wind every triangle counter-clockwise seen from outside (along the analytic normals)
    tri = positions[faces]
    geometric = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (geometric * normals[faces].mean(1)).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]
    return positions.astype(np.float32), faces.astype(np.int32), normals.astype(np.float32), uvs.astype(np.float32)


def make_vase(path: Path, profile_samples: int = 80, segments: int = 128) -> Path:
    import trimesh

    points, normals2d = profile(profile_samples)
    positions, faces, normals, uvs = surface_of_revolution(points, normals2d, segments)
    mesh = trimesh.Trimesh(positions, faces, vertex_normals=normals, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uvs))
    path.write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene(mesh), include_normals=True))
    return path


def main() -> None:
    path = make_vase(HERE / "vase.glb")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
