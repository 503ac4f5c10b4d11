"""Weight-free back completion: a closed surface behind the scanned front.

What the scan tells for sure: space in front of the front is empty (the scanner saw through it)
and the object lies inside the silhouette cone seen from the scanner. Inside that region each
scanner ray enters the object at the front depth z_f and leaves at a back depth z_b to infer:

- rim reflection: where the surface turns away from the scanner (the silhouette rim and the near
  side of depth jumps) front and back meet; a membrane (Laplace) interpolation of the rim depth
  gives a mid-surface, and the back mirrors the front through it: z_b = 2 z_rim - z_f. Exact for
  spheres and ellipsoids seen orthographically, thin for plates, and never thinner than `min_thickness`;
- symmetry: when a mirror plane has strong support (symmetry.py), the mirrored front gives back
  depths directly; a screened membrane blends them into the rim-reflection back;
- near the silhouette the back may not rise inwards (`recede_from_rim`): a furrow there made
  marching cubes bridge it along the side seam (handles in a genus-0 object);
- the solid {z_f <= w <= z_b, inside the silhouette (, above the ground)} becomes an SDF-like
  field, and marching cubes gives a watertight mesh whose front lies on the scan. The field has
  to be a distance near the front for that: its front term also measures sideways on the scan
  points (free_space.py), and its back term keeps the layers of a depth jump apart
  (`layered_back_term`); with the plain ray terms marching cubes cut occluding edges by more
  than a voxel. Front vertices are finally snapped onto the scan (`snap_front`), each move undone
  where it would make triangles cross.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

from ..errors import InputError
from ..progress import Progress, no_progress
from .free_space import FreeSpace
from .front_map import FrontMap, ViewFrame, build_front_map
from .symmetry import SymmetryPlane, detect_symmetry

JUMP_VOXELS = 4.0  # adjacent nodes whose front depths differ by more than this are a depth jump
FRONT_REACH_VOXELS = 2.0  # the front term measures sideways this far from the front
FRONT_TRUST_VOXELS = 0.5  # ray and sideways front terms disagreeing by more: the scan points decide
LAYER_MARGIN_VOXELS = 2.0  # a deeper layer may reach this far in front of its extrapolated front
SKIN_VOXELS = 2.0  # the solid keeps this neighbourhood of every scan point behind the front
SYMMETRY_STIFFNESS = 4.0  # membrane edge weight of the symmetric correction (data weight 1): its smoothness
CURVATURE_WINDOW = 4.0  # nodes: Gaussian window pooling the sphere fit of `curvature_thickness`
RIM_BAND_NODES = 3.0  # nodes from the silhouette within which the back may not rise inwards (`recede_from_rim`)
RIM_DIP_VOXELS = 0.75  # ... by more than this (deeper dips made handles; filling shallower ones only cost accuracy)


@dataclass(frozen=True)
class Completion:
    vertices: np.ndarray  # (V, 3) world
    faces: np.ndarray  # (F, 3) int64, outward winding
    front_map: FrontMap
    back_depth: np.ndarray  # (nx, ny) z_b per node
    symmetry: SymmetryPlane | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def voxel(self) -> float:
        return self.front_map.voxel


def make_view(points: np.ndarray, direction: np.ndarray, viewpoint: np.ndarray | None) -> ViewFrame:
    if viewpoint is not None:
        return ViewFrame.create(direction, viewpoint, perspective=True)
    return ViewFrame.create(direction, points.mean(axis=0), perspective=False)


def complete_geometric(points: np.ndarray, normals: np.ndarray, direction: np.ndarray,
                       viewpoint: np.ndarray | None = None, resolution: int = 128,
                       symmetry: bool = True, min_thickness_voxels: float = 2.5,
                       ground: np.ndarray | None = None, name: str = "scan",
                       progress: Progress = no_progress) -> Completion:
    """Complete one object's front. `ground` (4,): plane n.x + c = 0 with n pointing up/out of the
    ground; the result is clipped to n.x + c >= 0."""
    if resolution < 16:
        raise InputError("resolution must be at least 16")
    view = make_view(points, direction, viewpoint)
    fmap = build_front_map(points, normals, view, resolution, name)
    progress(0.25, "front depth map")
    notes: list[str] = []
    if not view.perspective:
        notes.append("no scanner position known: rays are taken parallel to the scan direction")
    z_rim = rim_depth(fmap)
    t_min = min_thickness_voxels * fmap.voxel * _obliquity(fmap)  # a thin wedge must still span voxels
    reflected = 2.0 * (z_rim - fmap.depth)
    chord, trust = curvature_thickness(fmap)
    # where the sphere fit is trusted the back may go as deep as its chord; the trust fades
    # smoothly, so the back does not step between the two priors
    thickness = np.maximum(reflected + trust * np.maximum(chord - reflected, 0.0), t_min)
    thickness = _smooth_inside(thickness, fmap.mask, sigma=1.0)
    plane = None
    if symmetry:
        plane = detect_symmetry(points, normals, fmap)
        progress(0.5, "symmetry")
        if plane is not None:
            thickness = _blend_symmetric(fmap, thickness, points, plane, t_min)
            notes.append(f"mirrored by a symmetry plane (normal {np.round(plane.normal, 3).tolist()}, "
                         f"support {plane.support:.0%}, violations {plane.violation:.1%})")
    back = recede_from_rim(fmap, fmap.depth + thickness)
    progress(0.6, "back surface")
    vertices, faces, dropped = extract_surface(fmap, back, ground, free=FreeSpace(fmap, points))
    if dropped:
        notes.append(f"{dropped} small disconnected piece(s) were removed")
    progress(0.9, "front snap")
    vertices, undone = snap_front(vertices, faces, points, normals, view, fmap.voxel)
    if undone:
        notes.append(f"{undone} front vertices were left off the scan where snapping them would make triangles cross")
    progress(1.0, "surface")
    return Completion(vertices, faces, fmap, back, plane, tuple(notes))


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


def _obliquity(fmap: FrontMap, limit: float = 4.0) -> np.ndarray:
    """1 / |cos| of the angle between the front normal and the scanner ray per node (capped):
    the depth extent a surface-normal thickness takes along the ray."""
    nx, ny = fmap.shape
    a = fmap.a0 + fmap.step * np.arange(nx)[:, None] * np.ones((1, ny))
    b = fmap.b0 + fmap.step * np.arange(ny)[None, :] * np.ones((nx, 1))
    if fmap.view.perspective:
        local = np.stack([a, b, np.ones_like(a)], axis=-1)
    else:
        local = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (nx, ny, 3))
    rays = local @ fmap.view.rotation
    rays = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    cos = np.abs(np.einsum("ijk,ijk->ij", rays, fmap.normal))
    return np.minimum(1.0 / np.maximum(cos, 1e-6), limit)


def _node_positions(fmap: FrontMap) -> np.ndarray:
    nx, ny = fmap.shape
    a = fmap.a0 + fmap.step * np.arange(nx)[:, None] * np.ones((1, ny))
    b = fmap.b0 + fmap.step * np.arange(ny)[None, :] * np.ones((nx, 1))
    return fmap.view.to_world(fmap.view.local_from_abw(a, b, fmap.depth).reshape(-1, 3)).reshape(nx, ny, 3)


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
    pos = _node_positions(fmap)
    nrm = np.stack([_smooth_inside(fmap.normal[..., k], mask, 2.0) for k in range(3)], axis=-1)
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
    chord = np.where(mask, 2.0 * np.clip(t, 0.0, inscribed) / _obliquity(fmap), 0.0)
    return chord, trust


def depth_jumps(fmap: FrontMap, p: tuple[np.ndarray, np.ndarray], q: tuple[np.ndarray, np.ndarray],
                threshold: float | np.ndarray) -> np.ndarray:
    """Whether the front breaks between nodes p and q (index pairs (i, j)): neither node's tangent
    plane (its depth and normal) meets the other node's ray within `threshold` (world units) of
    its depth. A plain depth difference cannot tell: on a front seen at a grazing angle (a lid,
    every silhouette of a round object) neighbours lie many voxels apart in depth although the
    surface is continuous, and noise then flips such pairs across any fixed threshold."""
    return np.minimum(_plane_miss(fmap, p, q), _plane_miss(fmap, q, p)) > threshold


def _plane_miss(fmap: FrontMap, p: tuple[np.ndarray, np.ndarray], q: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """|depth of q - depth where p's tangent plane meets q's ray| (inf where the plane is parallel
    to that ray or meets it behind the scanner)."""
    view = fmap.view
    ap, bp = fmap.a0 + fmap.step * p[0], fmap.b0 + fmap.step * p[1]
    aq, bq = fmap.a0 + fmap.step * q[0], fmap.b0 + fmap.step * q[1]
    nrm = fmap.normal[p] @ view.rotation.T  # local frame
    xp = view.local_from_abw(ap, bp, fmap.depth[p])
    if view.perspective:  # q's ray: w (aq, bq, 1)
        denom = nrm[..., 0] * aq + nrm[..., 1] * bq + nrm[..., 2]
        numer = np.einsum("...k,...k->...", nrm, xp)
    else:  # q's ray: (aq, bq, w)
        denom = nrm[..., 2]
        numer = np.einsum("...k,...k->...", nrm, xp) - nrm[..., 0] * aq - nrm[..., 1] * bq
    with np.errstate(divide="ignore", invalid="ignore"):
        w = numer / denom
    ok = (np.abs(denom) > 1e-3) & (w > 0 if view.perspective else np.isfinite(w))
    return np.where(ok, np.abs(fmap.depth[q] - w), np.inf)


def _smooth_inside(field: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a field over the silhouette only (normalized convolution)."""
    m = mask.astype(np.float64)
    num = ndimage.gaussian_filter(np.where(mask, field, 0.0), sigma)
    den = ndimage.gaussian_filter(m, sigma)
    return np.where(mask, num / np.maximum(den, 1e-12), field)


def _grid_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of 4-adjacent nodes that are both inside `mask` (flat indices)."""
    idx = np.arange(mask.size).reshape(mask.shape)
    pairs = []
    for sl_a, sl_b in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                       ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        both = mask[sl_a] & mask[sl_b]
        pairs.append(np.stack([idx[sl_a][both], idx[sl_b][both]], axis=1))
    e = np.concatenate(pairs)
    return e[:, 0], e[:, 1]


def _membrane_solve(n: int, edges: tuple[np.ndarray, np.ndarray], edge_weight: float,
                    diag: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Minimise sum_edges w (x_i - x_j)^2 + sum_i diag_i x_i^2 - 2 rhs_i x_i."""
    i, j = edges
    ones = np.full(len(i), edge_weight)
    adj = sparse.coo_matrix((np.concatenate([ones, ones]), (np.concatenate([i, j]), np.concatenate([j, i]))),
                            shape=(n, n)).tocsr()
    lap = sparse.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj
    return spsolve((lap + sparse.diags(diag)).tocsc(), rhs)


def rim_depth(fmap: FrontMap) -> np.ndarray:
    """Membrane interpolation of the depth where the front turns away from the scanner (the
    silhouette border and the near side of depth jumps), over the silhouette."""
    mask = fmap.mask
    depth = fmap.depth
    full = ndimage.binary_erosion(mask, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]), border_value=0)
    border = mask & ~full
    i, j = _grid_edges(mask)
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
    solved = _membrane_solve(len(ids), (local[i[keep]], local[j[keep]]), 1.0, diag, rhs)
    out = depth.copy().ravel()
    out[ids] = solved
    return out.reshape(mask.shape)


def _blend_symmetric(fmap: FrontMap, thickness: np.ndarray, points: np.ndarray, plane: SymmetryPlane,
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
    i, j = _grid_edges(mask)
    w = np.where(has.ravel()[ids], 1.0, 0.0)
    correction = _membrane_solve(len(ids), (local[i], local[j]), SYMMETRY_STIFFNESS, w + 0.01, w * data.ravel()[ids])
    out = thickness.copy().ravel()
    out[ids] = np.maximum(out[ids] + correction, np.broadcast_to(t_min, mask.shape).ravel()[ids])
    return out.reshape(mask.shape)


def solid_field(fmap: FrontMap, back: np.ndarray, local: np.ndarray, free: FreeSpace | None = None) -> np.ndarray:
    """SDF-like field (world units, < 0 inside) of the completed solid at local-frame points (..., 3):
    the intersection of {w >= z_f}, {w <= z_b} (per depth layer, `layered_back_term`) and the
    silhouette cone. With `free` (then `local` must be one constant-depth slice) the front term
    also measures sideways on the scan points, so it stays a distance across depth jumps, and
    {w <= z_b} is widened by a skin of SKIN_VOXELS around every scan point (free_space.py)."""
    view = fmap.view
    w = local[..., 2]
    scale = view.scale(w)
    ab = local[..., :2] / (scale[..., None] if view.perspective else 1.0)
    lateral = fmap.sample(fmap.lateral, ab) * scale
    margin = 0.0 if free is None else LAYER_MARGIN_VOXELS * fmap.voxel
    behind = layered_back_term(fmap, back, ab, w, margin)
    if free is None:
        front = fmap.sample(fmap.depth, ab) - w
    else:
        reach = FRONT_REACH_VOXELS * fmap.voxel
        front = free.front_term(local, reach, FRONT_TRUST_VOXELS * fmap.voxel,
                                where=(lateral < reach) & (behind < reach))
        skin = SKIN_VOXELS * fmap.voxel
        near = (behind > -skin) & (front < skin) & (lateral < skin)
        behind = np.minimum(behind, free.skin_term(local, skin, where=near))
    return np.maximum(np.maximum(front, behind), lateral)


def layered_back_term(fmap: FrontMap, back: np.ndarray, ab: np.ndarray, w: np.ndarray,
                      margin: float = 0.0) -> np.ndarray:
    """w - z_b, interpolated without bridging depth jumps. A grid cell whose corner columns
    [z_f, z_b] do not overlap in depth (an occluding edge over a surface further back) holds
    separate layers: each is interpolated from its own corners only, the nearer layer bounded by
    its back (its front is the front term's business), every deeper one by its back and by its
    front extrapolated along the front's slope, less `margin` (it only has to keep the layers
    apart behind the occluder; where the scanner saw the deeper layer, the front term is exact),
    and the cell's solid is their union. A plain bilinear z_b would ramp from the near layer's thin
    back to the far one's and cut the far surface next to the occluder; where the columns overlap
    (no jump) this is the bilinear interpolation."""
    ij = fmap.node_coords(ab)
    nx, ny = fmap.shape
    i0 = np.clip(np.floor(ij[..., 0]).astype(np.int64), 0, nx - 2)
    j0 = np.clip(np.floor(ij[..., 1]).astype(np.int64), 0, ny - 2)
    fx = np.clip(ij[..., 0] - i0, 0.0, 1.0)
    fy = np.clip(ij[..., 1] - j0, 0.0, 1.0)
    ci = np.stack([i0, i0 + 1, i0, i0 + 1])
    cj = np.stack([j0, j0, j0 + 1, j0 + 1])
    wt = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    zf, zb = fmap.depth[ci, cj], back[ci, cj]
    out = w - (wt * zb).sum(axis=0)
    split = zf.max(axis=0) > zb.min(axis=0)  # some corner columns do not overlap: several layers
    if not split.any():
        return out
    w = w[split]
    ci, cj, wt, zf, zb = ci[:, split], cj[:, split], wt[:, split], zf[:, split], zb[:, split]
    i0, j0, fx, fy = i0[split], j0[split], fx[split], fy[split]
    gi, gj = _layer_slopes(fmap.depth, back)
    di, dj = fx - (ci - i0), fy - (cj - j0)  # offsets from each corner, in nodes
    zf_ext = zf + gi[ci, cj] * di + gj[ci, cj] * dj  # each corner's front carried to the sample
    order = np.argsort(zf, axis=0)
    zf, zb, wt, zf_ext = (np.take_along_axis(x, order, axis=0) for x in (zf, zb, wt, zf_ext))
    reach = np.maximum.accumulate(zb, axis=0)  # deepest back among the nearer corners
    layer = np.concatenate([np.zeros((1,) + zf.shape[1:], np.int64),
                            np.cumsum(zf[1:] > reach[:-1], axis=0)])
    union = np.full(w.shape, np.inf)
    for k in range(int(layer.max()) + 1):
        mine = np.where(layer == k, wt, 0.0)
        total = mine.sum(axis=0)
        has = total > 0
        norm = np.maximum(total, 1e-12)
        term = w - (mine * zb).sum(axis=0) / norm
        if k:  # a separator in hidden space: where the scanner saw this layer the front term rules
            term = np.maximum(term, (mine * zf_ext).sum(axis=0) / norm - w - margin)
        union = np.where(has, np.minimum(union, term), union)
    out[split] = union
    return out


def _layer_slopes(depth: np.ndarray, back: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front depth change per node along i and j, from the neighbours whose columns overlap
    (same layer); zero where a node has none along an axis."""
    slopes = []
    for axis in (0, 1):
        diffs, counts = np.zeros(depth.shape), np.zeros(depth.shape)
        n = depth.shape[axis]
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(0, n - 1), slice(1, n)
        a, b = tuple(a), tuple(b)
        same = (depth[b] <= back[a]) & (depth[a] <= back[b])
        d = np.where(same, depth[b] - depth[a], 0.0)
        diffs[a] += d
        counts[a] += same
        diffs[b] += d
        counts[b] += same
        slopes.append(diffs / np.maximum(counts, 1))
    return slopes[0], slopes[1]


def extract_surface(fmap: FrontMap, back: np.ndarray, ground: np.ndarray | None = None,
                    field_fn=None, free: FreeSpace | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Marching cubes over the solid's field on a local-frame grid of the front map's voxel size,
    evaluated one constant-depth slice at a time (bounded memory; the sideways front term of
    `free` is measured per depth). `field_fn(local slice) -> values` overrides the field (the
    guided path combines its own)."""
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
    fn = field_fn or (lambda loc: solid_field(fmap, back, loc, free))
    for k, z in enumerate(zs):
        local = np.stack([grid_x, grid_y, np.full_like(grid_x, z)], axis=-1)
        slab = fn(local)
        if ground is not None:
            world = view.to_world(local.reshape(-1, 3))
            slab = np.maximum(slab, -(world @ ground[:3] + ground[3]).reshape(slab.shape))
        values[:, :, k] = slab
    values[[0, -1]] = values[:, [0, -1]] = values[:, :, [0, -1]] = h  # closed: outside on the box
    if values.min() >= 0:
        raise InputError("the completion is empty (the front is too small for the voxel grid)")
    verts, faces, _, _ = marching_cubes(values, level=0.0, spacing=(h, h, h), gradient_direction="descent")
    verts = verts + np.array([xs[0], ys[0], zs[0]])
    return _clean_components(view.to_world(verts), faces.astype(np.int64), free, h)


def snap_front(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, normals: np.ndarray,
               view: ViewFrame, voxel: float, rounds: int = 4) -> tuple[np.ndarray, int]:
    """Move front-facing vertices (facing the scanner, within 1.5 voxels of the scan, agreeing in
    normal) onto the tangent plane of their nearest scan point, so the front follows the scan to
    well within a voxel; moves that make triangles cross are undone (vertices of crossing
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
