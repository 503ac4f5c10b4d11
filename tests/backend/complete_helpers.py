"""Shared fixtures for the back-completion tests: synthetic scans and a tiny random latent prior."""
from __future__ import annotations

import numpy as np
import torch
import trimesh

from backend.assets.mesh import make_mesh
from bench.depth_scan import asymmetric_blob, scan_camera, simulate_point_map


def sphere_point_map(size: int = 96, noise: float = 0.001, centre=(0.0, 0.0, 0.0), radius: float = 0.5,
                     direction=(0.0, -0.3, -1.0)) -> np.ndarray:
    s = trimesh.creation.icosphere(3, radius=radius)
    s.apply_translation(centre)
    return simulate_point_map(make_mesh(s.vertices, s.faces), scan_camera(np.array(direction), size=size),
                              noise=noise, rasterizer="torch")


def step_point_map(size: int = 128, noise: float = 0.001) -> np.ndarray:
    """A plate held in front of a bigger block (by a post the scanner never sees), seen slightly
    obliquely: occluding edges with depth jumps of ~10 voxels and the plate's side walls seen
    almost edge-on."""
    near = trimesh.creation.box([0.5, 0.5, 0.12])
    near.apply_translation([0.03, 0.02, 0.25])
    near.apply_transform(trimesh.transformations.rotation_matrix(0.2, [0, 0, 1]))
    far = trimesh.creation.box([1.0, 0.9, 0.3])
    far.apply_translation([0, 0, -0.1])
    post = trimesh.creation.cylinder(radius=0.05, height=0.2)
    post.apply_translation([0.03, 0.02, 0.1])
    m = trimesh.util.concatenate([near, far, post])
    return simulate_point_map(make_mesh(m.vertices, m.faces), scan_camera(np.array([0.15, -0.1, -1.0]), size=size),
                              noise=noise, rasterizer="torch")


def blob_point_map(size: int = 96, noise: float = 0.001) -> tuple[np.ndarray, trimesh.Trimesh]:
    """The asymmetric blob (no mirror plane) scanned from one side, and its ground truth."""
    blob = asymmetric_blob(4)
    pm = simulate_point_map(blob, scan_camera(np.array([0.3, -0.2, -1.0]), size=size), noise=noise, rasterizer="torch")
    return pm, trimesh.Trimesh(blob.positions, blob.faces, process=False)


class TinyPrior(torch.nn.Module):
    """A randomly initialised model with the LatentPrior interface: 16^3 SDF <-> 4 x 4^3 latent."""

    name = "tiny"
    grid = 16
    latent_shape = (4, 4, 4, 4)

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.enc = torch.nn.Conv3d(1, 4, 4, stride=4)
        self.vel = torch.nn.Sequential(torch.nn.Conv3d(5, 8, 3, padding=1), torch.nn.SiLU(),
                                       torch.nn.Conv3d(8, 4, 3, padding=1))
        self.dec = torch.nn.ConvTranspose3d(4, 1, 4, stride=4)

    @torch.no_grad()
    def encode(self, sdf: torch.Tensor) -> torch.Tensor:
        return self.enc(sdf.float()[None, None])

    def timesteps(self, steps: int):
        return list(np.linspace(1.0, 0.0, steps + 1))

    @torch.no_grad()
    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.vel(torch.cat([x, torch.full_like(x[:, :1], t)], dim=1))

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.dec(latent)[0, 0]


def ellipsoid_point_map(size: int = 128, noise: float = 0.0015) -> tuple[np.ndarray, trimesh.Trimesh]:
    """The benchmark's rotated ellipsoid (semi-axes 0.5, 0.35, 0.3) scanned from one side, and its truth."""
    rot = trimesh.transformations.rotation_matrix
    gt = trimesh.creation.icosphere(4)
    gt.apply_scale([0.5, 0.35, 0.3])
    gt.apply_transform(rot(0.5, [0, 1, 0]) @ rot(0.3, [1, 0, 0]))
    pm = simulate_point_map(make_mesh(gt.vertices, gt.faces), scan_camera(np.array([-0.3, -0.25, -1.0]), size=size),
                            noise=noise, rasterizer="torch")
    return pm, gt


def grazing_plane_point_map(size: int = 128, noise: float = 0.0015, tilt_deg: float = 78.0) -> np.ndarray:
    """A flat square seen at `tilt_deg` from its normal (a lid seen from the side): neighbouring
    front-map nodes lie several voxels apart in depth although the surface is continuous."""
    square = trimesh.creation.box([0.8, 0.8, 0.02])
    square.apply_transform(trimesh.transformations.rotation_matrix(np.radians(tilt_deg), [1, 0, 0]))
    return simulate_point_map(make_mesh(square.vertices, square.faces), scan_camera(np.array([0.0, 0.0, -1.0]), size=size),
                              noise=noise, rasterizer="torch")
