"""Back-depth priors over the front map: how deep behind each front node the object ends.

- rim reflection (`rim_depth`): a membrane through the depth where the front turns away from the
  scanner; the back mirrors the front through it;
- sphere-fit chords (`curvature_thickness`) where the front is locally sphere-like;
- the mirrored front of a detected symmetry plane (`blend_symmetric`);
- near the silhouette the back may not rise inwards (`recede_from_rim`).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

from .front_map import JUMP_VOXELS, FrontMap, depth_jumps, grid_edges, node_positions, obliquity, smooth_inside
from .symmetry import SymmetryPlane

SYMMETRY_STIFFNESS = 4.0  # membrane edge weight of the symmetric correction (data weight 1): its smoothness
CURVATURE_WINDOW = 4.0  # nodes: Gaussian window pooling the sphere fit of `curvature_thickness`
RIM_BAND_NODES = 3.0  # nodes from the silhouette within which the back may not rise inwards (`recede_from_rim`)
RIM_DIP_VOXELS = 0.75  # ... by more than this (deeper dips made handles; filling shallower ones only cost accuracy)


def rim_depth(fmap: FrontMap) -> np.ndarray:
    """Membrane interpolation of the depth where the front turns away from the scanner (the
    silhouette border and the near side of depth jumps), over the silhouette."""
    mask = fmap.mask
    depth = fmap.depth
    full = ndimage.binary_erosion(mask, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]), border_value=0)
    border = mask & ~full
    i, j = grid_edges(mask)
    flat = depth.ravel()
    jump = depth_jumps(fmap, np.unravel_index(i, mask.shape), np.unravel_index(j, mask.shape), JUMP_VOXELS * fmap.voxel)
    near_side = np.zeros(mask.size, bool)
    near_side[np.where(flat[i[jump]] < flat[j[jump]], i[jump], j[jump])] = True
    dirichlet = (border.ravel() | near_side) & mask.ravel()
    keep = ~jump
    # unknowns: silhouette nodes only
    ids = np.flatnonzero(mask.ravel())
    local = np.full(mask.size, -1)
    local[ids] = np.arange(len(ids))
    diag = np.where(dirichlet[ids], 1e3, 1e-4)
    rhs = diag * flat[ids]
    solved = membrane_solve(len(ids), (local[i[keep]], local[j[keep]]), 1.0, diag, rhs)
    out = depth.copy().ravel()
    out[ids] = solved
    return out.reshape(mask.shape)


def curvature_thickness(fmap: FrontMap, radius: int = 3, window: float = CURVATURE_WINDOW,
                        min_fit: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Chord length through a locally spherical front: each front point p with normal n lies on a
    sphere around p - t n with t fitted over its neighbours (dp ~ t dn); the scanner ray through p
    then crosses it over 2 t |cos(ray, n)|. This is what the rim reflection misses under perspective
    (a perspective scanner sees less than the half facing it). Returns the chord and how far to
    trust it (0-1, from the fit quality; 0 where the front is flat, concave or not sphere-like);
    the chord is capped by the silhouette's inscribed radius.

    Both vary smoothly over the front: the least-squares sums are pooled over a Gaussian window
    of `window` nodes and the normals are smoothed first. Fitted node by node from the scan's
    noisy normals, t and the fit test flickered from node to node, and the back, which follows
    the larger of this chord and the rim reflection's, came out as spikes and craters."""
    mask = fmap.mask
    pos = node_positions(fmap)
    nrm = np.stack([smooth_inside(fmap.normal[..., k], mask, 2.0) for k in range(3)], axis=-1)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
    num = np.zeros(mask.shape)
    den = np.zeros(mask.shape)
    dpp = np.zeros(mask.shape)
    nx, ny = mask.shape
    gi, gj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    for di in range(-radius, radius + 1):
        for dj in range(-radius, radius + 1):
            if (di, dj) == (0, 0) or di * di + dj * dj > radius * radius:
                continue
            src = (slice(max(0, -di), nx - max(0, di)), slice(max(0, -dj), ny - max(0, dj)))
            dst = (slice(max(0, di), nx - max(0, -di)), slice(max(0, dj), ny - max(0, -dj)))
            dp = pos[dst] - pos[src]
            dn = nrm[dst] - nrm[src]
            ok = mask[dst] & mask[src]
            ok &= ~depth_jumps(fmap, (gi[src], gj[src]), (gi[dst], gj[dst]), JUMP_VOXELS * fmap.voxel * max(abs(di), abs(dj)))
            num[src] += np.where(ok, np.einsum("ijk,ijk->ij", dp, dn), 0.0)
            den[src] += np.where(ok, np.einsum("ijk,ijk->ij", dn, dn), 0.0)
            dpp[src] += np.where(ok, np.einsum("ijk,ijk->ij", dp, dp), 0.0)
    num, den, dpp = (ndimage.gaussian_filter(np.where(mask, x, 0.0), window) for x in (num, den, dpp))
    t = num / np.maximum(den, 1e-20)
    # fit quality: share of the neighbours' offsets explained by the sphere model
    fit = 1.0 - np.maximum(dpp - 2 * t * num + t * t * den, 0.0) / np.maximum(dpp, 1e-20)
    inscribed = float(-fmap.lateral.min()) * float(fmap.view.scale(fmap.w_median))
    trust = np.where(mask & (t > 0), np.clip((fit - min_fit) / 0.25, 0.0, 1.0), 0.0)
    chord = np.where(mask, 2.0 * np.clip(t, 0.0, inscribed) / obliquity(fmap), 0.0)
    return chord, trust


def recede_from_rim(fmap: FrontMap, back: np.ndarray, band: float = RIM_BAND_NODES) -> np.ndarray:
    """Near a silhouette the surface folds: the front comes towards the scanner and the back goes
    away from it, so within `band` nodes of the silhouette the back depth does not decrease inwards
    (by more than RIM_DIP_VOXELS). Ring by ring inwards, each node is pushed at least as deep as the
    mean back of its 8-neighbours nearer the silhouette, less that tolerance.

    The priors do not hold that by themselves: where the front is grazing it rises ~4 voxels a
    node, while the (smoothed, obliquity-capped) thickness grows ~2.5, so back = front + thickness
    dipped 1-2 voxels a node or two inside the rim. That furrow ran along the side seam, and where
    the silhouette cone, slanted across the voxel grid under perspective, met its staircase,
    marching cubes bridged it: the handles of the ellipsoid and the vase. Filling it from the rim
    side (a thicker rim) is the direction that removes them: capping the rim's back at the inner
    back instead (thinner, closer to the truth at the rim) made more handles (torus genus 15 -> 21)."""
    mask = fmap.mask
    dist = ndimage.distance_transform_edt(mask)
    out = back.copy()
    nx, ny = mask.shape
    offsets = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]
    for level in np.unique(dist[(dist > 1) & (dist <= band)]):  # rings in order: rim-ward ones are final
        ii, jj = np.nonzero(dist == level)
        total, count = np.zeros(len(ii)), np.zeros(len(ii))
        for di, dj in offsets:
            pi, pj = np.clip(ii + di, 0, nx - 1), np.clip(jj + dj, 0, ny - 1)
            nearer = mask[pi, pj] & (dist[pi, pj] < level)
            total += np.where(nearer, out[pi, pj], 0.0)
            count += nearer
        has = count > 0
        ii, jj = ii[has], jj[has]
        out[ii, jj] = np.maximum(out[ii, jj], total[has] / count[has] - RIM_DIP_VOXELS * fmap.voxel)
    return out


def blend_symmetric(fmap: FrontMap, thickness: np.ndarray, points: np.ndarray, plane: SymmetryPlane,
                     t_min: np.ndarray) -> np.ndarray:
    """Replace the prior thickness by the mirrored front's where it lands behind the front, and
    blend smoothly elsewhere: a screened membrane on the correction, stiff against single nodes
    (SYMMETRY_STIFFNESS). With an edge weight equal to the data weight, the correction followed
    each node's deepest mirrored point almost exactly: spikes where one noisy or grazing point
    landed deep, and a lumpy back between."""
    mirrored = plane.reflect(points)
    abw = fmap.view.project(mirrored)
    ii, jj, inside = fmap.nearest_node(abw[:, :2])
    ok = inside & fmap.mask[ii, jj] & (abw[:, 2] > fmap.depth[ii, jj] + 2.0 * fmap.voxel)
    target = np.full(fmap.shape, -np.inf)
    np.maximum.at(target, (ii[ok], jj[ok]), abw[ok, 2])
    has = np.isfinite(target) & fmap.mask
    if not has.any():
        return thickness
    data = np.where(has, target - fmap.depth - thickness, 0.0)
    mask = fmap.mask
    ids = np.flatnonzero(mask.ravel())
    local = np.full(mask.size, -1)
    local[ids] = np.arange(len(ids))
    i, j = grid_edges(mask)
    w = np.where(has.ravel()[ids], 1.0, 0.0)
    correction = membrane_solve(len(ids), (local[i], local[j]), SYMMETRY_STIFFNESS, w + 0.01, w * data.ravel()[ids])
    out = thickness.copy().ravel()
    out[ids] = np.maximum(out[ids] + correction, np.broadcast_to(t_min, mask.shape).ravel()[ids])
    return out.reshape(mask.shape)


def membrane_solve(n: int, edges: tuple[np.ndarray, np.ndarray], edge_weight: float,
                    diag: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Minimise sum_edges w (x_i - x_j)^2 + sum_i diag_i x_i^2 - 2 rhs_i x_i."""
    i, j = edges
    ones = np.full(len(i), edge_weight)
    adj = sparse.coo_matrix((np.concatenate([ones, ones]), (np.concatenate([i, j]), np.concatenate([j, i]))),
                            shape=(n, n)).tocsr()
    lap = sparse.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj
    return spsolve((lap + sparse.diags(diag)).tocsc(), rhs)
