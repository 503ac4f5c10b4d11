"""The G-buffer rasterizers agree with the PyTorch reference (ids, masks, depth)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.render.barycentrics import project_vertices, resolve
from backend.assets.cameras import Camera, look_at, orbit
from backend.render.gbuffer import interpolate, render_gbuffers
from backend.render.raster_cuda import decode_triangle_ids
from backend.render.raster_torch import TorchRasterizer

from geometry_helpers import cube, sphere, thin_triangles


def _moderngl():
    """The EGL rasterizer; `build.py setup` installs Mesa's EGL, so failing to make one is a failure."""
    from backend.render.raster_gl import ModernGLRasterizer

    return ModernGLRasterizer()


def test_auto_takes_moderngl_here_and_reports_it() -> None:
    from backend.render.gbuffer import get_rasterizer, rasterizer_report

    expected = "nvdiffrast" if torch.cuda.is_available() else "moderngl"
    assert get_rasterizer("auto").name == expected
    assert rasterizer_report("auto") == {"rasterizer": expected}
    assert rasterizer_report("torch") == {"rasterizer": "torch"}


def _off_centre_camera() -> Camera:
    c2w = look_at(np.array([0.9, 0.55, 1.2]), np.array([0.12, -0.08, 0.05]), np.array([0.0, 1.0, 0.0]))
    return Camera(c2w, fx=150.0, fy=140.0, cx=88.0, cy=52.0, width=160, height=112)


CASES = {
    "sphere": (lambda: sphere(4), lambda: orbit("horizontal", 3, 128)[1:] + orbit("vertical", 3, 128)[1:]),
    "cube": (cube, lambda: [_off_centre_camera(), orbit("horizontal", 8, 128)[1], orbit("vertical", 8, 128)[1]]),
    "thin triangles": (thin_triangles, lambda: [orbit("horizontal", 1, 160)[0], _off_centre_camera()]),
    "off-centre camera": (lambda: sphere(3), lambda: [_off_centre_camera()]),
}


def _compare(mesh, cam, got, ref) -> None:  # type: ignore[no-untyped-def]
    tri, bary = (t.cpu() for t in got)
    ref_tri, ref_bary = ref
    assert tri.shape == ref_tri.shape == (cam.height, cam.width) and tri.dtype == torch.int32
    assert bary.shape == (cam.height, cam.width, 3) and bary.dtype == torch.float32
    covered = (tri >= 0) | (ref_tri >= 0)
    assert int(covered.sum()) > 500
    agree = (tri == ref_tri) & (ref_tri >= 0)
    assert float(agree.sum()) / float(covered.sum()) >= 0.999
    assert float(((tri >= 0) == (ref_tri >= 0)).sum()) / tri.numel() >= 0.999  # masks agree
    g, r = interpolate(mesh, cam, tri, bary), interpolate(mesh, cam, ref_tri, ref_bary)
    assert float((g.depth - r.depth)[0][agree].abs().max()) <= 1e-4
    assert float((g.position - r.position)[0][agree].abs().max()) <= 1e-4
    inside = bary[tri >= 0]
    assert float(inside.min()) >= -1e-5 and float((inside.sum(-1) - 1).abs().max()) <= 1e-5
    assert not bool(bary[tri < 0].any())


@pytest.mark.parametrize("case", list(CASES))
def test_moderngl_agrees_with_torch(case: str) -> None:
    gl = _moderngl()
    make_mesh, make_cams = CASES[case]
    mesh = make_mesh()
    reference = TorchRasterizer()
    for cam in make_cams():
        _compare(mesh, cam, gl.rasterize(mesh, cam), reference.rasterize(mesh, cam))


def test_moderngl_image_orientation() -> None:
    """A triangle in the upper-left of the view lands in the upper-left of the image."""
    from backend.assets.mesh import make_mesh

    gl = _moderngl()
    mesh = make_mesh([[-0.5, 0.1, 0], [-0.1, 0.1, 0], [-0.5, 0.5, 0]], [[0, 1, 2]])
    cam = Camera(look_at(np.array([0, 0, 2.0]), np.zeros(3), np.array([0, 1.0, 0])), 100, 100, 64, 48, 128, 96)
    tri, _ = gl.rasterize(mesh, cam)
    ys, xs = torch.nonzero(tri == 0, as_tuple=True)
    pixels, _ = cam.project(mesh.positions.mean(0, keepdims=True).astype(np.float64))
    px, py = pixels[0]
    assert abs(float(xs.float().mean()) - px) < 4 and abs(float(ys.float().mean()) - py) < 4
    assert float(ys.float().mean()) < 48 and float(xs.float().mean()) < 64


def test_moderngl_mesh_cache_follows_the_mesh() -> None:
    """Switching meshes re-uploads; switching back gives the first result again."""
    gl = _moderngl()
    a, b = sphere(2), cube()
    cam = orbit("horizontal", 4, 64)[1]
    first = gl.rasterize(a, cam)[0].clone()
    other = gl.rasterize(b, cam)[0]
    assert not torch.equal(first, other)
    assert torch.equal(gl.rasterize(a, cam)[0], first)
    assert torch.equal(gl.rasterize(a, cam)[0], first)  # cached upload, same answer


def test_mesh_far_from_origin_keeps_precision() -> None:
    """A small mesh 1e4 units from the origin (as in a scene in metres, far from the world
    origin) still matches the reference: GL works relative to the mesh's box centre."""
    from dataclasses import replace

    gl = _moderngl()
    mesh = sphere(3)
    offset = np.array([1e4, -2e4, 5e3])
    moved = replace(mesh, positions=(mesh.positions.astype(np.float64) + offset).astype(np.float32))
    cam = orbit("horizontal", 4, 96)[1]
    c2w = cam.c2w.copy()
    c2w[:3, 3] += offset
    moved_cam = Camera(c2w, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height)
    (tri, bary), (ref_tri, ref_bary) = gl.rasterize(moved, moved_cam), TorchRasterizer().rasterize(moved, moved_cam)
    covered = (tri >= 0) | (ref_tri >= 0)
    agree = (tri == ref_tri) & (ref_tri >= 0)
    assert float(agree.sum()) / float(covered.sum()) >= 0.999
    # (positions interpolated in float32 that far out are coarse, so compare barycentrics directly)
    assert float((bary - ref_bary)[agree].abs().max()) < 1e-3


def test_render_gbuffers_with_moderngl_matches_torch() -> None:
    _moderngl()
    mesh, cams = sphere(3), orbit("vertical", 4, 64)[:2]
    g, r = render_gbuffers(mesh, cams, "moderngl"), render_gbuffers(mesh, cams, "torch")
    agree = (g.tri_id == r.tri_id) & r.mask
    assert float(agree.sum()) / float((g.mask | r.mask).sum()) >= 0.999
    assert float((g.normal - r.normal)[agree].abs().max()) < 1e-3


def test_resolve_repairs_snapped_ids() -> None:
    """The repair step of the hardware paths (run here on CPU): pixels handed to a neighbouring
    triangle get their own back, with the reference's barycentrics."""
    mesh = sphere(3)
    cams = orbit("horizontal", 4, 96)[:2]
    reference = TorchRasterizer()
    refs = [reference.rasterize(mesh, c) for c in cams]
    ref_tri = torch.stack([r[0] for r in refs])
    snapped = ref_tri.clone()
    right = torch.nn.functional.pad(ref_tri, (0, 1), value=-1)[..., 1:]
    up = torch.nn.functional.pad(ref_tri, (0, 0, 1, 0), value=-1)[:, :-1]
    down = torch.nn.functional.pad(ref_tri, (0, 0, 0, 1), value=-1)[:, 1:]
    edge = (right >= 0) & (ref_tri >= 0) & (right != ref_tri)
    # on even rows only, where the pixel above or below keeps the true triangle in sight (as after
    # real snapping, which moves edges by a fraction of a pixel)
    edge &= (torch.arange(ref_tri.shape[1]) % 2 == 0)[None, :, None] & ((up == ref_tri) | (down == ref_tri))
    snapped[edge] = right[edge]  # pixels left of an edge now claim the triangle to their right
    snapped[:, 0, :] = -1  # and a row of covered pixels lost (silhouette rows stay empty)
    positions = torch.as_tensor(mesh.positions, dtype=torch.float64)
    faces = torch.as_tensor(mesh.faces, dtype=torch.long)
    tri, bary = resolve(snapped, faces, *project_vertices(positions, cams))
    assert int(edge.sum()) > 300
    # (a centre exactly on a shared edge lies in both triangles: either answer is exact there)
    assert float((tri[edge] == ref_tri[edge]).float().mean()) > 0.995
    ok = (ref_tri >= 0) & (tri == ref_tri)
    assert float(ok.sum()) / float((ref_tri >= 0).sum()) > 0.999
    assert torch.allclose(bary[ok], torch.stack([r[1] for r in refs])[ok], atol=1e-6)


def test_decode_nvdiffrast_triangle_ids() -> None:
    ids = torch.tensor([0, 1, 2, 5000, 16777215, 16777216, 16777217, 40000000], dtype=torch.int64)
    raw = [float(i + 1) if i + 1 <= 0x01000000 else
           torch.tensor([0x4A800000 + i + 1], dtype=torch.int32).view(torch.float32).item() for i in ids.tolist()]
    coded = torch.tensor([0.0] + raw, dtype=torch.float32)
    assert decode_triangle_ids(coded).tolist() == [-1] + ids.tolist()


def _nvdiffrast_ready() -> str:
    if not torch.cuda.is_available():
        return "no CUDA device (nvdiffrast runs on CUDA only)"
    try:
        import nvdiffrast.torch  # noqa: F401
    except ImportError:
        return "nvdiffrast is not installed (pip install diffrp-nvdiffrast)"
    return ""


@pytest.mark.skipif(bool(_nvdiffrast_ready()), reason=_nvdiffrast_ready() or "ready")
@pytest.mark.parametrize("case", list(CASES))
def test_nvdiffrast_agrees_with_torch(case: str) -> None:
    from backend.render.raster_cuda import NvdiffrastRasterizer

    raster = NvdiffrastRasterizer()
    make_mesh, make_cams = CASES[case]
    mesh = make_mesh()
    reference = TorchRasterizer()
    cams = make_cams()
    for cam in cams:
        tri, bary = raster.rasterize(mesh, cam)
        assert tri.is_cuda and bary.is_cuda
        _compare(mesh, cam, (tri, bary), reference.rasterize(mesh, cam))
    if len({(c.width, c.height) for c in cams}) == 1:
        batch_tri, _ = raster.rasterize_batch(mesh, cams)
        for i, cam in enumerate(cams):
            assert torch.equal(batch_tri[i], raster.rasterize(mesh, cam)[0])


class _BatchedTorch(TorchRasterizer):
    """The reference behind the batched interface nvdiffrast offers (to test render_gbuffers' use of it)."""

    batch_size = 3

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def rasterize_batch(self, mesh, cameras):  # type: ignore[no-untyped-def]
        self.batches.append(len(cameras))
        views = [self.rasterize(mesh, c) for c in cameras]
        return torch.stack([v[0] for v in views]), torch.stack([v[1] for v in views])


def test_render_gbuffers_uses_batches() -> None:
    mesh, cams = sphere(2), orbit("horizontal", 7, 32)
    batched = _BatchedTorch()
    reports: list[float] = []
    g = render_gbuffers(mesh, cams, batched, lambda f, s: reports.append(f))
    r = render_gbuffers(mesh, cams, "torch")
    assert batched.batches == [3, 3, 1] and reports[-1] == 1.0
    assert torch.equal(g.tri_id, r.tri_id) and torch.equal(g.depth, r.depth)
