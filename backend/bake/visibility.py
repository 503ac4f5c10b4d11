"""Per-view visibility of surface points: depth test against the view's own G-buffer depth.

A point is visible in a view when it projects inside the image onto a *valid* pixel (covered by
the mesh, inside the view's mask if it has one, and at least `edge_margin` pixels away from
silhouettes and depth jumps, where misaligned generated frames show background or the occluder),
its depth agrees with the rendered depth within the tolerance, and it faces the camera.
Confidence is the cosine between the surface normal and the direction to the camera.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..progress import Progress, no_progress
from ..assets.cameras import Camera


@dataclass(frozen=True)
class ViewDepth:
    """What visibility needs of N views of one size."""

    w2c: torch.Tensor  # (N, 3, 4) float32, world relative to `origin`
    intrinsics: torch.Tensor  # (N, 4) float32: fx, fy, cx, cy
    eye: torch.Tensor  # (N, 3) float32 camera positions relative to `origin`
    depth: torch.Tensor  # (N, H, W) float32, 0 where the mesh is absent
    valid: torch.Tensor  # (N, H, W) bool, pixels that may be read
    tolerance: float  # depth test, world units
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))  # world position of the local origin

    def __len__(self) -> int:
        return self.depth.shape[0]

    def local(self, points: np.ndarray) -> torch.Tensor:
        """World points (M, 3) -> float32 points relative to `origin`, as visibility() takes them."""
        return torch.as_tensor(np.asarray(points, dtype=np.float64) - self.origin, dtype=torch.float32)


def camera_tensors(cameras: Sequence[Camera], origin: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 camera data for points given relative to `origin` (the mesh's box centre keeps
    float32 exact enough wherever the mesh sits)."""
    o = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    w2c = np.stack([c.w2c()[:3] for c in cameras])
    w2c[:, :, 3] += w2c[:, :, :3] @ o
    intr = torch.as_tensor([[c.fx, c.fy, c.cx, c.cy] for c in cameras], dtype=torch.float32)
    eye = torch.as_tensor(np.stack([c.position for c in cameras]) - o, dtype=torch.float32)
    return torch.as_tensor(w2c, dtype=torch.float32), intr, eye


def rasterize_views(mesh: Mesh, cameras: Sequence[Camera], rasterizer: str = "auto",
                    progress: Progress = no_progress, uv: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Depth (N, H, W) float32 (0 = empty) of the mesh in each view, and per-pixel UVs
    (N, H, W, 2) when `uv` (NaN where empty), from the project's G-buffer rasterizers."""
    from ..render.gbuffer import get_rasterizer

    raster = get_rasterizer(rasterizer)
    faces = torch.as_tensor(mesh.faces, dtype=torch.long)
    pos = torch.as_tensor(mesh.positions, dtype=torch.float64)
    uvs = torch.as_tensor(mesh.uvs) if uv and mesh.uvs is not None else None
    h, w = cameras[0].height, cameras[0].width
    depth = torch.zeros((len(cameras), h, w), dtype=torch.float32)
    uv_maps = torch.full((len(cameras), h, w, 2), float("nan")) if uvs is not None else None
    for i, cam in enumerate(cameras):
        tri, bary = raster.rasterize(mesh, cam)
        flat_tri = tri.reshape(-1)
        idx = torch.nonzero(flat_tri >= 0).squeeze(1)
        corners = faces[flat_tri[idx].long()]
        w2c = torch.as_tensor(cam.w2c()[:3])
        z = -(pos @ w2c[2, :3] + w2c[2, 3])  # depth of every vertex along the view axis
        b = bary.reshape(-1, 3)[idx]
        depth[i].view(-1)[idx] = (z[corners].float() * b).sum(1)
        if uv_maps is not None:
            uv_maps[i].view(-1, 2)[idx] = (uvs[corners] * b[..., None]).sum(1)
        progress((i + 1) / len(cameras), f"rendering depth ({raster.name})")
    return depth, uv_maps


def valid_pixels(depth: torch.Tensor, masks: torch.Tensor | None, edge_margin: int, jump: float) -> torch.Tensor:
    """Covered pixels (and inside the image masks) at least `edge_margin` px from any silhouette
    or depth discontinuity (a second difference of depth larger than `jump`)."""
    covered = depth > 0
    if masks is not None:
        covered &= masks.bool()
    if edge_margin <= 0:
        return covered
    d = torch.where(covered, depth, torch.zeros_like(depth))
    edge = torch.zeros_like(covered)
    for dim in (1, 2):
        n = d.shape[dim]
        ca, cb = covered.narrow(dim, 0, n - 1), covered.narrow(dim, 1, n - 1)
        step = ca != cb  # silhouettes
        edge.narrow(dim, 0, n - 1).logical_or_(step)
        edge.narrow(dim, 1, n - 1).logical_or_(step)
        # depth jumps: the second difference, which stays ~0 on tilted planes and creases
        a, b, c = d.narrow(dim, 0, n - 2), d.narrow(dim, 1, n - 2), d.narrow(dim, 2, n - 2)
        both = covered.narrow(dim, 0, n - 2) & covered.narrow(dim, 2, n - 2)
        jumpy = both & ((a - 2 * b + c).abs() > jump)
        for shift in (0, 1, 2):
            edge.narrow(dim, shift, n - 2).logical_or_(jumpy)
    k = 2 * edge_margin - 1
    near_edge = torch.nn.functional.max_pool2d(edge[:, None].float(), k, stride=1, padding=k // 2)[:, 0] > 0
    return covered & ~near_edge


def project(points: torch.Tensor, views: ViewDepth, view: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel x, y and depth (M,) of points (M, 3) float32 in `view` (an index or (M,) indices)."""
    w2c, intr = views.w2c[view], views.intrinsics[view]
    if w2c.dim() == 2:
        cam = points @ w2c[:, :3].T + w2c[:, 3]
        intr = intr.expand(len(points), 4)
    else:
        cam = torch.einsum("mij,mj->mi", w2c[:, :, :3], points) + w2c[:, :, 3]
    z = -cam[:, 2]
    safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    px = intr[:, 0] * cam[:, 0] / safe + intr[:, 2]
    py = -intr[:, 1] * cam[:, 1] / safe + intr[:, 3]
    return px, py, z


def visibility(points: torch.Tensor, normals: torch.Tensor, views: ViewDepth,
               view: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Confidence (M,) float32 (0 where not visible) of points (M, 3) float32 relative to the
    views' origin, with unit normals (M, 3), in `view`, and their pixel x, y."""
    px, py, z = project(points, views, view)
    h, w = views.depth.shape[1:]
    ix, iy = px.floor().long(), py.floor().long()
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (z > 0)
    ix, iy = ix.clamp(0, w - 1), iy.clamp(0, h - 1)
    single = not torch.is_tensor(view) or view.dim() == 0
    if single:  # one view: index its own 2-D maps
        flat = iy * w + ix
        valid = views.valid[view].reshape(-1)[flat]
        rendered = views.depth[view].reshape(-1)[flat]
        to_eye = views.eye[view] - points
        focal = views.intrinsics[view, 0]
    else:
        valid = views.valid[view, iy, ix]
        rendered = views.depth[view, iy, ix]
        to_eye = views.eye[view] - points
        focal = views.intrinsics[view, 0]
    cos = (normals * to_eye).sum(1) / to_eye.norm(dim=1).clamp(min=1e-12)
    # the nearest pixel's depth is up to ~half a pixel away on the surface: on a surface tilted by
    # theta that is (z / f) * tan(theta) / sqrt(2) of depth, added to the tolerance
    c = cos.clamp(0.05, 1)
    slack = views.tolerance + 0.75 * z.abs() / focal * (1 - c * c).sqrt() / c
    seen = inside & valid & ((rendered - z).abs() < slack) & (cos > 0)
    conf = torch.where(seen, cos, torch.zeros_like(cos))
    return conf, px, py
