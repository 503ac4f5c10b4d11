"""The front as a depth map seen from the scanner: what the weight-free completion reasons on.

`ViewFrame` maps world points to (a, b, w): image-plane coordinates and depth w along the scan
direction; perspective (rays from a known viewpoint) or orthographic (parallel rays along d).
`FrontMap` samples the front on a regular (a, b) grid: front depth, silhouette mask, signed
lateral distance to the silhouette and the front normal, per grid node; and the per-node geometry
the priors share (obliquity, node positions, depth jumps, grid edges, smoothing inside the silhouette).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InputError

GRID_PAD = 4  # empty nodes around the silhouette
DROPOUT_SHARE = 0.02  # interior holes up to this share of the silhouette are dropouts (filled), larger ones real
JUMP_VOXELS = 4.0  # adjacent nodes whose front depths differ by more than this are a depth jump


@dataclass(frozen=True)
class ViewFrame:
    rotation: np.ndarray  # (3, 3) rows e1, e2, d: right-handed, d = scan direction
    origin: np.ndarray  # (3,) viewpoint (perspective) or a reference point (orthographic)
    perspective: bool

    @classmethod
    def create(cls, direction: np.ndarray, origin: np.ndarray, perspective: bool) -> "ViewFrame":
        d = direction / np.linalg.norm(direction)
        helper = np.eye(3)[int(np.argmin(np.abs(d)))]
        e1 = np.cross(helper, d)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(d, e1)
        return cls(np.stack([e1, e2, d]), np.asarray(origin, dtype=np.float64), perspective)

    @property
    def direction(self) -> np.ndarray:
        return self.rotation[2]

    def to_local(self, points: np.ndarray) -> np.ndarray:
        return (points - self.origin) @ self.rotation.T

    def to_world(self, local: np.ndarray) -> np.ndarray:
        return local @ self.rotation + self.origin

    def project(self, points: np.ndarray) -> np.ndarray:
        """World (N, 3) -> (N, 3) of (a, b, w)."""
        q = self.to_local(points)
        if self.perspective:
            w = np.maximum(q[:, 2], 1e-9)
            return np.stack([q[:, 0] / w, q[:, 1] / w, q[:, 2]], axis=1)
        return q

    def scale(self, w: np.ndarray | float) -> np.ndarray | float:
        """World length of one (a, b) unit at depth w."""
        return np.maximum(w, 1e-9) if self.perspective else np.ones_like(w) if isinstance(w, np.ndarray) else 1.0

    def local_from_abw(self, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
        s = self.scale(w)
        return np.stack([a * s, b * s, w], axis=-1)


@dataclass(frozen=True)
class FrontMap:
    view: ViewFrame
    a0: float  # (a, b) of node (0, 0)
    b0: float
    step: float  # node spacing in (a, b) units
    voxel: float  # world size of one node at the front's median depth
    depth: np.ndarray  # (nx, ny) front depth w; extrapolated from the nearest silhouette node outside it
    mask: np.ndarray  # (nx, ny) bool: inside the silhouette
    lateral: np.ndarray  # (nx, ny) signed distance to the silhouette in (a, b) units, < 0 inside
    normal: np.ndarray  # (nx, ny, 3) unit front normal (world, facing the scanner)
    w_median: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape  # type: ignore[return-value]

    def node_coords(self, ab: np.ndarray) -> np.ndarray:
        """(a, b) -> fractional node indices."""
        return np.stack([(ab[..., 0] - self.a0) / self.step, (ab[..., 1] - self.b0) / self.step], axis=-1)

    def sample(self, field: np.ndarray, ab: np.ndarray, order: int = 1) -> np.ndarray:
        """Bilinear lookup of a node field at (a, b) positions (edge values outside the grid)."""
        ij = self.node_coords(ab).reshape(-1, 2).T
        return ndimage.map_coordinates(field, ij, order=order, mode="nearest").reshape(ab.shape[:-1])

    def nearest_node(self, ab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ij = np.rint(self.node_coords(ab)).astype(np.int64)
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < self.shape[0]) & (ij[:, 1] >= 0) & (ij[:, 1] < self.shape[1])
        return np.clip(ij[:, 0], 0, self.shape[0] - 1), np.clip(ij[:, 1], 0, self.shape[1] - 1), inside


def build_front_map(points: np.ndarray, normals: np.ndarray, view: ViewFrame, resolution: int,
                    name: str = "scan") -> FrontMap:
    """Sample the front on an (a, b) grid with `resolution` nodes across its larger side."""
    abw = view.project(points)
    if view.perspective and (view.to_local(points)[:, 2] <= 0).any():
        raise InputError(f"{name}: some scan points lie behind the scanner position")
    w_median = float(np.median(abw[:, 2]))
    lo, hi = abw[:, :2].min(axis=0), abw[:, :2].max(axis=0)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise InputError(f"{name}: the scan has no extent across the scan direction")
    step = extent / resolution
    voxel = float(step * view.scale(w_median))
    nx, ny = (np.ceil((hi - lo) / step).astype(int) + 2 * GRID_PAD + 1)
    a0, b0 = lo[0] - GRID_PAD * step, lo[1] - GRID_PAD * step
    uv = (abw[:, :2] - np.array([a0, b0])) / step  # points in node units
    tree = cKDTree(uv)
    gi, gj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    nodes = np.stack([gi.ravel(), gj.ravel()], axis=1).astype(np.float64)
    sub = uv[:: max(1, len(uv) // 20000)]
    spacing = float(np.median(tree.query(sub, k=2)[0][:, 1]))
    k = int(min(12, len(uv)))
    dist, nn = tree.query(nodes, k=k, workers=-1)
    dist, nn = dist.reshape(len(nodes), k), nn.reshape(len(nodes), k)
    near = dist[:, 0].reshape(nx, ny)
    mask = near <= max(0.75, 1.5 * spacing)
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3)), border_value=0) | mask
    holes, count = ndimage.label(~mask)
    dropout = np.zeros_like(mask)
    if count > 1:  # fill dropouts but keep real holes, e.g. the middle of a ring or a drilled plate
        sizes = ndimage.sum(np.ones_like(holes), holes, index=np.arange(1, count + 1))
        border = set(np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]])))
        interior = [(lab, size) for lab, size in zip(range(1, count + 1), sizes) if lab not in border]
        limit = max(4.0, DROPOUT_SHARE * (mask.sum() + sum(size for _, size in interior)))
        dropout = np.isin(holes, [lab for lab, size in interior if size <= limit])
        mask |= dropout
    depth = _fit_depth(uv, abw[:, 2], nodes, dist, nn, radius=max(1.5, 2.0 * spacing), voxel=voxel).reshape(nx, ny)
    weights = np.exp(-(dist / max(1.0, spacing)) ** 2)[..., None]
    normal = (normals[nn] * weights).sum(axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    normal = normal.reshape(nx, ny, 3)
    # outside the silhouette: copy the nearest silhouette node (keeps lookups near the rim sane)
    _, (ii, jj) = ndimage.distance_transform_edt(~mask, return_indices=True)
    depth = depth[ii, jj]
    normal = normal[ii, jj]
    if dropout.any():  # across a dropout the front continues smoothly from its rim
        depth = _harmonic_fill(depth, dropout)
        normal = np.stack([_harmonic_fill(normal[..., k], dropout) for k in range(3)], axis=-1)
        normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    inside = ndimage.distance_transform_edt(mask)
    lateral = np.where(mask, -inside, near) * step
    return FrontMap(view, float(a0), float(b0), float(step), voxel, depth, mask, lateral, normal, w_median)


def _harmonic_fill(field: np.ndarray, holes: np.ndarray, iterations: int = 200) -> np.ndarray:
    """`field` inside `holes` replaced by the membrane through its values around them (Jacobi)."""
    out = field.copy()
    kernel = np.array([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]])
    for _ in range(iterations):
        out[holes] = ndimage.convolve(out, kernel, mode="nearest")[holes]
    return out


def _fit_depth(uv: np.ndarray, w: np.ndarray, nodes: np.ndarray, dist: np.ndarray, nn: np.ndarray,
               radius: float, voxel: float) -> np.ndarray:
    """Depth at each node: weighted plane fit over nearby points; where the neighbourhood straddles
    a depth jump (large residual) or is too sparse, the nearest point's depth."""
    offsets = uv[nn] - nodes[:, None, :]
    within = dist <= radius
    wt = np.where(within, np.exp(-(dist / radius) ** 2 * 2.0), 0.0)
    A = np.concatenate([np.ones(offsets.shape[:2] + (1,)), offsets], axis=2)
    ata = np.einsum("nk,nki,nkj->nij", wt, A, A) + np.diag([1e-9, 1e-3, 1e-3])[None]
    atb = np.einsum("nk,nki,nk->ni", wt, A, w[nn])
    coef = np.linalg.solve(ata, atb[..., None])[..., 0]
    fitted = coef[:, 0]
    resid = np.sqrt(np.einsum("nk,nk->n", wt, (np.einsum("nki,ni->nk", A, coef) - w[nn]) ** 2)
                    / np.maximum(wt.sum(axis=1), 1e-12))
    fallback = (within.sum(axis=1) < 3) | (resid > voxel) | ~np.isfinite(fitted)
    return np.where(fallback, w[nn[:, 0]], fitted)


# ---------------------------------------------------------------------------------------- per-node geometry

def silhouette_width(fmap: FrontMap) -> float:
    """World width of the silhouette across its larger side, at the front's median depth."""
    ii, jj = np.nonzero(fmap.mask)
    nodes = max(int(np.ptp(ii)), int(np.ptp(jj))) + 1
    return float(nodes * fmap.step * fmap.view.scale(fmap.w_median))


def obliquity(fmap: FrontMap, limit: float = 4.0) -> np.ndarray:
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


def node_positions(fmap: FrontMap) -> np.ndarray:
    nx, ny = fmap.shape
    a = fmap.a0 + fmap.step * np.arange(nx)[:, None] * np.ones((1, ny))
    b = fmap.b0 + fmap.step * np.arange(ny)[None, :] * np.ones((nx, 1))
    return fmap.view.to_world(fmap.view.local_from_abw(a, b, fmap.depth).reshape(-1, 3)).reshape(nx, ny, 3)


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


def smooth_inside(field: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a field over the silhouette only (normalized convolution)."""
    m = mask.astype(np.float64)
    num = ndimage.gaussian_filter(np.where(mask, field, 0.0), sigma)
    den = ndimage.gaussian_filter(m, sigma)
    return np.where(mask, num / np.maximum(den, 1e-12), field)


def grid_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of 4-adjacent nodes that are both inside `mask` (flat indices)."""
    idx = np.arange(mask.size).reshape(mask.shape)
    pairs = []
    for sl_a, sl_b in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                       ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        both = mask[sl_a] & mask[sl_b]
        pairs.append(np.stack([idx[sl_a][both], idx[sl_b][both]], axis=1))
    e = np.concatenate(pairs)
    return e[:, 0], e[:, 1]
