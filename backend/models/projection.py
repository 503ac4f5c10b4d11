"""The weight-free generator: the reference image projected onto the surface, the rest filled.

Every surface point the orbits see (the covered pixels of their G-buffers) takes the reference
image's colour where the reference camera sees it (depth test against the reference G-buffer,
inside the subject's mask, facing the camera). The other points get the bake's fill of unseen
surface (backend/assets/surface_fill.py): colours transferred through the mesh's mirror planes or
rotation axis where the counterpart was seen, exemplar synthesis from the seen surface where no
symmetry reaches, and for what is still open (insides, folds) the surface voxels' multi-source BFS
from the filled ones, smoothed. The back is a transfer or continuation of what the reference
shows, not generated content.

Modes: partial denoise has no noise to start from here, so `strength` s blends s * projection +
(1 - s) * init frames; masked mode keeps the init frames' pixels outside the mask.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..errors import InputError
from ..progress import Progress
from .types import GenerateOptions, Orbit, Reference, composite, validate_modes

VOXEL_RES = 256  # voxels across the largest side of the mesh's bounding box
DEPTH_TOLERANCE = 0.01  # fraction of the largest bounding-box side
MIN_FACING = 0.05  # cos of the angle between normal and direction to the reference camera
SMOOTHING_ITERATIONS = 8  # neighbour averaging of BFS-filled voxels (filled voxels stay fixed)


class ProjectionGenerator:
    name = "projection"

    def __init__(self) -> None:
        self.calls: list[dict] = []  # what each generate() did (the texture report's generator_calls)

    def prepare(self, options: GenerateOptions, frames: int, size: int) -> None:
        """No weights, any frame count and size."""

    def generate(self, mesh: Mesh, orbits: Sequence[Orbit], reference: Reference, options: GenerateOptions,
                 progress: Progress) -> dict[str, np.ndarray]:
        validate_modes(orbits, options)
        progress(0.0, "projection: surface points")
        points, normals, owners = [], [], []
        for o, orbit in enumerate(orbits):
            mask = orbit.gbuffers.mask
            points.append(orbit.gbuffers.position[mask].double().numpy())
            normals.append(orbit.gbuffers.normal[mask].double().numpy())
            owners.append(np.full(len(points[-1]), o, dtype=np.int32))
        pts, nrm = np.concatenate(points), np.concatenate(normals)
        if len(pts) == 0:
            raise InputError("the orbit renders show none of the mesh: nothing to texture")
        extent = float((mesh.positions.max(0) - mesh.positions.min(0)).max())

        progress(0.15, "projection: reference colours")
        colour, seen = project_reference(pts, nrm, reference, DEPTH_TOLERANCE * extent)
        if not seen.any():
            raise InputError("the reference image's subject does not cover the mesh as seen from the reference "
                             "camera: check the image (subject on a plain background or with alpha) and --camera")

        progress(0.35, "projection: fill of unseen surface (symmetry, synthesis, BFS)")
        fill, report = fill_surface(mesh, pts, nrm, colour, seen, VOXEL_RES, up=reference.camera.c2w[:3, 1])
        self.calls.append({"stage": "fill", **report})
        result = np.where(seen[:, None], colour, fill).astype(np.float32)

        progress(0.8, "projection: orbit frames")
        frames: dict[str, np.ndarray] = {}
        start = 0
        for orbit in orbits:
            mask = orbit.gbuffers.mask.numpy()
            count = int(mask.sum())
            out = np.zeros((*mask.shape, 3), dtype=np.float32)
            out[mask] = result[start:start + count]
            start += count
            init = options.init_frames.get(orbit.name) if options.init_frames else None
            if init is not None and options.strength < 1.0:
                out = (options.strength * out + (1 - options.strength) * init).astype(np.float32)
            frames[orbit.name] = composite(out, init, options.masks.get(orbit.name) if options.masks else None)
        progress(1.0, "projection: done")
        return frames


def facing(points: np.ndarray, normals: np.ndarray, camera) -> np.ndarray:  # type: ignore[no-untyped-def]
    """cos of the angle between each normal and the direction to the camera."""
    to_camera = camera.position[None, :] - points
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-12)
    return (normals * to_camera).sum(1)


def project_reference(points: np.ndarray, normals: np.ndarray, reference: Reference,
                      tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference colour (bilinear) of each world point and whether the reference camera sees it."""
    cam = reference.camera
    h, w = reference.mask.shape
    uv, depth = cam.project(points)
    px, py = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h) & (depth > 0)
    pxc, pyc = np.clip(px, 0, w - 1), np.clip(py, 0, h - 1)
    ref_depth = reference.gbuffer.depth[0].double().numpy()
    ref_cover = reference.gbuffer.mask[0].numpy()
    # the subject's edge pixels mix with the background: only the mask's interior counts as seen
    interior = _erode(reference.mask)
    seen = (inside & ref_cover[pyc, pxc] & interior[pyc, pxc] & (facing(points, normals, cam) > MIN_FACING)
            & (np.abs(ref_depth[pyc, pxc] - depth) < tolerance))
    colour = np.zeros((len(points), 3), dtype=np.float64)
    colour[seen] = _bilinear(reference.image, uv[seen])
    return colour, seen


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample (H, W, 3) at pixel coordinates (pixel centres at +0.5), clamped at the borders."""
    h, w = image.shape[:2]
    x = np.clip(uv[:, 0] - 0.5, 0, w - 1)
    y = np.clip(uv[:, 1] - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _erode(mask: np.ndarray) -> np.ndarray:
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (-torch.nn.functional.max_pool2d(-m, 3, stride=1, padding=1))[0, 0].numpy() > 0.5


def fill_surface(mesh: Mesh, points: np.ndarray, normals: np.ndarray, colour: np.ndarray, seen: np.ndarray,
                 resolution: int, up: np.ndarray | None = None, method: str = "synthesis") -> tuple[np.ndarray, dict]:
    """Fill colour per point for the unseen ones, and a report of how. `synthesis`: the
    symmetry transfer and exemplar synthesis first; then (and for `bfs`, only) surface voxels of
    the points, filled colours averaged per voxel, open voxels filled by the bake's multi-source
    BFS from the filled ones, then smoothed."""
    from ..assets.surface_fill import LEFT, fill_unseen
    from ..assets.surface_voxels import bfs_fill, build_voxels

    filled, report = seen, {}
    if method == "synthesis":
        from ..assets.mesh_symmetry import detect_symmetry

        colour, kind, report = fill_unseen(points, normals, colour, seen, detect_symmetry(mesh), up)
        filled = kind != LEFT
        report = {k: v for k, v in report.items() if k != "copy_maps"}
    graph, voxel_of = build_voxels(mesh, points.astype(np.float32), normals.astype(np.float32), resolution)
    n = len(graph)
    count = np.bincount(voxel_of[filled], minlength=n).astype(np.float64)
    total = np.stack([np.bincount(voxel_of[filled], weights=colour[filled, c], minlength=n) for c in range(3)], 1)
    voxel_seen = count > 0
    voxel_colour = np.where(voxel_seen[:, None], total / np.maximum(count, 1)[:, None], 0.0)
    voxel_colour, _ = bfs_fill(graph, voxel_seen, voxel_colour)
    voxel_colour = _smooth(graph.edges, voxel_colour, voxel_seen, SMOOTHING_ITERATIONS)
    return np.where(filled[:, None], colour, voxel_colour[voxel_of]), report


def _smooth(edges: np.ndarray, colour: np.ndarray, fixed: np.ndarray, iterations: int) -> np.ndarray:
    """Average each filled voxel with its graph neighbours (seen voxels stay as they are), which
    turns the BFS's flat Voronoi cells into soft gradients between border colours."""
    n = len(colour)
    a, b = edges[:, 0], edges[:, 1]
    degree = (np.bincount(a, minlength=n) + np.bincount(b, minlength=n) + 1).astype(np.float64)
    for _ in range(iterations):
        acc = colour.copy()
        for c in range(3):
            acc[:, c] += np.bincount(a, weights=colour[b, c], minlength=n) + np.bincount(b, weights=colour[a, c], minlength=n)
        colour = np.where(fixed[:, None], colour, acc / degree[:, None])
    return colour
