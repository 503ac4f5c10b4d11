"""Mirror-symmetry detection on a scanned front, judged by what the scanner saw.

A candidate plane reflects the front. Each reflected point is
- support: it lands on the scanned front (within tolerance, with an agreeing normal),
- violation: it lands in space the scanner saw empty (in front of the front, or outside the
  silhouette), which a true symmetry of the object can never do,
- coverage: it lands behind the front, in the unseen part (what the mirror adds).
A plane is used only with strong support, few violations and real coverage, and only on the
pieces of the front (objects apart) it maps onto themselves or that support it themselves
(`supported_pieces`): a plane through one cylinder's axis is a true symmetry of it, but it throws
a second cylinder beside it deep behind the first, where nothing was seen to contradict it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .front_map import FrontMap

MIN_SUPPORT = 0.2
MAX_VIOLATION = 0.06
MIN_COVERAGE = 0.15


@dataclass(frozen=True)
class SymmetryPlane:
    normal: np.ndarray  # (3,) unit
    offset: float  # plane: normal . x = offset
    support: float
    violation: float
    coverage: float

    def reflect(self, points: np.ndarray) -> np.ndarray:
        return points - 2.0 * (points @ self.normal - self.offset)[:, None] * self.normal[None]

    def reflect_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return vectors - 2.0 * (vectors @ self.normal)[:, None] * self.normal[None]


def fibonacci_hemisphere(count: int) -> np.ndarray:
    i = np.arange(count) + 0.5
    z = i / count  # z in (0, 1): one hemisphere (a plane's normal and its negation are the same plane)
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def score_planes(points: np.ndarray, normals: np.ndarray, fmap: FrontMap, plane_normals: np.ndarray,
                 offsets: np.ndarray, tol_voxels: float = 2.0) -> np.ndarray:
    """(P, O, 3) support, violation, coverage fractions for planes normal_p . x = offset_po."""
    tol = tol_voxels * fmap.voxel
    out = np.zeros((len(plane_normals), offsets.shape[1], 3))
    view = fmap.view
    for p, n in enumerate(plane_normals):
        base = points - 2.0 * (points @ n)[:, None] * n  # reflection through n.x = 0
        rn = normals - 2.0 * (normals @ n)[:, None] * n
        moved = base[None] + 2.0 * offsets[p][:, None, None] * n  # (O, N, 3)
        abw = view.project(moved.reshape(-1, 3))
        ii, jj, inside = fmap.nearest_node(abw[:, :2])
        w = abw[:, 2]
        scale = view.scale(w)
        zf = fmap.depth[ii, jj]
        lateral = fmap.lateral[ii, jj] * scale
        outside = ~inside | (lateral > tol)
        in_front = w < zf - tol
        on_front = np.abs(w - zf) <= tol
        agree = np.einsum("ij,ij->i", np.tile(rn, (len(offsets[p]), 1)), fmap.normal[ii, jj]) > 0.5
        violation = (outside | in_front).reshape(len(offsets[p]), -1).mean(axis=1)
        support = (~outside & on_front & agree).reshape(len(offsets[p]), -1).mean(axis=1)
        coverage = (~outside & (w > zf + tol)).reshape(len(offsets[p]), -1).mean(axis=1)
        out[p] = np.stack([support, violation, coverage], axis=1)
    return out


def _objective(stats: np.ndarray) -> np.ndarray:
    support, violation, coverage = stats[..., 0], stats[..., 1], stats[..., 2]
    # both matter: support pins the plane (coverage alone is free: any plane far behind the front
    # has it), coverage is what the mirror adds
    return np.minimum(support, coverage) - 10.0 * violation


def detect_symmetry(points: np.ndarray, normals: np.ndarray, fmap: FrontMap, directions: int = 240,
                    offsets: int = 32, sample: int = 400, seed: int = 0) -> SymmetryPlane | None:
    """The best-supported mirror plane of the front, or None when none has strong support."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(points), size=min(sample, len(points)), replace=False)
    P, N = points[pick], normals[pick]
    dirs = fibonacci_hemisphere(directions)
    proj = P @ dirs.T  # (n, D)
    lo, hi = proj.min(axis=0), proj.max(axis=0)
    span = hi - lo
    # planes from the front's near side to half a front-extent behind it
    offs = lo[:, None] + (np.linspace(0.0, 1.0, offsets)[None] * (span + 0.5 * span.max())[:, None])
    stats = score_planes(P, N, fmap, dirs, offs, tol_voxels=8.0)  # coarse grid: coarse tolerance
    score = _objective(stats)
    flat = np.argsort(score.ravel())[::-1][:6]
    best: tuple[float, np.ndarray, float] | None = None
    big = rng.choice(len(points), size=min(4 * sample, len(points)), replace=False)
    P2, N2 = points[big], normals[big]
    angle = np.radians(180.0 / np.sqrt(directions))
    for f in flat:  # local refinement of the best coarse candidates
        p, o = np.unravel_index(f, score.shape)
        n, c = dirs[p], offs[p, o]
        dc = (offs[p, 1] - offs[p, 0])
        for _ in range(4):
            cand_n = _perturb(n, angle, rng)
            cand_c = c + dc * np.linspace(-1.0, 1.0, 9)
            s = score_planes(P2, N2, fmap, cand_n, np.tile(cand_c, (len(cand_n), 1)), tol_voxels=2.0 + 2.0 * angle)
            obj = _objective(s)
            k, m = np.unravel_index(np.argmax(obj), obj.shape)
            n, c = cand_n[k], cand_c[m]
            angle, dc = angle / 2, dc / 2
            result = (float(obj[k, m]), n, float(c))
        if best is None or result[0] > best[0]:
            best = result
        angle = np.radians(180.0 / np.sqrt(directions))
    if best is None:
        return None
    _, n, c = best
    check = rng.choice(len(points), size=min(20000, len(points)), replace=False)
    s = score_planes(points[check], normals[check], fmap, n[None], np.array([[c]]))[0, 0]
    plane = SymmetryPlane(n, c, float(s[0]), float(s[1]), float(s[2]))
    if plane.support >= MIN_SUPPORT and plane.violation <= MAX_VIOLATION and plane.coverage >= MIN_COVERAGE:
        return plane
    return None


def _perturb(n: np.ndarray, angle: float, rng: np.random.Generator, count: int = 12) -> np.ndarray:
    """n plus `count` directions tilted by `angle` around it."""
    helper = np.eye(3)[int(np.argmin(np.abs(n)))]
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    phi = np.linspace(0, 2 * np.pi, count, endpoint=False) + rng.uniform(0, np.pi)
    tilted = np.cos(angle) * n[None] + np.sin(angle) * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v)
    out = np.concatenate([n[None], tilted])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def supported_pieces(points: np.ndarray, normals: np.ndarray, fmap: FrontMap, plane: SymmetryPlane) -> np.ndarray:
    """Bool per point: its mirror image may be used. Not where it lands in another piece of the
    front (a connected part of the silhouette) than its own while its own piece's mirrored points
    do not land on the front with at least MIN_SUPPORT: a piece the plane is no symmetry of would
    be thrown behind another one, where nothing contradicts it."""
    from scipy.ndimage import label

    pieces, count = label(fmap.mask)
    ii, jj, _ = fmap.nearest_node(fmap.view.project(points)[:, :2])
    piece = pieces[ii, jj]
    mi, mj, _ = fmap.nearest_node(fmap.view.project(plane.reflect(points))[:, :2])
    keep = pieces[mi, mj] == piece
    for k in range(1, count + 1):
        mine = np.flatnonzero(piece == k)
        if len(mine) == 0 or keep[mine].all():
            continue
        sub = mine[:: max(1, len(mine) // 4000)]
        support = score_planes(points[sub], normals[sub], fmap, plane.normal[None], np.array([[plane.offset]]))[0, 0, 0]
        keep[mine] |= support >= MIN_SUPPORT
    return keep
