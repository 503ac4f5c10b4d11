"""Plain-PyTorch triangle rasterizer: the dependency-free reference (CPU or any torch device).

Per chunk of triangles every pixel centre inside a triangle's bounding box is a candidate; the
nearest candidate per pixel wins through one scatter-min over a 64-bit key (depth bits, then
triangle id, so ties resolve to the lower id). Triangles crossing the near plane are dropped.
"""
from __future__ import annotations

import torch

from ..assets.mesh import Mesh
from ..assets.cameras import Camera
from .raster_base import near_far

_CANDIDATES_PER_CHUNK = 4_000_000


class TorchRasterizer:
    name = "torch"

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def rasterize(self, mesh: Mesh, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        dev, w, h = self.device, camera.width, camera.height
        w2c = torch.as_tensor(camera.w2c(), dtype=torch.float64, device=dev)
        pos = torch.as_tensor(mesh.positions, dtype=torch.float64, device=dev)
        cam = pos @ w2c[:3, :3].T + w2c[:3, 3]
        z = -cam[:, 2]  # depth along the view axis
        near, _ = near_far(mesh, camera)
        px = camera.fx * cam[:, 0] / z + camera.cx
        py = -camera.fy * cam[:, 1] / z + camera.cy
        faces = torch.as_tensor(mesh.faces, dtype=torch.long, device=dev)
        fz = z[faces]
        keep = (fz > near * 0.999).all(1)
        tri_ids = torch.nonzero(keep).squeeze(1)
        fx, fy = px[faces[tri_ids]], py[faces[tri_ids]]
        # pixel index range whose centres (i + 0.5) may fall inside each triangle
        x0, y0, bw, counts = pixel_boxes(fx, fy, w, h)
        best = torch.full((h * w,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
        cum = torch.cumsum(counts, 0)
        start = 0
        while start < len(tri_ids):
            base = int(cum[start - 1]) if start else 0
            end = int(torch.searchsorted(cum, base + _CANDIDATES_PER_CHUNK, right=True))
            end = max(end, start + 1)
            self._chunk(slice(start, end), tri_ids, faces, px, py, z, x0, y0, bw, counts, best, w)
            start = end
        hit = best != torch.iinfo(torch.int64).max
        tri = torch.where(hit, best & 0xFFFFFFFF, torch.full_like(best, -1)).view(h, w).int()
        bary = self._barycentrics(tri, faces, px, py, z, w, h)
        return tri.cpu(), bary.float().cpu()

    @staticmethod
    def _chunk(sl: slice, tri_ids, faces, px, py, z, x0, y0, bw, counts, best, w) -> None:  # type: ignore[no-untyped-def]
        n = counts[sl]
        if int(n.sum()) == 0:
            return
        local_tri = torch.repeat_interleave(torch.arange(len(n), device=n.device), n)
        offset = torch.arange(len(local_tri), device=n.device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        tri_bw = bw[sl][local_tri]
        xs = x0[sl][local_tri] + offset % tri_bw
        ys = y0[sl][local_tri] + offset // tri_bw
        tid = tri_ids[sl][local_tri]
        corners = faces[tid]
        b, inside = _screen_barycentrics(px[corners], py[corners], xs + 0.5, ys + 0.5)
        zc = z[corners]
        inv_depth = (b / zc).sum(1)
        depth = (1.0 / inv_depth).float()
        ok = inside & (inv_depth > 0)
        # positive float32 bit patterns order like the floats themselves
        key = (depth[ok].view(torch.int32).long() << 32) | tid[ok]
        best.scatter_reduce_(0, (ys * w + xs)[ok], key, reduce="amin")

    @staticmethod
    def _barycentrics(tri, faces, px, py, z, w, h) -> torch.Tensor:  # type: ignore[no-untyped-def]
        bary = torch.zeros((h, w, 3), dtype=torch.float64, device=tri.device)
        ys, xs = torch.nonzero(tri >= 0, as_tuple=True)
        if len(ys):
            corners = faces[tri[ys, xs].long()]
            b, _ = _screen_barycentrics(px[corners], py[corners], xs + 0.5, ys + 0.5)
            persp = b / z[corners]  # perspective-correct: weight by 1/depth, renormalize
            bary[ys, xs] = persp / persp.sum(1, keepdim=True)
        return bary


def pixel_boxes(fx: torch.Tensor, fy: torch.Tensor, width: int, height: int):  # type: ignore[no-untyped-def]
    """Per triangle (corner pixel coordinates (M, 3)): the first column and row whose pixel centres
    (i + 0.5) may fall inside it, clamped to the image, the box width, and its pixel count."""
    x0 = torch.ceil(fx.min(1).values - 0.5).clamp(min=0).long()
    x1 = torch.floor(fx.max(1).values - 0.5).clamp(max=width - 1).long()
    y0 = torch.ceil(fy.min(1).values - 0.5).clamp(min=0).long()
    y1 = torch.floor(fy.max(1).values - 0.5).clamp(max=height - 1).long()
    bw, bh = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    return x0, y0, bw, bw * bh


def _screen_barycentrics(cx: torch.Tensor, cy: torch.Tensor, x: torch.Tensor, y: torch.Tensor):  # type: ignore[no-untyped-def]
    """Screen-space barycentrics of points (x, y) in triangles with corners (cx, cy) (M, 3)."""
    e0 = (cx[:, 2] - cx[:, 1]) * (y - cy[:, 1]) - (cy[:, 2] - cy[:, 1]) * (x - cx[:, 1])
    e1 = (cx[:, 0] - cx[:, 2]) * (y - cy[:, 2]) - (cy[:, 0] - cy[:, 2]) * (x - cx[:, 2])
    e2 = (cx[:, 1] - cx[:, 0]) * (y - cy[:, 0]) - (cy[:, 1] - cy[:, 0]) * (x - cx[:, 0])
    area = e0 + e1 + e2
    safe = torch.where(area.abs() < 1e-12, torch.ones_like(area), area)
    b = torch.stack([e0, e1, e2], 1) / safe[:, None]
    inside = (area.abs() >= 1e-12) & (b >= 0).all(1)
    return b, inside
