"""Geometry measures for completions: point-to-mesh distance, Chamfer-L1, F-score, watertightness."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points on triangles (a, b, c) to points p, all (N, 3) (Ericson, Real-Time Collision Detection 5.1.5)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp = p - b
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    cp = p - c
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < 1e-30, 1e-30, denom)
    v, w = vb / denom, vc / denom
    out = a + ab * v[:, None] + ac * w[:, None]  # interior
    # edges and vertices, checked in reverse priority so the earlier regions win
    with np.errstate(divide="ignore", invalid="ignore"):
        bc_t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        on_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
        out = np.where(on_bc[:, None], b + (c - b) * np.nan_to_num(bc_t)[:, None], out)
        ac_t = d2 / (d2 - d6)
        on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        out = np.where(on_ac[:, None], a + ac * np.nan_to_num(ac_t)[:, None], out)
        ab_t = d1 / (d1 - d3)
        on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        out = np.where(on_ab[:, None], a + ab * np.nan_to_num(ab_t)[:, None], out)
    out = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
    out = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)
    return out


def point_to_mesh_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                           candidates: int = 24, chunk: int = 50_000) -> np.ndarray:
    """Exact distance from each point to the triangle mesh, searching the `candidates` triangles
    whose centroids are nearest (exact for meshes of evenly sized triangles, as marching cubes makes)."""
    tri = vertices[faces]
    centroids = tri.mean(axis=1)
    tree = cKDTree(centroids)
    k = min(candidates, len(faces))
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk]
        _, idx = tree.query(p, k=k, workers=-1)
        idx = idx.reshape(len(p), k)
        rep = np.repeat(p, k, axis=0)
        t = tri[idx.reshape(-1)]
        closest = _closest_on_triangles(rep, t[:, 0], t[:, 1], t[:, 2])
        out[s:s + chunk] = np.linalg.norm(closest - rep, axis=1).reshape(len(p), k).min(axis=1)
    return out


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    import trimesh

    return np.asarray(trimesh.sample.sample_surface(trimesh.Trimesh(vertices, faces, process=False),
                                                    count, seed=seed)[0])


def chamfer_fscore(pred: np.ndarray, gt: np.ndarray, threshold: float) -> tuple[float, float]:
    """Chamfer-L1 (mean of the two mean nearest distances) and F-score at `threshold`, on point samples."""
    d_pg = cKDTree(gt).query(pred, workers=-1)[0]
    d_gp = cKDTree(pred).query(gt, workers=-1)[0]
    precision, recall = float((d_pg < threshold).mean()), float((d_gp < threshold).mean())
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return float(0.5 * (d_pg.mean() + d_gp.mean())), fscore


def mesh_summary(vertices: np.ndarray, faces: np.ndarray) -> dict[str, float | bool | int]:
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return {"watertight": bool(mesh.is_watertight), "volume": float(mesh.volume) if mesh.is_watertight else float("nan"),
            "vertices": int(len(vertices)), "faces": int(len(faces)),
            "components": int(len(mesh.split(only_watertight=False)))}


def _segments_cross_triangles(p0: np.ndarray, p1: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                              eps: float = 1e-9) -> np.ndarray:
    """Whether each segment p0-p1 passes through the interior of triangle (a, b, c) (Moller-Trumbore;
    touching at an end point, an edge or a corner does not count)."""
    d = p1 - p0
    e1, e2 = b - a, c - a
    pv = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, pv)
    ok = np.abs(det) > 1e-30
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    tv = p0 - a
    u = np.einsum("ij,ij->i", tv, pv) * inv
    qv = np.cross(tv, e1)
    v = np.einsum("ij,ij->i", d, qv) * inv
    t = np.einsum("ij,ij->i", e2, qv) * inv
    return ok & (u > eps) & (v > eps) & (u + v < 1 - eps) & (t > eps) & (t < 1 - eps)


def self_intersections(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Number of pairs of triangles sharing at most one corner whose interiors cross (an edge of
    one passes through the other). Coplanar overlaps are not counted; marching cubes and small
    vertex moves do not make them."""
    return len(intersecting_pairs(vertices, faces))


def intersecting_pairs(vertices: np.ndarray, faces: np.ndarray, among: np.ndarray | None = None,
                       chunk: int = 400_000) -> np.ndarray:
    """(P, 2) face index pairs counted by `self_intersections`; with `among` (a bool mask over the
    faces) only the pairs with at least one face in it."""
    tri = vertices[faces].astype(np.float64)
    centroids = tri.mean(axis=1)
    radius = np.linalg.norm(tri - centroids[:, None], axis=2).max(axis=1)
    reach = 2.0 * float(radius.max())
    tree = cKDTree(centroids)
    sub = None if among is None else np.flatnonzero(among)
    if sub is None or len(sub) > 0.05 * len(faces):
        pairs = tree.query_pairs(reach, output_type="ndarray")
        if sub is not None:
            pairs = pairs[among[pairs[:, 0]] | among[pairs[:, 1]]]
    else:  # a few faces: look around them only
        near = tree.query_ball_point(centroids[sub], reach)
        counts = np.array([len(n) for n in near], dtype=np.int64)
        if counts.sum() == 0:
            return np.zeros((0, 2), np.int64)
        pairs = np.stack([np.repeat(sub, counts), np.concatenate(near).astype(np.int64)], axis=1)
        pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    gap = np.linalg.norm(centroids[pairs[:, 0]] - centroids[pairs[:, 1]], axis=1)
    pairs = pairs[gap <= radius[pairs[:, 0]] + radius[pairs[:, 1]]]
    shared = (faces[pairs[:, 0]][:, :, None] == faces[pairs[:, 1]][:, None, :]).sum(axis=(1, 2))
    pairs = pairs[shared <= 1]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    offset = np.einsum("ij,ij->i", normal, tri[:, 0])
    found = []
    for s in range(0, len(pairs), chunk):
        i, j = pairs[s:s + chunk, 0], pairs[s:s + chunk, 1]
        # only triangles each of which has corners on both sides of the other's plane can cross
        straddle = np.ones(len(i), bool)
        for x, y in ((i, j), (j, i)):
            side = np.einsum("nkj,nj->nk", tri[y], normal[x]) - offset[x][:, None]
            straddle &= (side.max(axis=1) > 0) & (side.min(axis=1) < 0)
        i, j = i[straddle], j[straddle]
        hit = np.zeros(len(i), bool)
        for x, y in ((i, j), (j, i)):
            for k in range(3):
                hit |= _segments_cross_triangles(tri[x, k], tri[x, (k + 1) % 3], tri[y, 0], tri[y, 1], tri[y, 2])
        found.append(np.stack([i[hit], j[hit]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)


def topology(vertices: np.ndarray, faces: np.ndarray) -> dict[str, int]:
    """Euler characteristic V - E + F, connected pieces and total genus of a closed triangle mesh
    (each closed orientable piece has chi = 2 - 2 g; a mesh with handles has chi < 2 per piece)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=True)  # merge duplicated corners first
    euler = int(mesh.euler_number)
    pieces = int(len(mesh.split(only_watertight=False)))
    return {"euler": euler, "pieces": pieces, "genus": (2 * pieces - euler) // 2}


def back_normal_error(vertices: np.ndarray, faces: np.ndarray, gt_vertices: np.ndarray, gt_faces: np.ndarray,
                      seen: np.ndarray, away: float, count: int = 40_000, seed: int = 0) -> np.ndarray:
    """Angle (degrees) between the result's surface normal and the ground truth's at the nearest
    ground-truth point, for surface samples of the result farther than `away` from every point in
    `seen` (the scanned front): how lumpy or spiky the completed back is, against the truth."""
    import trimesh

    result = trimesh.Trimesh(vertices, faces, process=False)
    truth = trimesh.Trimesh(gt_vertices, gt_faces, process=False)
    pts, fid = trimesh.sample.sample_surface(result, count, seed=seed)
    back = cKDTree(seen).query(pts, workers=-1)[0] > away
    gt_pts, gt_fid = trimesh.sample.sample_surface(truth, 4 * count, seed=seed + 1)
    nn = cKDTree(gt_pts).query(pts[back], workers=-1)[1]
    cos = np.einsum("ij,ij->i", result.face_normals[fid[back]], truth.face_normals[gt_fid[nn]])
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
