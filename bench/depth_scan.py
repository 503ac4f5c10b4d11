"""Simulated perspective front scans of ground-truth meshes (benchmark and tests, not shipped): a
depth render from one camera with the project's rasterizer, turned into a point map, plus depth
noise along the rays."""
from __future__ import annotations

import numpy as np

from backend.assets.mesh import Mesh
from backend.assets.cameras import Camera, look_at


def scan_camera(direction: np.ndarray, distance: float = 2.5, vfov_deg: float = 35.0, size: int = 256,
                target: np.ndarray | None = None) -> Camera:
    """A camera `distance` from `target` looking along `direction` (the scan direction)."""
    d = np.asarray(direction, dtype=np.float64)
    d /= np.linalg.norm(d)
    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0]) if abs(d[1]) < 0.95 else np.array([0.0, 0.0, 1.0])
    return Camera.from_fov(look_at(target - distance * d, target, up), vfov_deg, size, size)


def simulate_point_map(mesh: Mesh, camera: Camera, noise: float = 0.0, seed: int = 0,
                       rasterizer: str = "auto") -> np.ndarray:
    """(H, W, 3) float32 point map of what `camera` sees (NaN where it sees nothing), each point
    moved along its ray by Gaussian noise of std `noise` (world units)."""
    from backend.render.gbuffer import render_gbuffers

    g = render_gbuffers(mesh, [camera], rasterizer=rasterizer)
    pos = g.position[0].numpy().astype(np.float64)
    mask = g.mask[0].numpy()
    if noise > 0:
        origin, rays = camera.pixel_rays()
        pos = pos + rays * np.random.default_rng(seed).normal(0.0, noise, size=mask.shape)[..., None]
    pos[~mask] = np.nan
    return pos.astype(np.float32)


def asymmetric_blob(subdivisions: int = 5) -> Mesh:
    """A closed lumpy blob with no mirror symmetry (benchmark and tests): a stretched sphere with
    two incommensurate low-frequency waves and three bumps of different sizes in general positions."""
    import trimesh

    from backend.assets.mesh import make_mesh

    s = trimesh.creation.icosphere(subdivisions)
    v = np.asarray(s.vertices, dtype=np.float64)
    r = 0.42 + 0.05 * np.sin(3.1 * v[:, 0] + 1.3 * v[:, 1] + 0.7) + 0.04 * np.cos(2.3 * v[:, 1] - 1.7 * v[:, 2] + 0.2)
    bumps = (((0.6, 0.5, 0.62), 0.16, 0.35), ((-0.7, 0.1, 0.7), 0.10, 0.3), ((0.1, -0.8, 0.6), 0.12, 0.4))
    for centre, amp, width in bumps:
        c = np.array(centre) / np.linalg.norm(centre)
        r = r + amp * np.exp(-np.sum((v - c) ** 2, axis=1) / width**2)
    return make_mesh(v * r[:, None] * np.array([1.2, 0.9, 0.8]), np.asarray(s.faces))
