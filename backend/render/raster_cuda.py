"""nvdiffrast G-buffer rasterizer on CUDA (package `diffrp-nvdiffrast`, imported as nvdiffrast).

Install on a GPU machine with `pip install diffrp-nvdiffrast` (it compiles its CUDA kernels on
first use, so the CUDA toolkit and ninja must be there); it is not in requirements.txt because it
cannot be built without CUDA.

nvdiffrast's output per pixel is (u, v, z/w, triangle id + 1) with rows bottom-up (OpenGL's
window convention); (u, v) are the perspective-correct weights of corners 0 and 1, corner 2
gets 1 - u - v. Its rasterizer snaps vertices to a sub-pixel grid, so, as for the OpenGL path,
`barycentrics.resolve` re-decides the few pixels whose centre lies outside their triangle and
recomputes the barycentrics in float64 the way the PyTorch reference does. Views are rasterized
in batches (nvdiffrast's instanced mode); results stay on the GPU.
"""
from __future__ import annotations

import weakref
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..errors import InputError
from .barycentrics import project_vertices, resolve
from ..assets.cameras import Camera
from .raster_base import near_far


def decode_triangle_ids(raw: torch.Tensor) -> torch.Tensor:
    """nvdiffrast's float-coded `triangle id + 1` (exact floats up to 2**24, a biased bit pattern
    above) -> int32 triangle ids, -1 where empty."""
    as_int = torch.where(raw <= 16777216.0, raw.to(torch.int32), raw.view(torch.int32) - 0x4A800000)
    return as_int - 1


class NvdiffrastRasterizer:
    name = "nvdiffrast"

    def __init__(self, device: str | torch.device = "cuda", batch_size: int = 16) -> None:
        import nvdiffrast.torch as dr

        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise InputError("the nvdiffrast rasterizer runs on a CUDA device only")
        self.batch_size = batch_size
        self._dr = dr
        self._glctx = dr.RasterizeCudaContext(device=self.device)
        self._mesh_ref: weakref.ref | None = None

    def _upload(self, mesh: Mesh) -> None:
        if self._mesh_ref is not None and self._mesh_ref() is mesh:
            return
        lo, hi = mesh.positions.min(0), mesh.positions.max(0)
        self._origin = (lo.astype(np.float64) + hi) / 2
        local = mesh.positions.astype(np.float64) - self._origin  # float32 stays precise far from 0
        homogeneous = np.concatenate([local, np.ones((len(local), 1))], axis=1)
        self._local = torch.as_tensor(homogeneous, dtype=torch.float32, device=self.device)
        self._tri = torch.as_tensor(mesh.faces, dtype=torch.int32, device=self.device).contiguous()
        self._faces = self._tri.long()
        self._positions = torch.as_tensor(mesh.positions, dtype=torch.float64, device=self.device)
        self._bounds = SimpleNamespace(positions=np.stack([lo, hi]))
        self._mesh_ref = weakref.ref(mesh)

    def rasterize(self, mesh: Mesh, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        tri, bary = self.rasterize_batch(mesh, [camera])
        return tri[0], bary[0]

    def rasterize_batch(self, mesh: Mesh, cameras: Sequence[Camera]) -> tuple[torch.Tensor, torch.Tensor]:
        """Triangle ids (N, H, W) int32 and barycentrics (N, H, W, 3) float32 on the GPU."""
        if len({(c.width, c.height) for c in cameras}) != 1:
            raise InputError("all cameras of one batch must share an image size")
        self._upload(mesh)
        shift = np.eye(4)
        shift[:3, 3] = self._origin
        ids, barys = [], []
        for start in range(0, len(cameras), self.batch_size):
            chunk = cameras[start:start + self.batch_size]
            mvp = np.stack([c.projection(*near_far(self._bounds, c)) @ c.w2c() @ shift for c in chunk])
            mvp_t = torch.as_tensor(mvp, dtype=torch.float32, device=self.device)
            clip = torch.matmul(self._local[None], mvp_t.transpose(1, 2)).contiguous()  # (n, V, 4)
            h, w = chunk[0].height, chunk[0].width
            rast, _ = self._dr.rasterize(self._glctx, clip, self._tri, resolution=[h, w], grad_db=False)
            snapped = decode_triangle_ids(rast[..., 3].flip(1))  # rows top-down
            px, py, z = project_vertices(self._positions, chunk)
            tri, bary = resolve(snapped, self._faces, px, py, z)
            ids.append(tri)
            barys.append(bary)
        return torch.cat(ids), torch.cat(barys)
