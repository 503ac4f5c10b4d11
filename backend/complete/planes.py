"""Planar faces of a scanned front, and the back they imply (a prior, not a replacement).

CAD-like objects are bounded by planes, and the back of a flat face is most likely flat and
parallel to it: the ray through a face leaves the object where it leaves the slab between the
face and a parallel plane one thickness behind it. The curvature and rim priors cannot say
that: a flat face seen head-on has neither curvature nor a receding rim, so they made it a
skin of minimum thickness.

- faces: planes fitted by RANSAC (pyransac3d) on what is left of the front, one after another;
  each plane's inliers (close, with agreeing normals) are split into connected pieces;
- thickness, from the silhouette's sides: the extent behind the face of the walls next to it
  (the adjacent faces at a steep angle to it, or the points of walls seen almost edge-on beside
  it); a face whose walls the scanner did not see takes the other faces' thickness, and with
  none measured it gives no prior;
- back: within the faces whose slab holds a ray's entry point (a box seen across a corner: all
  three; a face parallel to the entry's own face is another layer, e.g. a step, and does not
  count), the nearest slab exit along the ray (`planar_back`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .front_map import FrontMap

PLANE_TOLERANCE_VOXELS = 1.0  # inlier distance to a plane
NORMAL_AGREEMENT = 0.9  # |cos| between a point's normal and the plane's
MIN_FACE_SHARE = 0.03  # a face holds at least this share of the front's points
WALL_ANGLE = 0.5  # |cos| between two faces below which one is a wall of the other
WALL_REACH_VOXELS = 3.0  # image-plane distance from a face within which edge-on wall points count
MAX_BEND = 0.06  # radians the normals may turn from a face's centre to its rim (`_bend`)
SLAB_TOLERANCE_VOXELS = 1.5
PARALLEL = 0.9  # |cos| between two faces above which they are parallel layers, not sides of one slab  # an entry point this far outside a slab still counts as inside


@dataclass(frozen=True)
class PlanarFace:
    normal: np.ndarray  # (3,) unit, facing the scanner
    offset: float  # the plane: normal . x + offset = 0; behind it normal . x + offset < 0
    inliers: np.ndarray  # indices into the front points
    thickness: float | None  # the object's extent behind the face (None: not seen, no prior)
    measured: bool  # thickness from this face's own walls (else from the other faces)

    def behind(self, points: np.ndarray) -> np.ndarray:
        return -(points @ self.normal + self.offset)


def find_planar_faces(points: np.ndarray, normals: np.ndarray, fmap: FrontMap, max_faces: int = 10,
                      iterations: int = 300, seed: int = 0) -> list[PlanarFace]:
    """Planar faces of the front, largest first, each with the thickness its walls show."""
    import pyransac3d

    random.seed(seed)  # pyransac3d samples with the random module
    rng = np.random.default_rng(seed)
    voxel = fmap.voxel
    tol = PLANE_TOLERANCE_VOXELS * voxel
    min_points = max(60, int(MIN_FACE_SHARE * len(points)))
    remaining = np.arange(len(points))
    ab = fmap.view.project(points)[:, :2]
    found: list[tuple[np.ndarray, float, np.ndarray]] = []
    for _ in range(2 * max_faces):
        if len(found) >= max_faces or len(remaining) < min_points:
            break
        sample = remaining[rng.choice(len(remaining), size=min(3000, len(remaining)), replace=False)]
        eq = pyransac3d.Plane().fit(points[sample], thresh=tol, maxIteration=iterations).equation
        if len(eq) != 4:
            break
        n, c = np.asarray(eq[:3], dtype=np.float64), float(eq[3])
        on_plane = np.abs(points[remaining] @ n + c) <= tol
        if on_plane.sum() < min_points:
            break
        near = remaining[on_plane & (np.abs(normals[remaining] @ n) >= NORMAL_AGREEMENT)]
        remaining = remaining[~on_plane]  # points of the plane with stray normals go too: they would fit it again
        for piece in _pieces(ab, near):
            if len(piece) < min_points:
                continue
            centroid = points[piece].mean(axis=0)
            n_fit = np.linalg.svd(points[piece] - centroid, full_matrices=False)[2][-1]
            if normals[piece].mean(axis=0) @ n_fit < 0:
                n_fit = -n_fit  # facing the scanner, like the point normals
            if _bend(points[piece] - centroid, normals[piece], n_fit) < MAX_BEND:
                found.append((n_fit, -float(n_fit @ centroid), piece))
    if not found:
        return []
    labels = np.full(len(points), -1)
    for k, (_, _, piece) in enumerate(found):
        labels[piece] = k
    thick = [_wall_thickness(k, found, points, labels, fmap) for k in range(len(found))]
    measured = [t for t in thick if t is not None]
    fallback = float(np.median(measured)) if measured else None
    return [PlanarFace(n, c, piece, t if t is not None else fallback, t is not None)
            for (n, c, piece), t in zip(found, thick)]


def _bend(offsets: np.ndarray, normals: np.ndarray, n: np.ndarray) -> float:
    """How far the normals turn across the piece (radians, from the piece's centre to its rim):
    the slope of the normals' tilt against the offset from the centre (1 / radius on a sphere
    cap or a cylinder), times the piece's radius. Noise in the normals does not correlate with
    the offset; a curved patch within the plane tolerance (a sphere's cap) does."""
    dp = offsets - np.outer(offsets @ n, n)
    dn = normals - np.outer(normals @ n, n)
    k = float(np.einsum("ij,ij->", dp, dn) / max(float(np.einsum("ij,ij->", dp, dp)), 1e-20))
    return abs(k) * float(np.sqrt(np.quantile(np.einsum("ij,ij->i", dp, dp), 0.9)))


def _pieces(ab: np.ndarray, index: np.ndarray) -> list[np.ndarray]:
    """Connected pieces of a plane's inliers, linked in the image plane (`ab`) within 2.5 times
    their median spacing there: in 3D a face seen at a grazing angle is sampled in rows far apart."""
    sub = ab[index[:: max(1, len(index) // 5000)]]
    spacing = float(np.median(cKDTree(sub).query(sub, k=2)[0][:, 1])) if len(sub) > 1 else 1.0
    pairs = cKDTree(ab[index]).query_pairs(2.5 * spacing, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(index), len(index)))
    count, lab = connected_components(graph, directed=False)
    return sorted((index[lab == k] for k in range(count)), key=len, reverse=True)


def _wall_thickness(k: int, faces: list[tuple[np.ndarray, float, np.ndarray]], points: np.ndarray,
                    labels: np.ndarray, fmap: FrontMap) -> float | None:
    """Extent behind face k of the walls beside it: each adjacent face at a steep angle gives its
    far extent; with none, the points beside the face that no face holds (walls seen almost
    edge-on) give theirs. The smallest wall wins: a plate's own edge, not a bracket's upright."""
    n, c, piece = faces[k]
    voxel = fmap.voxel
    behind = -(points @ n + c)
    own = cKDTree(points[piece])
    samples = []
    for j, (nj, _, other) in enumerate(faces):
        if j == k or abs(float(n @ nj)) >= WALL_ANGLE:
            continue
        if np.isfinite(own.query(points[other], distance_upper_bound=3.0 * voxel)[0]).any():
            far = float(np.quantile(behind[other], 0.98))
            if far > 2.0 * voxel:
                samples.append(far)
    if samples:
        return min(samples)
    view = fmap.view
    scale = float(view.scale(fmap.w_median))
    ab = view.project(points)[:, :2] * scale  # image plane, world units at the front's depth
    beside = np.isfinite(cKDTree(ab[piece]).query(ab, distance_upper_bound=WALL_REACH_VOXELS * voxel)[0])
    wall = np.flatnonzero(beside & (labels < 0) & (behind > 1.5 * voxel))
    if len(wall) >= 10:
        return float(np.quantile(behind[wall], 0.95))
    # no wall seen, but a surface right beside the face and further back (a step seen head-on):
    # the face's part reaches back at least to it
    step = np.flatnonzero(beside & (labels >= 0) & (labels != k) & (behind > 2.0 * voxel))
    if len(step) >= 10:
        return float(np.median(behind[step]))
    return None


def planar_back(fmap: FrontMap, faces: list[PlanarFace], points: np.ndarray,
                entry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(back depth, weight) per front-map node: for nodes on a face with a thickness, the nearest
    exit along the node's ray from the slabs that hold its entry point (`entry`: (nx, ny, 3) world
    front points); weight 1 there, 0 elsewhere."""
    view = fmap.view
    nx, ny = fmap.shape
    back = np.full((nx, ny), np.inf)
    usable = [f for f in faces if f.thickness is not None]
    if not usable:
        return back, np.zeros((nx, ny))
    # which face each node lies on: the face of the nearest scan point (in the image plane)
    abw = view.project(points)
    labels = np.full(len(points), -1)
    for k, f in enumerate(usable):
        labels[f.inliers] = k
    a = fmap.a0 + fmap.step * np.arange(nx)[:, None] * np.ones((1, ny))
    b = fmap.b0 + fmap.step * np.arange(ny)[None, :] * np.ones((nx, 1))
    dist, nn = cKDTree(abw[:, :2]).query(np.stack([a.ravel(), b.ravel()], axis=1), workers=-1)
    node_face = np.where(dist <= fmap.step, labels[nn], -1).reshape(nx, ny)
    on_face = fmap.mask & (node_face >= 0)
    x = entry.reshape(-1, 3)
    local_rot = view.rotation
    tol = SLAB_TOLERANCE_VOXELS * fmap.voxel
    exit_depth = np.full(nx * ny, np.inf)
    labels_flat = node_face.ravel()
    for j, f in enumerate(usable):
        s = x @ f.normal + f.offset  # 0 on the face, -thickness on its back
        inside = (s <= tol) & (s >= -f.thickness - tol)
        # a face parallel to this one lies on another layer (a step below it): not its slab's business
        crossing = np.array([k == j or abs(float(g.normal @ f.normal)) < PARALLEL for k, g in enumerate(usable)])
        inside &= (labels_flat >= 0) & crossing[np.maximum(labels_flat, 0)]
        n_local = local_rot @ f.normal
        c_local = f.offset + float(f.normal @ view.origin)
        if view.perspective:  # x_local(w) = w (a, b, 1)
            denom = n_local[0] * a.ravel() + n_local[1] * b.ravel() + n_local[2]
            w = (-f.thickness - c_local) / np.where(np.abs(denom) > 1e-9, denom, np.nan)
        else:  # x_local(w) = (a, b, w)
            denom = np.full(nx * ny, n_local[2])
            w = (-f.thickness - c_local - n_local[0] * a.ravel() - n_local[1] * b.ravel()) / (
                n_local[2] if abs(n_local[2]) > 1e-9 else np.nan)
        ok = inside & (denom < 0) & np.isfinite(w)  # the ray goes deeper behind the face
        exit_depth = np.where(ok, np.minimum(exit_depth, w), exit_depth)
    exit_depth = exit_depth.reshape(nx, ny)
    use = on_face & np.isfinite(exit_depth)
    back[use] = exit_depth[use]
    return back, use.astype(np.float64)
