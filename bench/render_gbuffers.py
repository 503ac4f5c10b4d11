"""Benchmark: G-buffer rasterization, ms per view for each available rasterizer.

    .venv/backend/bin/python bench/render_gbuffers.py [--triangles 100000] [--views 122] [--size 512]

The mesh is a closed, bumpy sphere (a latitude-longitude grid, ~100k triangles) normalized like
every Orbitex input; the views are the two Ink3D orbits (61 + 61 frames). Timed: the rasterizer
call that every G-buffer goes through (triangle ids + perspective-correct barycentrics, on the
rasterizer's device, readback included), after one warm-up view (context, shaders, mesh upload).
The PyTorch reference is the baseline; it runs on every k-th view only (--baseline-views) so
the run stays short. Each rasterizer is also checked against the baseline on those views.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.assets.mesh import Mesh, make_mesh, normalize  # noqa: E402
from backend.assets.cameras import Camera, orbit  # noqa: E402


def bumpy_sphere(triangles: int) -> Mesh:
    """A closed latitude-longitude sphere with radial bumps, about `triangles` triangles."""
    rings = max(4, int(math.sqrt(triangles / 4)))
    segments = max(8, triangles // (2 * rings))
    theta = np.linspace(0, math.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * math.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    r = 1 + 0.08 * np.sin(7 * t) * np.cos(9 * p) + 0.03 * np.sin(23 * p + 5 * t)
    grid = np.stack([r * np.sin(t) * np.cos(p), r * np.cos(t), r * np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    positions = np.concatenate([grid, [[0, 1, 0], [0, -1, 0]]])
    top, bottom = len(grid), len(grid) + 1
    idx = np.arange(len(grid)).reshape(rings - 1, segments)
    nxt = np.roll(idx, -1, axis=1)
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    quads = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    caps = np.concatenate([np.stack([np.full(segments, top), nxt[0], idx[0]], -1),
                           np.stack([np.full(segments, bottom), idx[-1], nxt[-1]], -1)])
    mesh, _ = normalize(make_mesh(positions, np.concatenate([quads, caps]), name="bumpy sphere"))
    return mesh


def available() -> list[str]:
    names = ["torch"]
    try:
        from backend.render.raster_gl import ModernGLRasterizer

        ModernGLRasterizer()
        names.append("moderngl")
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"moderngl unavailable: {exc}")
    if torch.cuda.is_available():
        try:
            import nvdiffrast.torch  # noqa: F401

            names.append("nvdiffrast")
        except ImportError:
            print("nvdiffrast unavailable: pip install diffrp-nvdiffrast")
    return names


def make(name: str):  # type: ignore[no-untyped-def]
    if name == "torch":
        from backend.render.raster_torch import TorchRasterizer

        return TorchRasterizer("cuda" if torch.cuda.is_available() else "cpu")
    if name == "moderngl":
        from backend.render.raster_gl import ModernGLRasterizer

        return ModernGLRasterizer()
    from backend.render.raster_cuda import NvdiffrastRasterizer

    return NvdiffrastRasterizer()


def time_views(raster, mesh: Mesh, cameras: list[Camera]) -> tuple[float, float, list[torch.Tensor]]:  # type: ignore[no-untyped-def]
    """Wall seconds per view, CPU seconds per view (all threads of this process, GL's included),
    and the triangle-id images."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    raster.rasterize(mesh, cameras[0])  # warm-up: context, shaders, upload
    sync()
    ids = []
    cpu = time.process_time()
    start = time.perf_counter()
    if hasattr(raster, "rasterize_batch"):
        tri, _ = raster.rasterize_batch(mesh, cameras)
        sync()
        ids = list(tri)
    else:
        for cam in cameras:
            tri, _ = raster.rasterize(mesh, cam)
            ids.append(tri)
        sync()
    return (time.perf_counter() - start) / len(cameras), (time.process_time() - cpu) / len(cameras), ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triangles", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=122, help="total over both orbits")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--baseline-views", type=int, default=12, help="views the slow PyTorch baseline runs on")
    args = parser.parse_args()

    mesh = bumpy_sphere(args.triangles)
    half = max(1, args.views // 2)
    cameras = orbit("horizontal", half, args.size) + orbit("vertical", args.views - half, args.size)
    step = max(1, len(cameras) // max(1, args.baseline_views))
    baseline_cams = cameras[::step]
    print(f"mesh: {mesh.num_faces} triangles; {len(cameras)} views at {args.size}^2; "
          f"torch threads {torch.get_num_threads()}; device {'cuda' if torch.cuda.is_available() else 'cpu'}; "
          f"load average before: {os.getloadavg()[0]:.2f} (timings are wall clock: other work on the machine "
          f"slows them)")

    results: dict[str, float] = {}
    base_s, base_cpu, base_ids = time_views(make("torch"), mesh, baseline_cams)
    results["torch"] = base_s
    print(f"torch (baseline, {len(baseline_cams)} views): {1e3 * base_s:8.1f} ms/view "
          f"({1e3 * base_cpu:.1f} CPU ms/view)")
    for name in available():
        if name == "torch":
            continue
        raster = make(name)
        per_view, cpu_per_view, ids = time_views(raster, mesh, cameras)
        results[name] = per_view
        agree = []
        for ref, got in zip(base_ids, ids[::step]):
            covered = (ref >= 0) | (got.to(ref.device) >= 0)
            agree.append(float(((ref == got.to(ref.device)) & covered).sum()) / max(1, int(covered.sum())))
        print(f"{name:10s} ({len(cameras)} views): {1e3 * per_view:8.1f} ms/view ({1e3 * cpu_per_view:.1f} CPU ms), "
              f"{base_s / per_view:6.1f}x the baseline, triangle ids agree on {100 * min(agree):.3f}% "
              f"of covered pixels (worst view)")


if __name__ == "__main__":
    main()
