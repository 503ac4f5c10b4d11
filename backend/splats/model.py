"""3D Gaussians as one typed value, and their initialization from a mesh surface or a point map.

Parameters are kept in the raw (unconstrained) form the 3DGS PLY stores and the optimizers update:
log-scales, unnormalized quaternions (w, x, y, z), opacity logits, and spherical-harmonic
coefficients whose DC term maps to colour as rgb = 0.5 + SH_C0 * dc (the 3DGS convention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..errors import InputError

SH_C0 = 0.28209479177387814
MAX_SH_DEGREE = 3


def sh_coeffs(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_of(coeffs: int) -> int:
    degree = int(round(math.sqrt(coeffs))) - 1
    if degree < 0 or degree > MAX_SH_DEGREE or sh_coeffs(degree) != coeffs:
        raise InputError(f"{coeffs} spherical-harmonic coefficients per channel is not a degree 0-3 layout")
    return degree


def rgb_to_dc(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


def dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    return dc * SH_C0 + 0.5


@dataclass
class Gaussians:
    means: torch.Tensor  # (N, 3) world positions
    log_scales: torch.Tensor  # (N, 3) log standard deviations along the local axes
    quats: torch.Tensor  # (N, 4) rotation (w, x, y, z), not necessarily unit length
    opacity_logits: torch.Tensor  # (N,) logit of the peak opacity
    sh: torch.Tensor  # (N, K, 3) SH coefficients, K = (degree + 1)^2, sh[:, 0] is the DC term

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        shapes = {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Gaussians.{name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"Gaussians.sh has shape {tuple(self.sh.shape)}, expected ({n}, K, 3)")
        sh_degree_of(self.sh.shape[1])

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def map(self, fn) -> "Gaussians":  # type: ignore[no-untyped-def]
        """Apply `fn` to every tensor (to(), detach(), clone(), indexing)."""
        return Gaussians(**{k: fn(v) for k, v in self.tensors().items()})

    def to(self, device: str | torch.device) -> "Gaussians":
        return self.map(lambda t: t.to(device))

    def detach(self) -> "Gaussians":
        return self.map(lambda t: t.detach().clone())

    def select(self, index: torch.Tensor) -> "Gaussians":
        return self.map(lambda t: t[index])

    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scales)

    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    def rotations(self) -> torch.Tensor:
        return quat_to_rotmat(self.quats)

    def covariances(self) -> torch.Tensor:
        """(N, 3, 3) world covariances R S S R^T."""
        rs = self.rotations() * self.scales()[:, None, :]
        return rs @ rs.transpose(1, 2)

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """Pad (zeros) or truncate the SH coefficients to `degree`."""
        k = sh_coeffs(degree)
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            sh = torch.cat([sh, sh.new_zeros(len(self), k - sh.shape[1], 3)], dim=1)
        return replace(self, sh=sh)

    def base_colors(self) -> torch.Tensor:
        """(N, 3) view-independent colour (the DC term), clamped to [0, 1]."""
        return dc_to_rgb(self.sh[:, 0]).clamp(0.0, 1.0)

    def transformed(self, scale: float, offset: np.ndarray | torch.Tensor) -> "Gaussians":
        """The same Gaussians under x -> x * scale + offset (a uniform scale keeps SH directions)."""
        offset_t = torch.as_tensor(np.asarray(offset, dtype=np.float32), device=self.device)
        return replace(self, means=self.means * scale + offset_t, log_scales=self.log_scales + math.log(scale))


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 4) quaternions (w, x, y, z), any length -> (N, 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(quats.shape[:-1] + (3, 3))


def quats_from_z_axis(normals: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) rotating local +Z onto each (unit) normal."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=normals.dtype, device=normals.device).expand_as(normals)
    axis = torch.cross(z, normals, dim=-1)
    w = 1.0 + (normals * z).sum(-1, keepdim=True)
    q = torch.cat([w, axis], dim=-1)
    # opposite vectors: rotate 180 degrees about X
    flip = w[:, 0] < 1e-6
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=normals.dtype, device=normals.device)
    return torch.nn.functional.normalize(q, dim=-1)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _neighbour_distances(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance to the k nearest other points (the 3DGS initial scale)."""
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return np.full(len(points), 0.01, dtype=np.float32)
    k = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k + 1)
    d = dist[:, 1:].mean(axis=1)
    return np.maximum(d, max(float(np.median(d)) * 0.1, 1e-7)).astype(np.float32)


def from_points(points: np.ndarray, colors: np.ndarray | None = None, normals: np.ndarray | None = None,
                sh_degree: int = MAX_SH_DEGREE, opacity: float = 0.1, flatness: float = 0.2) -> Gaussians:
    """Gaussians centred on `points` (N, 3), sized by neighbour distance; coloured by `colors`
    (N, 3) in [0, 1] (grey without). With `normals` each Gaussian is a disc in the surface plane
    (its normal-axis scale is `flatness` times the others)."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    if len(points) == 0:
        raise InputError("no points to initialize Gaussians from")
    if not np.isfinite(points).all():
        raise InputError("initial points contain NaN or infinity")
    if not 0 <= sh_degree <= MAX_SH_DEGREE:
        raise InputError(f"sh_degree must be 0..{MAX_SH_DEGREE}")
    n = len(points)
    scale = np.log(_neighbour_distances(points))
    log_scales = torch.from_numpy(np.repeat(scale[:, None], 3, axis=1))
    if normals is not None:
        nrm = torch.nn.functional.normalize(torch.as_tensor(np.asarray(normals, np.float32)).reshape(-1, 3), dim=-1)
        quats = quats_from_z_axis(nrm)
        log_scales[:, 2] += math.log(flatness)
    else:
        quats = torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1)
    rgb = torch.full((n, 3), 0.5) if colors is None else torch.as_tensor(np.asarray(colors, np.float32)).reshape(-1, 3)
    sh = torch.zeros(n, sh_coeffs(sh_degree), 3)
    sh[:, 0] = rgb_to_dc(rgb.clamp(0.0, 1.0))
    return Gaussians(torch.from_numpy(points).clone(), log_scales.float(), quats.float(),
                     torch.full((n,), _logit(opacity)), sh)


def sample_surface(mesh: Mesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`count` area-uniform samples: points (count, 3), unit normals, face index and barycentrics."""
    rng = np.random.default_rng(seed)
    v = mesh.positions[mesh.faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    face = rng.choice(len(area), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    points = (v[face] * bary[:, :, None]).sum(1)
    normals = mesh.face_normals()[face]
    return points.astype(np.float32), normals, face, bary.astype(np.float32)


def from_mesh(mesh: Mesh, count: int, color_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
              sh_degree: int = MAX_SH_DEGREE, seed: int = 0, opacity: float = 0.1) -> Gaussians:
    """Flat Gaussians on `count` area-uniform surface samples of `mesh`, coloured by
    `color_fn(face_index, barycentrics) -> (count, 3)` (e.g. a texture lookup), grey without."""
    points, normals, face, bary = sample_surface(mesh, count, seed)
    colors = None if color_fn is None else color_fn(face, bary)
    return from_points(points, colors, normals, sh_degree=sh_degree, opacity=opacity)


def from_point_map(points: np.ndarray, colors: np.ndarray | None = None, mask: np.ndarray | None = None,
                   sh_degree: int = MAX_SH_DEGREE, opacity: float = 0.1) -> Gaussians:
    """Gaussians from a point map (H, W, 3) (a depth-unprojected image), one per valid pixel."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 3 or points.shape[2] != 3:
        raise InputError(f"a point map must be (H, W, 3), got {points.shape}")
    valid = np.isfinite(points).all(-1) if mask is None else (np.asarray(mask, bool) & np.isfinite(points).all(-1))
    if not valid.any():
        raise InputError("the point map has no valid pixels")
    cols = None if colors is None else np.asarray(colors, np.float32)[valid]
    return from_points(points[valid], cols, sh_degree=sh_degree, opacity=opacity)
