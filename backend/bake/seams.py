"""Seam levelling (TexRecon-style global colour adjustment) on the voxel graph.

Each labelled voxel gets an additive RGB offset g. At a seam (an edge between voxels i, j with
labels a != b) both sides should agree: for every voxel k of the edge that both views see,
d = c_k^a - c_k^b is how much brighter view a is there, and the term (g_i - g_j + d)^2 asks the
offsets to cancel it. Edges inside one label region ask for smooth offsets, (g_i - g_j)^2, and a
tiny ridge term fixes the free constant. Colours for d are averaged over the voxel's own texels, so
a pixel or two of misregistration between views does not read as a colour difference.

Solved in two levels: one constant offset per connected label region from the median seam
difference of each pair of touching regions (a small exact sparse solve, robust to seam edges
that straddle a misregistered colour edge; it removes view-wide gain/bias differences), then a
few conjugate-gradient steps on the full per-voxel problem with the inlier seam edges, starting
from it, which bends the offsets near seams where one region meets several others. Each seam
edge there asks for its region pair's robust difference (not its own noisy one), and a pair's
difference counts only when it clears a few standard errors of its seam edges' spread; seams
across creases are not measured (blur mixes the two faces by view-dependent amounts).
"""
from __future__ import annotations

import numpy as np
import torch

from ..assets.surface_voxels import VoxelGraph
from .colour import sample_bilinear
from .visibility import ViewDepth, visibility


_OUTLIER = 0.35  # seam colour differences larger than this are occlusions or misregistration
_RIDGE = 1e-4
_MIN_CONF = 0.5  # both views must see a seam sample within 60 deg of its normal (grazing views blur)
_INLIER = 0.05  # seam differences further than this from their region pair's median are outliers
_SMOOTH = 1.0
_SHRINK = 25.0  # seam edges at which a region pair's difference counts half
_CREASE_COS = 0.9  # seam edges whose voxel normals differ by more than ~25 deg are creases
_SIGNIFICANCE = 3.0  # standard errors a region pair's median must clear to move its regions


def seam_differences(graph: VoxelGraph, labels: np.ndarray, images: torch.Tensor, views: ViewDepth,
                     points: torch.Tensor, normals: torch.Tensor, texel_voxel: np.ndarray,
                     per_voxel: int = 16, voxel_colour: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seam edges (S, 2) and their colour differences d (S, C) = view(label i) - view(label j).

    A voxel's colour in a view is the mean over (up to `per_voxel` of) its texels' exact
    projections, i.e. over the same patch of surface in both views (an image-space blur would
    cover more surface in the more oblique view and read texture as a colour difference)."""
    e = graph.edges
    li, lj = labels[e[:, 0]], labels[e[:, 1]]
    # seams across creases are left out: there a view's blur and residual misregistration mix
    # the two faces' colours (often different charts and colours) by different amounts per view,
    # which reads as a consistent colour difference that levelling would spread over whole regions
    flat = (graph.normals[e[:, 0]] * graph.normals[e[:, 1]]).sum(1) > _CREASE_COS
    # and across colour edges: the contrast-sensitive MRF puts its seams there on purpose, and a
    # fraction of a pixel of residual misregistration then gives every edge of the seam the same
    # signed difference, significant but not a difference between the views' colours. Measured
    # only where the two voxels' colours differ by less than the graph's mean contrast.
    if voxel_colour is not None and len(e):
        contrast = np.linalg.norm(voxel_colour[e[:, 0]] - voxel_colour[e[:, 1]], axis=1)
        flat &= contrast <= contrast.mean()
    seam = (li >= 0) & (lj >= 0) & (li != lj) & flat
    e, li, lj = e[seam], li[seam], lj[seam]
    if len(e) == 0:
        return e, np.zeros((0, images.shape[-1]), dtype=np.float32)
    # requests: (voxel, view) for both ends of every seam edge in both labels
    req_vox = np.concatenate([e[:, 0], e[:, 0], e[:, 1], e[:, 1]])
    req_view = np.concatenate([li, lj, li, lj])
    order = np.argsort(texel_voxel, kind="stable")
    first = np.searchsorted(texel_voxel[order], np.arange(len(graph)))
    total = np.bincount(texel_voxel, minlength=len(graph))
    count = np.minimum(total, per_voxel)
    n = count[req_vox]
    req = np.repeat(np.arange(len(req_vox)), n)
    k = np.arange(len(req)) - np.repeat(np.cumsum(n) - n, n)
    # spread over all of the voxel's texels (not its first few rows): the mean is then a box
    # filter of the voxel's size on the surface, the same patch in both views, so fine texture
    # that each view blurs and aliases differently averages out of the difference
    offset = (k * total[req_vox[req]]) // np.maximum(n[req], 1)
    texel = order[first[req_vox[req]] + offset]
    view = torch.as_tensor(req_view[req])
    conf, px, py = visibility(points[texel], normals[texel], views, view)
    ok = (conf > _MIN_CONF).numpy()
    colour = sample_bilinear(images, view[ok], px[ok], py[ok]).numpy()
    hits = np.bincount(req[ok], minlength=len(req_vox)).astype(np.float64)
    # float even when no request is visible (np.bincount of nothing is int, whatever the weights)
    mean = np.stack([np.bincount(req[ok], colour[:, c], minlength=len(req_vox)) for c in range(colour.shape[1])],
                    1).astype(np.float64)
    mean /= np.maximum(hits, 1)[:, None]
    seen = hits >= max(1, per_voxel // 4)
    s = len(e)
    a_i, b_i, a_j, b_j = (mean[k * s:(k + 1) * s] for k in range(4))
    ok_i, ok_j = seen[:s] & seen[s:2 * s], seen[2 * s:3 * s] & seen[3 * s:]
    total = np.where(ok_i[:, None], a_i - b_i, 0) + np.where(ok_j[:, None], a_j - b_j, 0)
    both = ok_i.astype(np.float64) + ok_j
    d = total / np.maximum(both, 1)[:, None]
    keep = (both > 0) & (np.linalg.norm(d, axis=1) < _OUTLIER)
    return e[keep], d[keep].astype(np.float32)


def level_offsets(graph: VoxelGraph, labels: np.ndarray, seam_edges: np.ndarray, seam_diff: np.ndarray,
                  cg_iterations: int = 25) -> np.ndarray:
    """Per-voxel additive offsets (V, C) float32 (0 for unlabelled voxels)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import cg, spsolve

    n, c = len(graph), seam_diff.shape[1] if len(seam_diff) else 3
    offsets = np.zeros((n, c), dtype=np.float64)
    if len(seam_edges) == 0:
        return offsets.astype(np.float32)
    e = graph.edges
    same = e[(labels[e[:, 0]] == labels[e[:, 1]]) & (labels[e[:, 0]] >= 0)]
    # level 1: one offset per connected region of one label
    region_graph = sp.csr_matrix((np.ones(len(same)), (same[:, 0], same[:, 1])), shape=(n, n))
    _, region = connected_components(region_graph, directed=False)
    ri, rj = region[seam_edges[:, 0]], region[seam_edges[:, 1]]
    flip = ri > rj  # orient every seam edge from the lower region id to the higher
    ri, rj = np.where(flip, rj, ri), np.where(flip, ri, rj)
    d = np.where(flip[:, None], -seam_diff, seam_diff)
    # one robust difference per pair of regions: the median over their seam edges, so edges that
    # straddle a colour edge misregistered by a pixel or two do not bias the region offsets
    pair_key = ri.astype(np.int64) * (region.max() + 1) + rj
    order = np.argsort(pair_key, kind="stable")
    keys, starts, counts = np.unique(pair_key[order], return_index=True, return_counts=True)
    medians = np.stack([np.median(d[order[a:a + c]], axis=0) for a, c in zip(starts, counts)])
    # shrink the differences of pairs that touch along few seam edges (noise from aliasing and
    # misregistration), so only well-supported differences move whole regions
    raw_medians = medians.copy()
    medians *= (counts / (counts + _SHRINK))[:, None]
    # and keep only what is significant: a pair's median that is within a few standard errors of
    # zero (robust spread of its seam edges / sqrt(n)) is texture seen differently by two views
    # (blur, aliasing of fine lines, grazing angles), not a colour difference between the views
    # (a pair's spread is at least the pooled spread of all seam edges about their pairs' medians,
    # so pairs touching along a handful of edges are not judged by their own tiny sample)
    deviation = np.abs(d[order] - np.repeat(raw_medians, counts, axis=0))
    pooled = np.median(deviation, axis=0)
    spread = np.stack([np.median(deviation[a:a + c], axis=0) for a, c in zip(starts, counts)])
    stderr = 1.4826 * np.maximum(spread, pooled) / np.sqrt(counts)[:, None]
    significant = np.clip(1 - (_SIGNIFICANCE * stderr / np.maximum(np.abs(raw_medians), 1e-9)) ** 2, 0, 1)
    medians *= significant
    pi, pj = ri[order[starts]], rj[order[starts]]
    used, local = np.unique(np.r_[pi, pj], return_inverse=True)
    li, lj = local[: len(pi)], local[len(pi):]
    size = np.bincount(region, minlength=region.max() + 1)[used].astype(np.float64)
    lap = _laplacian(li, lj, counts.astype(np.float64), len(used)) + sp.diags(_RIDGE * size)
    rhs = _divergence(li, lj, medians * counts[:, None], len(used))
    region_offsets = np.stack([spsolve(lap.tocsc(), rhs[:, ch]) for ch in range(c)], 1)
    lookup = np.full(region.max() + 1, -1)
    lookup[used] = np.arange(len(used))
    has = lookup[region] >= 0
    offsets[has] = region_offsets[lookup[region[has]]]
    # seam edges that disagree with their pair's median by more than _INLIER are left out below
    pair_median = np.empty_like(d)
    pair_median[order] = np.repeat(raw_medians, counts, axis=0)
    inlier = (np.abs(d - pair_median) < _INLIER).all(1)
    # level 2 asks each seam edge for its pair's robust (shrunk, significance-gated) difference,
    # not its own: one edge's difference is mostly noise, and fitting it bends offsets into noise
    pair_level = np.empty_like(d)
    pair_level[order] = np.repeat(raw_medians * significant, counts, axis=0)
    pair_level = np.where(flip[:, None], -pair_level, pair_level)  # back to the edges' own orientation
    seam_edges, seam_diff = seam_edges[inlier], pair_level[inlier]
    # level 2: per-voxel refinement (smooth inside regions, seams made to agree)
    if cg_iterations > 0:
        lap = (_laplacian(seam_edges[:, 0], seam_edges[:, 1], np.ones(len(seam_edges)), n)
               + _SMOOTH * _laplacian(same[:, 0], same[:, 1], np.ones(len(same)), n)
               + sp.identity(n) * _RIDGE).tocsr()
        rhs = _divergence(seam_edges[:, 0], seam_edges[:, 1], seam_diff, n)
        precond = sp.diags(1.0 / lap.diagonal())
        for ch in range(c):
            offsets[:, ch], _ = cg(lap, rhs[:, ch], x0=offsets[:, ch], maxiter=cg_iterations, M=precond, rtol=1e-6)
    offsets[labels < 0] = 0
    return offsets.astype(np.float32)


def _laplacian(i: np.ndarray, j: np.ndarray, w: np.ndarray, n: int):  # type: ignore[no-untyped-def]
    """Graph Laplacian sum_e w_e (x_i - x_j)^2 as a sparse matrix."""
    import scipy.sparse as sp

    rows, cols = np.r_[i, j, i, j], np.r_[i, j, j, i]
    data = np.r_[w, w, -w, -w]
    return sp.csr_matrix((data, (rows, cols)), shape=(n, n))


def _divergence(i: np.ndarray, j: np.ndarray, d: np.ndarray, n: int) -> np.ndarray:
    """Right-hand side of min sum (x_i - x_j + d)^2: -sum d (e_i - e_j)."""
    rhs = np.zeros((n, d.shape[1]))
    np.add.at(rhs, i, -d)
    np.add.at(rhs, j, d)
    return rhs


def blend_strips(graph: VoxelGraph, labels: np.ndarray, offsets: np.ndarray, colour: np.ndarray, chosen: np.ndarray,
                 texel_voxel: np.ndarray, positions: np.ndarray, images: torch.Tensor, views: ViewDepth,
                 points: torch.Tensor, normals: torch.Tensor) -> int:
    """Local blending along seam strips (after the global levelling; TexRecon's local step,
    simplified to a feather): a texel of a voxel on a seam mixes in the view across the seam
    (with that side's offset), by weight 0.5 at the face the two voxels share, falling linearly
    to 0 one voxel in, so the colour crosses the seam continuously. Edits `colour` (T, C) in
    place; returns how many texels it changed."""
    e = graph.edges
    step = graph.cells[e[:, 1]] - graph.cells[e[:, 0]]
    seam = (labels[e[:, 0]] >= 0) & (labels[e[:, 1]] >= 0) & (labels[e[:, 0]] != labels[e[:, 1]])
    seam &= np.abs(step).sum(1) == 1  # face neighbours: the seam is the face between their cells
    e, step = e[seam], step[seam]
    partner = np.full(len(graph), -1, dtype=np.int64)
    axis = np.zeros((len(graph), 3), dtype=np.float64)
    partner[e[:, 0]], axis[e[:, 0]] = e[:, 1], step
    partner[e[:, 1]], axis[e[:, 1]] = e[:, 0], -step
    t = np.nonzero((partner[texel_voxel] >= 0) & (chosen == labels[texel_voxel]))[0]
    if len(t) == 0:
        return 0
    a = texel_voxel[t]
    b = partner[a]
    mid = (graph.centres[a].astype(np.float64) + graph.centres[b]) / 2
    d = ((positions[t] - mid) * axis[a]).sum(1)  # <= 0 on the texel's own side of the seam
    w = 0.5 * np.clip(1 + d / graph.voxel_size, 0.0, 1.0)
    keep = w > 0
    t, b, w = t[keep], b[keep], w[keep]
    tt = torch.as_tensor(t)
    view = torch.as_tensor(labels[b])
    conf, px, py = visibility(points[tt], normals[tt], views, view)
    ok = (conf > 0).numpy()
    other = sample_bilinear(images, view[ok], px[ok], py[ok]).numpy() + offsets[b[ok]]
    t, w = t[ok], w[ok, None].astype(np.float32)
    colour[t] = (1 - w) * colour[t] + w * other
    return len(t)
