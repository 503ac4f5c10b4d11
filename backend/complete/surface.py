"""From field to mesh: marching cubes over the solid field, clean-up of specks, and the front snap
onto the scan (each move undone where it would make triangles cross)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .field import solid_and_seen
from .free_space import FreeSpace
from .front_map import FrontMap, ViewFrame
from .loops import plug_hidden_loops, separate_diagonal_solid

PLUG_DEPTH_VOXELS = 0.5  # a plugged voxel's field value: inside by this much, so marching cubes closes it
SEEN_PLUG_DEPTH_VOXELS = 0.05
SEEN_MARGIN_VOXELS = 0.5  # seen empty space this close to the solid may be plugged too (the rim wedge is porous)
REACH_VOXELS = 0.9  # scan points farther from the snapped surface pull a vertex onto themselves
REACH_FROM_VOXELS = 2.5  # from no farther than this
REACH_ROUNDS = 3


def extract_surface(fmap: FrontMap, back: np.ndarray, ground: np.ndarray | None = None,
                    field_fn=None, free: FreeSpace | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Marching cubes over the solid's field on a local-frame grid of the front map's voxel size,
    evaluated one constant-depth slice at a time (bounded memory; the sideways front term of
    `free` is measured per depth). With `free` (the geometric field, which says where empty space
    was seen) hidden loops are plugged and marching cubes made to read the solid 6-connected
    (loops.py): no handle the scanner did not see through. `field_fn(local slice) -> values`
    overrides the field (the guided path combines its own)."""
    from skimage.measure import marching_cubes

    view, h = fmap.view, fmap.voxel
    inside = fmap.mask
    w_lo = float(fmap.depth[inside].min()) - 3 * h
    w_hi = float(back[inside].max()) + 3 * h
    ii, jj = np.nonzero(inside)
    a = fmap.a0 + fmap.step * np.array([ii.min() - 2, ii.max() + 2])
    b = fmap.b0 + fmap.step * np.array([jj.min() - 2, jj.max() + 2])
    scales = [view.scale(w_lo), view.scale(w_hi)]
    x_lo, x_hi = min(a[0] * s for s in scales), max(a[1] * s for s in scales)
    y_lo, y_hi = min(b[0] * s for s in scales), max(b[1] * s for s in scales)
    xs = np.arange(x_lo - h, x_hi + 2 * h, h)
    ys = np.arange(y_lo - h, y_hi + 2 * h, h)
    zs = np.arange(w_lo, w_hi + h, h)
    if len(xs) * len(ys) * len(zs) > 40_000_000:
        raise InputError("the completion volume is too large; lower the resolution")
    values = np.empty((len(xs), len(ys), len(zs)), dtype=np.float32)
    grid_x, grid_y = np.meshgrid(xs, ys, indexing="ij")
    # the geometric field says where empty space was seen: hidden loops are then plugged (loops.py)
    seen = np.zeros(values.shape, bool) if field_fn is None and free is not None else None
    for k, z in enumerate(zs):
        local = np.stack([grid_x, grid_y, np.full_like(grid_x, z)], axis=-1)
        if field_fn is not None:
            slab = field_fn(local)
        else:
            slab, seen_slab = solid_and_seen(fmap, back, local, free)
            if seen is not None:
                seen[:, :, k] = seen_slab
        if ground is not None:
            world = view.to_world(local.reshape(-1, 3))
            below = -(world @ ground[:3] + ground[3]).reshape(slab.shape)
            slab = np.maximum(slab, below)
            if seen is not None:
                seen[:, :, k] |= below > 0
        values[:, :, k] = slab
    values[[0, -1]] = values[:, [0, -1]] = values[:, :, [0, -1]] = h  # closed: outside on the box
    if seen is not None:
        plugs = plug_hidden_loops(values < 0, seen & (values > SEEN_MARGIN_VOXELS * h), values / h)
        # a plug in seen space, right at the front, only just inside: it must not bulge over the scan
        values[plugs] = np.where(seen[plugs], -SEEN_PLUG_DEPTH_VOXELS * h, -PLUG_DEPTH_VOXELS * h)
        values = separate_diagonal_solid(values)
    if values.min() >= 0:
        raise InputError("the completion is empty (the front is too small for the voxel grid)")
    verts, faces, _, _ = marching_cubes(values, level=0.0, spacing=(h, h, h), gradient_direction="descent")
    verts = verts + np.array([xs[0], ys[0], zs[0]])
    return _clean_components(view.to_world(verts), faces.astype(np.int64), free, h)


def snap_front(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, normals: np.ndarray,
               view: ViewFrame, voxel: float, rounds: int = 4) -> tuple[np.ndarray, int]:
    """Move front-facing vertices (facing the scanner, within 1.5 voxels of the scan, agreeing in
    normal) onto the tangent plane of their nearest scan point, so the front follows the scan to
    well within a voxel; scan points still farther pull a vertex onto themselves
    (`_reach_far_points`); moves that make triangles cross are undone (vertices of crossing
    triangles go back, until no moved vertex is in a crossing). Returns the vertices and how many
    moves were undone."""
    from scipy.spatial import cKDTree

    from ..assets.mesh import vertex_normals
    from .metrics import intersecting_pairs

    vn = vertex_normals(vertices, faces).astype(np.float64)
    rays = (vertices - view.origin) if view.perspective else np.broadcast_to(view.direction, vertices.shape)
    facing = np.einsum("ij,ij->i", vn, rays) < 0
    dist, nn = cKDTree(points).query(vertices, workers=-1)
    offset = np.einsum("ij,ij->i", vertices - points[nn], normals[nn])
    lateral = np.sqrt(np.maximum(dist**2 - offset**2, 0.0))
    move = facing & (dist < 1.5 * voxel) & (lateral < 0.75 * voxel) & (np.einsum("ij,ij->i", vn, normals[nn]) > 0.5)
    out = vertices.copy()
    out[move] -= offset[move, None] * normals[nn[move]]
    move |= _reach_far_points(out, faces, points, voxel)
    undone = 0
    changed = move  # only triangles with a changed corner can have started crossing
    for _ in range(rounds):
        crossing = np.unique(faces[intersecting_pairs(out, faces, among=changed[faces].any(axis=1))].reshape(-1))
        back = crossing[move[crossing]]
        if len(back) == 0:
            break
        out[back] = vertices[back]
        move[back] = False
        changed = np.zeros(len(vertices), bool)
        changed[back] = True
        undone += len(back)
    return out, undone


def _reach_far_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, voxel: float) -> np.ndarray:
    """Scan points still over REACH_VOXELS from the snapped surface (a cone's tip, a knife edge
    thinner than a voxel, a wall seen edge-on: marching cubes rounds them off or has no vertex
    there) pull their nearest vertex within REACH_FROM_VOXELS onto themselves, a vertex at most
    once (to its farthest point) (in place). Returns the mask of pulled vertices."""
    from scipy.spatial import cKDTree

    from .metrics import point_to_mesh_distance

    pulled = np.zeros(len(vertices), bool)
    for _ in range(REACH_ROUNDS):  # a pulled vertex drags its triangles: look again at what is left
        far = np.flatnonzero(point_to_mesh_distance(points, vertices, faces) > REACH_VOXELS * voxel)
        free = np.flatnonzero(~pulled)
        if len(far) == 0 or len(free) == 0:
            break
        dist, k = cKDTree(vertices[free]).query(points[far], distance_upper_bound=REACH_FROM_VOXELS * voxel,
                                                workers=-1)
        ok = np.isfinite(dist)
        far, vid, dist = far[ok], free[k[ok]], dist[ok]
        order = np.argsort(dist)  # per vertex the farthest point wins (assigned last)
        target = np.full(len(vertices), -1)
        target[vid[order]] = far[order]
        now = target >= 0
        vertices[now] = points[target[now]]
        pulled |= now
    return pulled


def _clean_components(vertices: np.ndarray, faces: np.ndarray, support: FreeSpace | None = None,
                      voxel: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge marching-cubes duplicates and drop specks (< 2 % of the largest piece's faces) unless
    they are solid (half a voxel of volume or more) and a scan point lies on them (within a voxel):
    a small piece holding part of the scanned front, such as a wall seen edge-on, is kept."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=True)
    pieces = mesh.split(only_watertight=False)
    if len(pieces) <= 1:
        return np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64), 0
    largest = max(len(p.faces) for p in pieces)

    def seen(piece) -> bool:
        if support is None or not piece.is_watertight or piece.volume < 0.5 * voxel**3:
            return False
        local = support.fmap.view.to_local(np.asarray(piece.vertices))
        return bool(np.isfinite(support.points.query(local, distance_upper_bound=voxel, workers=-1)[0]).any())

    kept = [p for p in pieces if len(p.faces) >= 0.02 * largest or seen(p)]
    merged = trimesh.util.concatenate(kept)
    return np.asarray(merged.vertices), np.asarray(merged.faces, dtype=np.int64), len(pieces) - len(kept)
