"""Model-guided completion: the front band steers a 3D latent flow model (guidance.py); the
decoded shape is then held to what the scan saw (empty space in front of the front, inside the
silhouette cone) and joined to a thin shell on the front so the scan is kept."""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ..progress import Progress, no_progress, sub_progress
from .free_space import FreeSpace
from .field import FRONT_REACH_VOXELS, FRONT_TRUST_VOXELS
from .front_map import obliquity
from .geometric import complete_geometric
from .surface import extract_surface, snap_front
from .types import Completion
from .guidance import LatentPrior, guided_sample, latent_mask
from .sdf_band import Grid, band_sdf, cut_back_half


def complete_guided(points: np.ndarray, normals: np.ndarray, direction: np.ndarray, prior: LatentPrior,
                    viewpoint: np.ndarray | None = None, guidance: float = 20.0, steps: int = 25,
                    seed: int = 0, resolution: int = 128, ground: np.ndarray | None = None,
                    name: str = "scan", progress: Progress = no_progress) -> Completion:
    # the weight-free completion frames the object (its extent behind the front) and gives the free space
    geo = complete_geometric(points, normals, direction, viewpoint, resolution, symmetry=False, ground=ground,
                             name=name, progress=sub_progress(progress, 0.0, 0.2))
    fmap = geo.front_map
    lo, hi = geo.vertices.min(axis=0), geo.vertices.max(axis=0)
    centre, scale = (lo + hi) / 2, float((hi - lo).max()) * 1.1  # model cube [-0.5, 0.5]^3 = scale
    rot = np.asarray(getattr(prior, "scan_to_grid", np.eye(3)), dtype=np.float64)
    to_model = lambda p: ((p - centre) / scale) @ rot.T  # noqa: E731
    grid = Grid(np.full(3, -0.5), 1.0 / prior.grid, prior.grid)
    front = to_model(points)
    view_model = None if viewpoint is None else to_model(viewpoint[None])[0]
    band = band_sdf(front, grid, thickness=2.0 * grid.voxel)
    band = cut_back_half(band, front, grid, rot @ direction, view_model)
    band_t = torch.from_numpy(band)
    x_fg = prior.encode(band_t)
    mask = latent_mask(band_t, x_fg.shape).to(x_fg.device)
    x_fg = x_fg * mask
    generator = torch.Generator().manual_seed(seed)
    x = guided_sample(prior, x_fg, mask, guidance, steps, generator, progress=sub_progress(progress, 0.2, 0.8))
    field = prior.decode(x).detach().cpu().numpy().astype(np.float64)  # < 0 inside, model grid
    voxel = fmap.voxel
    t_min = 2.5 * voxel * obliquity(fmap)

    free_space = FreeSpace(fmap, points)
    reach, trust = FRONT_REACH_VOXELS * voxel, FRONT_TRUST_VOXELS * voxel

    def combined(local: np.ndarray) -> np.ndarray:  # one constant-depth slice
        world = fmap.view.to_world(local.reshape(-1, 3))
        idx = (to_model(world) + 0.5) / grid.voxel - 0.5  # fractional node index
        gen = ndimage.map_coordinates(field, idx.T, order=1, mode="nearest").reshape(local.shape[:-1])
        w = local[..., 2]
        s = fmap.view.scale(w)
        ab = local[..., :2] / (s[..., None] if fmap.view.perspective else 1.0)
        lateral = fmap.sample(fmap.lateral, ab) * s
        front = free_space.front_term(local, reach, trust, where=lateral < reach)  # > 0 in seen-empty space
        free = np.maximum(front, lateral)  # > 0 where the scanner saw empty space
        shell = np.maximum(free, -front - fmap.sample(t_min, ab))
        return np.minimum(np.maximum(gen * grid.voxel * scale, free), shell)

    back = fmap.depth + scale
    vertices, faces, dropped = extract_surface(fmap, back, ground, field_fn=combined)
    vertices, _ = snap_front(vertices, faces, points, normals, fmap.view, voxel)
    progress(1.0, "surface")
    notes = (f"guided by {prior.name} (lambda {guidance:g}, {steps} steps, seed {seed})",)
    if dropped:
        notes += (f"{dropped} small disconnected piece(s) were removed",)
    return Completion(vertices, faces, fmap, back, None, geo.notes + notes)
