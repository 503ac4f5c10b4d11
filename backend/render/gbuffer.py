"""G-buffers: one interface over three rasterizers (moderngl/EGL, plain PyTorch, nvdiffrast).

A rasterizer only finds, per pixel, the visible triangle and its perspective-correct barycentrics;
position, normal and depth are interpolated here, the same way for every rasterizer, so their
outputs are comparable to the last bit wherever they agree on the triangle.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..errors import InputError
from ..progress import Progress, no_progress
from ..assets.cameras import Camera

RASTERIZERS = ("auto", "moderngl", "torch", "nvdiffrast")


@dataclass(frozen=True)
class GBuffers:
    """Per-view buffers, all (N, H, W, ...) torch tensors on one device; background pixels are 0
    (tri_id -1). Depth is the distance along the camera's viewing axis; normals are unit
    interpolated vertex normals in world space; positions are world space."""

    mask: torch.Tensor  # (N, H, W) bool
    depth: torch.Tensor  # (N, H, W) float32
    tri_id: torch.Tensor  # (N, H, W) int32, -1 where empty
    bary: torch.Tensor  # (N, H, W, 3) float32, weights of the triangle's three corners
    position: torch.Tensor  # (N, H, W, 3) float32
    normal: torch.Tensor  # (N, H, W, 3) float32

    def __len__(self) -> int:
        return self.mask.shape[0]


class Rasterizer(Protocol):
    name: str

    def rasterize(self, mesh: Mesh, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        """One view: triangle id (H, W) int32 (-1 = empty) and barycentrics (H, W, 3) float32."""
        ...


def get_rasterizer(name: str = "auto") -> Rasterizer:
    """'auto' picks nvdiffrast on CUDA, else moderngl (EGL), else the PyTorch reference, and warns
    when it could not take the first choice (`rasterizer_report` says which it took and why)."""
    if name not in RASTERIZERS:
        raise InputError(f"unknown rasterizer {name!r}: use one of {', '.join(RASTERIZERS)}")
    if name == "auto":
        chosen, why = _auto_choice()
        if why:
            warnings.warn(f"rasterizer auto: using {chosen} ({why})", RuntimeWarning, stacklevel=2)
        return _make(chosen)
    return _make(name)


def rasterizer_report(name: str = "auto") -> dict[str, str]:
    """For report.json: the rasterizer `name` resolves to and, for 'auto', why it is not the first choice."""
    if name != "auto":
        return {"rasterizer": name}
    chosen, why = _auto_choice()
    return {"rasterizer": chosen, **({"rasterizer_fallback": why} if why else {})}


@functools.lru_cache(maxsize=1)
def _auto_choice() -> tuple[str, str | None]:
    """(name, reason it is not the first choice or None); decided once per process."""
    reasons = []  # without CUDA, moderngl is the first choice
    for candidate in ("nvdiffrast", "moderngl") if torch.cuda.is_available() else ("moderngl",):
        try:
            _make(candidate)
            return candidate, "; ".join(reasons) or None
        except InputError as exc:
            reasons.append(str(exc))
    return "torch", "; ".join(reasons)


def _make(name: str) -> Rasterizer:
    if name == "nvdiffrast":
        if not torch.cuda.is_available():
            raise InputError("the nvdiffrast rasterizer needs a CUDA GPU, and none is available")
        try:
            from .raster_cuda import NvdiffrastRasterizer
        except ImportError:
            raise InputError("nvdiffrast is not installed: pip install diffrp-nvdiffrast") from None
        return NvdiffrastRasterizer()
    if name == "moderngl":
        try:
            from .raster_gl import ModernGLRasterizer

            return ModernGLRasterizer()
        except Exception as exc:  # no EGL driver / moderngl missing
            raise InputError(f"moderngl (EGL) rasterizer unavailable: {exc}") from None
    from .raster_torch import TorchRasterizer

    return TorchRasterizer()


def interpolate(mesh: Mesh, camera: Camera, tri_id: torch.Tensor, bary: torch.Tensor) -> GBuffers:
    """Build one view's GBuffers (batch of 1) from triangle ids and barycentrics."""
    device = tri_id.device
    mask = tri_id >= 0
    faces = torch.as_tensor(mesh.faces, dtype=torch.long, device=device)
    corners = faces[tri_id.clamp(min=0).long()]  # (H, W, 3)
    b = bary.unsqueeze(-1) * mask[..., None, None]
    pos = torch.as_tensor(mesh.positions, device=device)
    nrm = torch.as_tensor(mesh.normals, device=device)
    position = (pos[corners] * b).sum(-2)
    normal = torch.nn.functional.normalize((nrm[corners] * b).sum(-2), dim=-1)
    eye = torch.as_tensor(camera.position, dtype=torch.float32, device=device)
    forward = torch.as_tensor(camera.forward, dtype=torch.float32, device=device)
    depth = ((position - eye) * forward).sum(-1) * mask
    return GBuffers(mask[None], depth[None], tri_id[None].int(), (bary * mask[..., None])[None],
                    position[None], normal[None])


def stack(buffers: Sequence[GBuffers]) -> GBuffers:
    return GBuffers(*(torch.cat([getattr(g, f) for g in buffers]) for f in GBuffers.__dataclass_fields__))


def render_gbuffers(mesh: Mesh, cameras: Sequence[Camera], rasterizer: str | Rasterizer = "auto",
                    progress: Progress = no_progress) -> GBuffers:
    """G-buffers of `mesh` seen from each camera (all cameras must share one image size)."""
    if not cameras:
        raise InputError("no cameras to render")
    if len({(c.width, c.height) for c in cameras}) != 1:
        raise InputError("all cameras of one render must share an image size")
    raster = get_rasterizer(rasterizer) if isinstance(rasterizer, str) else rasterizer
    views = []
    batch = getattr(raster, "batch_size", 1) if hasattr(raster, "rasterize_batch") else 1
    for start in range(0, len(cameras), batch):
        chunk = cameras[start:start + batch]
        if batch > 1:  # e.g. nvdiffrast: many views per call
            results = list(zip(*raster.rasterize_batch(mesh, chunk)))  # type: ignore[attr-defined]
        else:
            results = [raster.rasterize(mesh, chunk[0])]
        for cam, (tri_id, bary) in zip(chunk, results):
            views.append(interpolate(mesh, cam, tri_id, bary))
        progress((start + len(chunk)) / len(cameras), f"rasterizing ({raster.name})")
    return stack(views)
