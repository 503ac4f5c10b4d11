"""Front extraction: point map -> front mesh by Consistent3DGen's Alg. 1, and front points/normals.

Alg. 1: a pixel is valid when its point is finite and confident; each 2x2 block of valid pixels
whose points do not straddle a depth jump gives two triangles. Triangles are wound so that their
normals face the camera (in any right-handed frame, d(point)/d(column) x d(point)/d(row) points
away from the camera for an unmirrored image).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .types import Scan, check_points

DEPTH_JUMP_RATIO = 0.04  # an edge longer than this fraction of its distance to the camera is a jump


def point_map_triangles(valid: np.ndarray, points: np.ndarray | None = None,
                        jump_ratio: float = DEPTH_JUMP_RATIO, viewpoint: np.ndarray | None = None) -> np.ndarray:
    """Alg. 1: (F, 3) triangles over pixel indices (row * W + col) of an (H, W) validity mask.

    With `points`, blocks whose longest edge exceeds 8x the median (relative to the distance to the
    viewpoint when known, and at most `jump_ratio` of it) are dropped as depth jumps.
    """
    h, w = valid.shape
    idx = np.arange(h * w).reshape(h, w)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[:-1, 1:], idx[1:, 1:]  # top-left, bottom-left, top-right, bottom-right
    block = valid[:-1, :-1] & valid[1:, :-1] & valid[:-1, 1:] & valid[1:, 1:]
    if points is not None and block.any():
        p = points.reshape(-1, 3)
        corners = [x[block] for x in (a, b, c, d)]
        edges = np.stack([np.linalg.norm(p[corners[i]] - p[corners[j]], axis=1)
                          for i, j in ((0, 1), (0, 2), (1, 3), (2, 3), (1, 2))], axis=1).max(axis=1)
        if viewpoint is not None:  # relative to the distance: a jump is a jump near or far
            rel = edges / np.maximum(np.linalg.norm(p[corners[0]] - viewpoint, axis=1), 1e-12)
            ok = rel <= min(jump_ratio, 8.0 * np.median(rel))
        else:
            ok = edges <= 8.0 * np.median(edges)
        block[block] = ok
    a, b, c, d = (x[block] for x in (a, b, c, d))
    # (a, b, c): normal = (b - a) x (c - a) = down x right: towards the camera
    return np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)]).astype(np.int64)


def fit_pinhole_center(points: np.ndarray, valid: np.ndarray, samples: int = 4000) -> np.ndarray | None:
    """Camera centre of a point map by DLT resectioning (pixel centre <-> 3D point), or None when
    the map is not consistent with one pinhole camera (e.g. an orthographic or fused map)."""
    rows, cols = np.nonzero(valid)
    if len(rows) < 12:
        return None
    pick = np.random.default_rng(0).choice(len(rows), size=min(samples, len(rows)), replace=False)
    rows, cols = rows[pick], cols[pick]
    X = points[rows, cols].astype(np.float64)
    u, v = cols + 0.5, rows + 0.5
    shift, scale = X.mean(axis=0), np.abs(X - X.mean(axis=0)).mean() + 1e-12
    Xn = np.concatenate([(X - shift) / scale, np.ones((len(X), 1))], axis=1)
    us, vs = u.mean(), v.mean()
    sc = np.abs(u - us).mean() + np.abs(v - vs).mean() + 1e-12
    un, vn = (u - us) / sc, (v - vs) / sc
    zeros = np.zeros_like(Xn)
    A = np.concatenate([np.concatenate([Xn, zeros, -un[:, None] * Xn], 1),
                        np.concatenate([zeros, Xn, -vn[:, None] * Xn], 1)])
    P = np.linalg.svd(A, full_matrices=False)[2][-1].reshape(3, 4)
    M = P[:, :3]
    if abs(np.linalg.det(M)) < 1e-6 * np.linalg.norm(M) ** 3:
        return None  # affine (orthographic) camera: no finite centre
    centre_n = -np.linalg.solve(M, P[:, 3])
    centre = centre_n * scale + shift
    # check: reprojection error of the fitted camera, in pixels
    proj = Xn @ P.T
    err = np.hypot(proj[:, 0] / proj[:, 2] - un, proj[:, 1] / proj[:, 2] - vn) * sc
    if not np.isfinite(centre).all() or np.median(err) > 0.5:
        return None
    return centre


def scan_from_point_map(points: np.ndarray, confidence: np.ndarray | None, name: str, source: str,
                        confidence_threshold: float = 0.0, max_points: int = 1_000_000) -> Scan:
    """Point map (H, W, 3) -> Scan with the Alg. 1 front mesh; thins huge maps by a pixel stride."""
    h, w = points.shape[:2]
    notes: list[str] = []
    if h * w > max_points:
        step = int(np.ceil(np.sqrt(h * w / max_points)))
        points = points[::step, ::step]
        confidence = None if confidence is None else confidence[::step, ::step]
        notes.append(f"the {w} x {h} point map exceeds {max_points} points: every {step}th row and column was used")
    points = np.asarray(points, dtype=np.float64)
    valid = np.isfinite(points).all(axis=2)
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64)
        valid &= np.isfinite(confidence) & (confidence > confidence_threshold)
    if not valid.any():
        raise InputError(f"{source}: the point map has no valid pixels (all NaN/infinite"
                         f"{' or below the confidence threshold' if confidence is not None else ''})")
    check_points(points[valid], source)
    viewpoint = fit_pinhole_center(points, valid)
    faces = point_map_triangles(valid, points, viewpoint=viewpoint)
    flat_index = np.flatnonzero(valid.reshape(-1))
    remap = np.full(h * w, -1, dtype=np.int64)
    remap[flat_index] = np.arange(len(flat_index))
    verts = points.reshape(-1, 3)[flat_index]
    faces = remap[faces]
    normals = None
    if len(faces):
        from ..assets.mesh import vertex_normals

        normals = vertex_normals(verts, faces).astype(np.float64)
        lone = np.linalg.norm(normals, axis=1) < 0.5  # pixels in no triangle: borrow a neighbour's normal
        if lone.any() and (~lone).any():
            from scipy.spatial import cKDTree

            _, nn = cKDTree(verts[~lone]).query(verts[lone])
            normals[lone] = normals[~lone][nn]
    if viewpoint is None:
        notes.append("the point map does not fit one pinhole camera: the scan direction is estimated from normals")
    return Scan(name, verts, normals, faces if len(faces) else None, normals is not None, viewpoint, tuple(notes))


def densify_mesh_front(scan: Scan, max_points: int) -> Scan:
    """Mesh fronts: vertices plus even surface samples (large triangles leave gaps otherwise), with
    face normals from the mesh winding."""
    import trimesh

    mesh = trimesh.Trimesh(scan.points, scan.faces, process=False)
    area = float(mesh.area)
    if area <= 0:
        raise InputError(f"{scan.name}: the mesh has zero surface area")
    diag = float(np.linalg.norm(mesh.bounds[1] - mesh.bounds[0]))
    spacing = diag / 300.0
    count = int(min(max_points - len(scan.points), 200_000, area / spacing**2))
    points, normals = scan.points, np.asarray(mesh.vertex_normals, dtype=np.float64)
    if count > 0:
        samples, face_idx = trimesh.sample.sample_surface(mesh, count, seed=0)
        points = np.concatenate([points, samples])
        normals = np.concatenate([normals, mesh.face_normals[face_idx]])
    used = np.zeros(len(scan.points), bool)
    used[scan.faces.reshape(-1)] = True
    keep = np.concatenate([used, np.ones(len(points) - len(scan.points), bool)])
    return Scan(scan.name, points[keep], normals[keep], None, True, scan.viewpoint, scan.notes)


def estimate_normals(points: np.ndarray, k: int = 12) -> np.ndarray:
    """Unoriented unit normals by PCA over the k nearest neighbours."""
    from scipy.spatial import cKDTree

    k = min(k, len(points))
    _, nn = cKDTree(points).query(points, k=k, workers=-1)
    nbrs = points[nn] - points[nn].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nbrs, nbrs)
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, :, 0]
