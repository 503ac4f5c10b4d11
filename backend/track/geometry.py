"""Exact tracking through rendered geometry: depth-tested reprojection between views.

A `ViewGeometry` is what one rendered view saw: per pixel the world point of the visible surface,
its depth along the view axis and coverage (from a mesh's G-buffers or a Gaussian render's depth).
Backward tracking (target -> reference): each covered target pixel's surface point is projected
into the reference camera and kept where the reference's own depth there agrees (the reference saw
that point, not something in front of it); the result is, per target pixel, where it lands in the
reference image and whether it was seen. Forward tracking (source -> target) splats the source's
pixels into the target instead: target pixels no splat lands on count as unseen, so the mask is
grainy wherever the target sees the surface more densely than the source (the comparison TIRE makes).
For a mesh animated with fixed topology a target pixel's point is followed to the reference's
time through its triangle and barycentrics (`surface_points`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..assets.cameras import Camera


DEPTH_TOLERANCE = 0.03  # depth test, as a fraction of the asset's largest side
FACING_COS = 0.0  # a reference sees a surface point only when its normal faces it


@dataclass(frozen=True)
class ViewGeometry:
    camera: Camera
    mask: np.ndarray  # (H, W) bool: the asset covers the pixel
    depth: np.ndarray  # (H, W) float32 depth along the view axis (0 outside the mask)
    position: np.ndarray  # (H, W, 3) float32 world point seen at each pixel
    normal: np.ndarray | None = None  # (H, W, 3) float32 world normals, when known (meshes)
    tri_id: np.ndarray | None = None  # (H, W) int32 meshes: the visible triangle (-1 outside)
    bary: np.ndarray | None = None  # (H, W, 3) float32 meshes: its barycentrics


@dataclass(frozen=True)
class Correspondence:
    """Per target pixel: where it lands in the reference image (x, y in OpenCV pixel coordinates,
    pixel (0, 0)'s centre at (0, 0), as cv2.remap reads them) and whether the reference saw it."""

    coords: np.ndarray  # (H, W, 2) float32
    seen: np.ndarray  # (H, W) bool


def mesh_view_geometry(gbuffers, cameras: list[Camera]) -> list[ViewGeometry]:  # type: ignore[no-untyped-def]
    """ViewGeometry of each view of a mesh's GBuffers (render.gbuffer.render_gbuffers)."""
    out = []
    for i, cam in enumerate(cameras):
        out.append(ViewGeometry(cam, gbuffers.mask[i].cpu().numpy(), gbuffers.depth[i].cpu().numpy(),
                                gbuffers.position[i].cpu().numpy(), gbuffers.normal[i].cpu().numpy(),
                                gbuffers.tri_id[i].cpu().numpy(),
                                gbuffers.bary[i].cpu().numpy()))
    return out


def depth_view_geometry(camera: Camera, depth: np.ndarray, mask: np.ndarray) -> ViewGeometry:
    """ViewGeometry from a depth map along the view axis (e.g. a Gaussian render's depth / alpha)."""
    origin, rays = camera.pixel_rays()
    along = rays @ camera.forward  # cosine between each ray and the view axis
    depth = np.where(mask, depth, 0.0).astype(np.float32)
    position = origin + rays * (depth / np.maximum(along, 1e-6))[..., None]
    return ViewGeometry(camera, mask.astype(bool), depth, position.astype(np.float32))


def estimate_normals(view: ViewGeometry) -> ViewGeometry:
    """`view` with normals from its position map (cross product of the image-space gradients,
    turned towards the camera): for Gaussians, whose renders carry none."""
    gy, gx = np.gradient(view.position.astype(np.float64), axis=(0, 1))
    n = np.cross(gx, gy)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    towards = view.camera.position - view.position
    n = np.where(((n * towards).sum(-1) < 0)[..., None], -n, n)
    return replace(view, normal=np.where(view.mask[..., None], n, 0.0).astype(np.float32))


def surface_points(view: ViewGeometry, positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The surface points of `view`'s pixels on the same mesh posed with `positions` (V, 3): its
    triangle and barycentrics carried to another frame of an animation (fixed topology)."""
    if view.tri_id is None or view.bary is None:
        raise ValueError("surface_points needs a mesh view (triangle ids and barycentrics)")
    corners = positions[faces[np.maximum(view.tri_id, 0)]]  # (H, W, 3, 3)
    points = (corners * view.bary[..., None]).sum(-2)
    return np.where(view.mask[..., None], points, 0.0).astype(np.float32)


def reproject(points: np.ndarray, valid: np.ndarray, reference: ViewGeometry, tolerance: float,
              normals: np.ndarray | None = None) -> Correspondence:
    """Backward tracking of target pixels with world `points` (H, W, 3) (only where `valid`) into
    `reference`: seen where the point projects onto the reference's coverage and the reference's
    depth there agrees: within `tolerance` plus the local depth slope of one of the four pixels
    around the point (surfaces seen at a grazing angle), or of their bilinear interpolation. With
    `normals` (H, W, 3) the point must also face the reference camera: just past a silhouette the
    depth test alone cannot tell the far side of the rim from the rim."""
    cam = reference.camera
    h, w = valid.shape
    if normals is not None:
        towards = cam.position[None, None, :] - points
        valid = valid & ((normals * towards).sum(-1) > FACING_COS * np.linalg.norm(towards, axis=-1))
    pix, depth = cam.project(points.reshape(-1, 3).astype(np.float64))
    x, y = pix[:, 0] - 0.5, pix[:, 1] - 0.5  # OpenCV convention
    idx = np.nonzero(valid.reshape(-1) & (depth > 0) & (x > -1) & (x < cam.width) & (y > -1) & (y < cam.height))[0]
    x0, y0 = np.floor(x[idx]).astype(np.int64), np.floor(y[idx]).astype(np.int64)
    fx, fy, d = x[idx] - x0, y[idx] - y0, depth[idx]
    slope = depth_slope(reference, 8 * tolerance)
    interp = np.zeros(len(idx))
    covered = np.ones(len(idx), dtype=bool)
    near = np.zeros(len(idx), dtype=bool)
    for dy, dx, weight in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        r, c = y0 + dy, x0 + dx
        ok = (r >= 0) & (r < cam.height) & (c >= 0) & (c < cam.width)
        ref_depth = np.zeros(len(idx))
        ok[ok] = reference.mask[r[ok], c[ok]]
        ref_depth[ok] = reference.depth[r[ok], c[ok]]
        interp += weight * ref_depth
        covered &= ok
        allowed = np.zeros(len(idx))
        allowed[ok] = tolerance + slope[r[ok], c[ok]]
        near |= ok & (np.abs(ref_depth - d) <= allowed)
    ok = near | (covered & (np.abs(interp - d) <= tolerance))
    seen = np.zeros(h * w, dtype=bool)
    seen[idx[ok]] = True
    coords = np.stack([x, y], -1).astype(np.float32).reshape(h, w, 2)
    return Correspondence(coords, seen.reshape(h, w))


def depth_slope(view: ViewGeometry, jump: float) -> np.ndarray:
    """(H, W) largest depth change from each covered pixel to a covered 4-neighbour, ignoring
    changes above `jump` (depth discontinuities: another surface, not a slope)."""
    d = np.where(view.mask, view.depth, np.nan).astype(np.float64)
    padded = np.pad(d, 1, constant_values=np.nan)
    slope = np.zeros_like(d)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        diff = np.abs(padded[dy:dy + d.shape[0], dx:dx + d.shape[1]] - d)
        diff = np.where(np.isfinite(diff) & (diff <= jump), diff, 0.0)
        slope = np.maximum(slope, diff)
    return slope


def backward_unseen(target: ViewGeometry, source: ViewGeometry, tolerance: float,
                    points: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: covered target pixels whose surface point the source never saw. `points`: the
    target's points at the source's time (animated meshes); default its own positions."""
    pts = target.position if points is None else points
    normals = target.normal if points is None else None
    return target.mask & ~reproject(pts, target.mask, source, tolerance, normals).seen


def forward_unseen(source: ViewGeometry, target: ViewGeometry, tolerance: float,
                   points: np.ndarray | None = None) -> np.ndarray:
    """Forward tracking: splat every covered source pixel into the target (nearest pixel, depth
    test against the target's depth); covered target pixels that no source pixel reached are
    unseen. `points`: the source's points at the target's time (animated meshes)."""
    pts = source.position if points is None else points
    corr = reproject(pts, source.mask, target, tolerance, source.normal if points is None else None)
    hit = np.zeros(target.mask.shape, dtype=bool)
    xy = corr.coords[corr.seen]
    hit[np.floor(xy[:, 1] + 0.5).astype(np.int64), np.floor(xy[:, 0] + 0.5).astype(np.int64)] = True
    return target.mask & ~hit


def sample_image(image: np.ndarray, coords: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Bilinear lookup of `image` (H', W', C) float32 at OpenCV pixel coordinates (H, W, 2); with
    the image's coverage `mask` (H', W') only covered pixels are mixed (no background bleeding in
    at silhouettes)."""
    import cv2

    def remap(values: np.ndarray) -> np.ndarray:
        return cv2.remap(np.ascontiguousarray(values, dtype=np.float32), np.ascontiguousarray(coords[..., 0]),
                         np.ascontiguousarray(coords[..., 1]), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    if mask is None:
        return remap(image)
    weight = mask.astype(np.float32)
    mixed = remap(np.concatenate([image * weight[..., None], weight[..., None]], -1))
    return mixed[..., :-1] / np.maximum(mixed[..., -1:], 1e-6)
