"""View selection per voxel: observations, top-K candidates, frame detail, unary costs, greedy and MRF labels."""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..assets.surface_voxels import VoxelGraph
from ..progress import Progress, no_progress
from .colour import sample_nearest
from .visibility import ViewDepth, visibility

if TYPE_CHECKING:
    from .params import BakeParams

UNSEEN_COST = 10.0  # unary of a view outside a voxel's top-K (Ink3D)
LOCKED_COST = 100.0  # unary of every other view at a voxel locked to the reference view


def voxel_observations(graph: VoxelGraph, views: ViewDepth, images: torch.Tensor,
                       progress: Progress = no_progress) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence (V, N) float32 of every voxel in every view (0 = unseen) and each voxel's
    confidence-weighted mean colour (V, 3) over the views that see it (for the Potts contrast)."""
    centres = views.local(graph.centres)
    normals = torch.as_tensor(graph.normals, dtype=torch.float32)
    n = len(views)
    conf = torch.zeros((len(graph), n), dtype=torch.float32)
    colour = torch.zeros((len(graph), images.shape[-1]), dtype=torch.float32)
    for v in range(n):
        c, px, py = visibility(centres, normals, views, v)
        idx = torch.nonzero(c > 0).squeeze(1)
        conf[idx, v] = c[idx]
        colour[idx] += c[idx, None] * sample_nearest(images, v, px[idx], py[idx])
        progress((v + 1) / n, "visibility")
    colour /= conf.sum(1, keepdim=True).clamp(min=1e-12)
    return conf, colour


def consistency_costs(graph: VoxelGraph, views: ViewDepth, images: torch.Tensor, conf: torch.Tensor,
                      candidates: torch.Tensor, scale: float = 0.1, blur_px: float = 1.0) -> torch.Tensor:
    """How far each candidate view's colour of each voxel (V, K) falls from the voxel's robust
    consensus over its candidates, as min(L1 / 3 / scale, 1) (0 = agrees; -1 ranks get 0).

    The consensus is a confidence-weighted mean, re-weighted once by agreement (views far from
    the first mean count less), so one misplaced frame does not drag it. Colours are read from
    the images blurred by `blur_px`, so the term sees misregistration and colour drift of a frame,
    not sub-pixel sampling of fine print. Beyond Ink3D: a frame that a generator warped or
    recoloured at this voxel costs more there (per voxel and view, not per frame)."""
    import cv2

    centres = views.local(graph.centres)
    normals = torch.as_tensor(graph.normals, dtype=torch.float32)
    soft = torch.stack([torch.from_numpy(cv2.GaussianBlur(np.ascontiguousarray(im.numpy()), (0, 0), blur_px))
                        for im in images]) if blur_px > 0 else images
    v_count, k = candidates.shape
    colours = torch.zeros((v_count, k, images.shape[-1]), dtype=torch.float32)
    for rank in range(k):
        cand = candidates[:, rank]
        for view in torch.unique(cand[cand >= 0]).tolist():
            idx = torch.nonzero(cand == view).squeeze(1)
            _, px, py = visibility(centres[idx], normals[idx], views, view)
            colours[idx, rank] = sample_nearest(soft, view, px, py)
    weight = torch.where(candidates >= 0, conf.gather(1, candidates.clamp(min=0)), torch.zeros(()))
    mean = (weight[..., None] * colours).sum(1) / weight.sum(1, keepdim=True).clamp(min=1e-12)
    dev = (colours - mean[:, None]).abs().mean(-1)
    robust = weight * torch.exp(-(dev / scale) ** 2)
    mean = (robust[..., None] * colours).sum(1) / robust.sum(1, keepdim=True).clamp(min=1e-12)
    dev = ((colours - mean[:, None]).abs().mean(-1) / scale).clamp(max=1.0)
    return torch.where(candidates >= 0, dev, torch.zeros_like(dev))


def resolution_costs(graph: VoxelGraph, views: ViewDepth, candidates: torch.Tensor) -> torch.Tensor:
    """How much coarser each candidate view samples each voxel (V, K) than the voxel's finest
    candidate: 1 - footprint / finest footprint, footprint = focal / depth (pixels per unit of
    surface facing the camera; the tilt is the confidence's part). 0 for -1 ranks. Beyond Ink3D,
    whose confidence is the angle alone: with cameras at different distances (a hand-held
    capture, close-ups), a close view resolves a patch better than a far one at the same angle."""
    from .visibility import project

    centres = views.local(graph.centres)
    footprint = torch.zeros(candidates.shape, dtype=torch.float32)
    for rank in range(candidates.shape[1]):
        cand = candidates[:, rank]
        idx = torch.nonzero(cand >= 0).squeeze(1)
        _, _, z = project(centres[idx], views, cand[idx])
        footprint[idx, rank] = views.intrinsics[cand[idx], 0] / z.clamp(min=1e-9)
    finest = footprint.amax(1, keepdim=True).clamp(min=1e-12)
    return torch.where(candidates >= 0, 1 - footprint / finest, torch.zeros_like(footprint))


def top_k(conf: torch.Tensor, k: int) -> torch.Tensor:
    """Candidate views (V, K) by decreasing confidence, -1 past the views that see the voxel."""
    k = min(k, conf.shape[1])
    values, idx = torch.topk(conf, k, dim=1)
    return torch.where(values > 0, idx, torch.full_like(idx, -1))


def frame_detail(images: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    """log of each frame's fine-detail energy over its next band (N,) float64, on the pixels that
    show the mesh (eroded past silhouettes); NaN where a frame shows too little or no texture.

    Bands: grey - blur(1 px) over blur(1 px) - blur(2 px). Blurring a frame takes energy from the
    first band faster than from the second, so among frames that show the same surface (the
    views that compete for a voxel) a lower value means a blurrier frame; video models blur
    some frames more than others. Beyond Ink3D; see `detail_costs`."""
    import cv2

    n = images.shape[0]
    out = np.full(n, np.nan)
    kernel = np.ones((7, 7), np.uint8)
    for i in range(n):
        img = images[i].numpy().astype(np.float32)
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.shape[-1] == 3 else img.mean(-1)
        inner = cv2.erode(valid[i].numpy().astype(np.uint8), kernel).astype(bool)
        if inner.sum() < 256:
            continue
        b1, b2 = cv2.GaussianBlur(grey, (0, 0), 1.0), cv2.GaussianBlur(grey, (0, 0), 2.0)
        fine = float(((grey - b1)[inner] ** 2).mean())
        mid = float(((b1 - b2)[inner] ** 2).mean())
        if mid > 1e-7:  # below: a flat frame, whose ratio would be noise
            out[i] = math.log(max(fine, 1e-12) / mid)
    return out


def detail_costs(detail: np.ndarray, weight: float) -> np.ndarray:
    """Per-view unary addition (N,) >= 0: weight x how far the frame's detail falls below the
    sharpest frame's (frames without a value get the median's cost)."""
    if not np.isfinite(detail).any() or weight == 0:
        return np.zeros(len(detail))
    d = np.where(np.isfinite(detail), detail, np.nanmedian(detail))
    return weight * (d.max() - d)


def candidate_extra_costs(candidates: torch.Tensor, view_cost: np.ndarray | None,
                          site_cost: np.ndarray | None) -> np.ndarray:
    """The unary terms (V, K) float64 past Ink3D's 2 - confidence of each voxel's candidates (0 at
    -1 ranks): `view_cost` (N,) of the candidate's view (frame detail) plus `site_cost` (V, K) of
    the voxel and candidate (resolution, consistency). The selection's unary and the soft
    selection's weights both use them."""
    extra = np.zeros(candidates.shape, dtype=np.float64)
    has = candidates.numpy() >= 0
    if view_cost is not None:
        extra[has] += view_cost[candidates.numpy()[has]]
    if site_cost is not None:
        extra[has] += site_cost[has]
    return extra


def unary_costs(conf: torch.Tensor, candidates: torch.Tensor, view_cost: np.ndarray | None = None,
                site_cost: np.ndarray | None = None) -> np.ndarray:
    """Ink3D's unary (V, N) float64: 2 - confidence for the top-K views, 10 for the others, plus
    the top-K views' `candidate_extra_costs`."""
    unary = np.full(conf.shape, UNSEEN_COST, dtype=np.float64)
    rows, ranks = np.nonzero(candidates.numpy() >= 0)
    views = candidates.numpy()[rows, ranks]
    unary[rows, views] = 2.0 - conf.numpy()[rows, views]
    if view_cost is not None or site_cost is not None:
        unary[rows, views] += candidate_extra_costs(candidates, view_cost, site_cost)[rows, ranks]
    return unary


def locked_voxels(conf: torch.Tensor, reference: int, angle_deg: float) -> torch.Tensor:
    """Voxels (V,) bool the reference view sees within `angle_deg` (Ink3D's locking)."""
    return conf[:, reference] >= math.cos(math.radians(angle_deg))


def lock_to_reference(unary: np.ndarray, conf: torch.Tensor, reference: int, angle_deg: float) -> np.ndarray:
    """Voxels the reference view sees within `angle_deg` keep that view (`locked_voxels`)."""
    locked = locked_voxels(conf, reference, angle_deg).numpy()
    unary[locked] = LOCKED_COST
    unary[locked, reference] = 0.0
    return locked


def greedy_labels(unary: np.ndarray) -> np.ndarray:
    return unary.argmin(1).astype(np.int64)


def potts_weights(edges: np.ndarray, colour: np.ndarray, lam: float) -> np.ndarray:
    """Contrast-sensitive Potts weights lambda / (1 + beta |c_i - c_j|), beta = 1 / (2 mean |c_i - c_j|)."""
    diff = np.linalg.norm(colour[edges[:, 0]] - colour[edges[:, 1]], axis=1)
    mean = float(diff.mean()) if len(diff) else 0.0
    beta = 1.0 / (2.0 * mean) if mean > 1e-12 else 0.0
    return lam / (1.0 + beta * diff)


def mrf_energy(unary: np.ndarray, edges: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> float:
    data = unary[np.arange(len(labels)), labels].sum()
    return float(data + weights[labels[edges[:, 0]] != labels[edges[:, 1]]].sum())


def mrf_labels(unary: np.ndarray, edges: np.ndarray, weights: np.ndarray, init: np.ndarray,
               iterations: int = 1) -> np.ndarray:
    """Alpha-expansion (gco-wrapper) from `init` over the labels that some site can use.

    Costs are floats with down_weight_factor=1: gco then scales unary by 1e5 and edge weight x
    Potts cost by 1e3 x 1e2 into int32 terms, keeping 5 decimals without rescaling our energy.
    """
    import gco  # imported here: it patches numpy aliases on import

    usable = np.nonzero((unary < UNSEEN_COST).any(0))[0]
    if len(usable) <= 1 or len(edges) == 0:
        return init.copy()
    remap = np.full(unary.shape[1], -1, dtype=np.int64)
    remap[usable] = np.arange(len(usable))
    compact = np.ascontiguousarray(unary[:, usable])
    start = remap[init]
    start[start < 0] = compact[start < 0].argmin(1)
    pairwise = 1.0 - np.eye(len(usable))
    labels = gco.cut_general_graph(edges.astype(np.int32), weights.astype(np.float64), compact, pairwise,
                                   n_iter=iterations, algorithm="expansion",
                                   init_labels=start.astype(np.int32), down_weight_factor=1)
    return usable[np.asarray(labels, dtype=np.int64)]


def select_labels(graph: VoxelGraph, conf: torch.Tensor, vcolour: torch.Tensor, candidates: torch.Tensor,
                  view_cost: np.ndarray | None, params: "BakeParams",
                  site_cost: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Labels (V,) of the `mrf` or `greedy` method (-1 at unseen voxels) and what to report.

    Reads no image: it runs beside the view alignment (baker.py), gco releasing the GIL."""
    start = time.perf_counter()
    info: dict = {}
    labels = np.full(len(graph), -1, dtype=np.int64)
    sites = np.nonzero((candidates[:, 0] >= 0).numpy())[0]
    unary = unary_costs(conf[sites], candidates[sites], view_cost, None if site_cost is None else site_cost[sites])
    if params.lock_reference:
        info["locked_voxels"] = int(lock_to_reference(unary, conf[sites], params.reference_view,
                                                      params.lock_angle).sum())
    greedy = greedy_labels(unary)
    labels[sites] = greedy
    if params.method == "mrf":
        site_of = np.full(len(graph), -1, dtype=np.int64)
        site_of[sites] = np.arange(len(sites))
        e = site_of[graph.edges]
        e = e[(e >= 0).all(1)]
        weights = potts_weights(e, vcolour.numpy()[sites], params.mrf_lambda)
        mrf = mrf_labels(unary, e, weights, greedy, params.mrf_iterations)
        info["mrf_energy"] = {"greedy": round(mrf_energy(unary, e, weights, greedy), 3),
                              "mrf": round(mrf_energy(unary, e, weights, mrf), 3)}
        # edges between voxels of different views: where seams can show
        info["label_seam_edges"] = {"greedy": int((greedy[e[:, 0]] != greedy[e[:, 1]]).sum()),
                                    "mrf": int((mrf[e[:, 0]] != mrf[e[:, 1]]).sum()), "edges": int(len(e))}
        labels[sites] = mrf
    info["view_selection_seconds"] = round(time.perf_counter() - start, 3)
    return labels, info
