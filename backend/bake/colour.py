"""Reading colours from the views: bilinear samples at exact projections, per texel."""
from __future__ import annotations

from typing import Iterator

import torch

from .visibility import ViewDepth, visibility


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Views (N, H, W, C) blurred by a Gaussian of `sigma` px (OpenCV), float32."""
    import cv2
    import numpy as np

    out = np.empty(tuple(images.shape), dtype=np.float32)
    for i, im in enumerate(images.numpy()):
        out[i] = cv2.GaussianBlur(np.ascontiguousarray(im, dtype=np.float32), (0, 0), sigma).reshape(im.shape)
    return torch.from_numpy(out)


def sharpen(images: torch.Tensor, amount: float, sigma: float = 1.0) -> torch.Tensor:
    """Unsharp-masked views (N, H, W, C): I + amount (I - blur_sigma(I)).

    A texel read from a view carries that view's pixel integration (a 1 px box) and the
    bilinear lookup (a 1 px tent), about a 0.5 px Gaussian of blur in the view on top of the
    texture's own detail (and a video model's frames add their own blur); rendering the texture
    in another view integrates over that view's pixels again. A mild unsharp mask undoes most
    of the first blur (for small frequencies, 1 + amount (1 - exp(-sigma^2 w^2 / 2)) against
    exp(-0.125 w^2))."""
    if amount <= 0:
        return images
    return images + amount * (images - blur(images, sigma))


def sample_bilinear(images: torch.Tensor, view: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Colours (M, C) of images (N, H, W, C) at pixel coordinates (px, py) of views `view` (M,)
    (pixel centres at +0.5; clamped at the image border)."""
    n, h, w, c = images.shape
    x = (px - 0.5).clamp(0, w - 1).float()
    y = (py - 0.5).clamp(0, h - 1).float()
    x0, y0 = x.floor().long().clamp(max=w - 2 if w > 1 else 0), y.floor().long().clamp(max=h - 2 if h > 1 else 0)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    flat = images.reshape(-1, c)
    base = view.long() * (h * w) + y0 * w + x0
    x1 = 1 if w > 1 else 0
    y1 = w if h > 1 else 0
    top = flat[base] * (1 - fx) + flat[base + x1] * fx
    bottom = flat[base + y1] * (1 - fx) + flat[base + y1 + x1] * fx
    return top * (1 - fy) + bottom * fy


def sample_nearest(images: torch.Tensor, view: int, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Colours (M, C) of the pixels under (px, py) in one view."""
    h, w = images.shape[1:3]
    ix, iy = px.long().clamp(0, w - 1), py.long().clamp(0, h - 1)
    return images[view].reshape(-1, images.shape[-1])[iy * w + ix]


AGREEMENT_SCALE = 0.3  # soft selection: a view whose colour is this far (mean |difference|) from the reference's weighs 1/e as much


def texel_colours(points: torch.Tensor, normals: torch.Tensor, candidates: torch.Tensor, images: torch.Tensor,
                  views: ViewDepth, extra_cost: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Colour (M, 3), chosen view (M,) and its cost (M,) of each texel from its ranked candidate
    views (M, K) (-1 = none): the first candidate that sees the texel itself is chosen (a voxel's
    label can be occluded at a few of its texels near silhouettes). Texels no candidate sees get
    view -1. Cost: 2 - confidence at the texel + `extra_cost` (M, K), the selection's other unary terms."""
    m = len(points)
    colour = torch.zeros((m, images.shape[-1]), dtype=torch.float32)
    chosen = torch.full((m,), -1, dtype=torch.long)
    cost = torch.zeros(m, dtype=torch.float32)
    todo = torch.arange(m)
    for rank in range(candidates.shape[1]):
        view = candidates[todo, rank]
        has = view >= 0
        todo, view = todo[has], view[has]
        if len(todo) == 0:
            break
        conf, px, py = visibility(points[todo], normals[todo], views, view)
        ok = conf > 0
        done = todo[ok]
        colour[done] = sample_bilinear(images, view[ok], px[ok], py[ok])
        chosen[done] = view[ok]
        cost[done] = 2 - conf[ok] + (0 if extra_cost is None else extra_cost[done, rank])
        todo = todo[~ok]
    return colour, chosen, cost


def blend_views(points: torch.Tensor, normals: torch.Tensor, candidates: torch.Tensor, extra_cost: torch.Tensor,
                images: torch.Tensor, views: ViewDepth, colour: torch.Tensor, chosen: torch.Tensor,
                cost: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft selection: each texel's colour (M, 3) as a weighted mean of its chosen view's (`texel_colours`,
    weight 1) and the candidates (M, K) that see it: weight exp(-max(0, cost - chosen's cost) / temperature)
    x exp(-(mean |colour - chosen's colour| / AGREEMENT_SCALE)^2), costs as `texel_colours`'. Views about
    as good as the chosen one average out the aliasing and residual misregistration of any single
    small frame; worse views, and views that disagree outright, hardly count (bench/RESULTS.md, 2026-12-04)."""
    total = colour.clone()
    weight = (chosen >= 0).float()
    for rank in range(candidates.shape[1]):
        view = candidates[:, rank]
        idx = torch.nonzero((view >= 0) & (view != chosen)).squeeze(1)
        if len(idx) == 0:
            continue
        view = view[idx]
        conf, px, py = visibility(points[idx], normals[idx], views, view)
        w = torch.exp(-(2 - conf + extra_cost[idx, rank] - cost[idx]).clamp(min=0) / temperature)
        keep = (conf > 0) & (w > 1e-3)
        idx, view, w = idx[keep], view[keep], w[keep]
        c = sample_bilinear(images, view, px[keep], py[keep])
        w = w * torch.exp(-((c - colour[idx]).abs().mean(1) / AGREEMENT_SCALE) ** 2)
        total.index_add_(0, idx, w[:, None] * c)
        weight.index_add_(0, idx, w)
    return torch.where(chosen[:, None] >= 0, total / weight.clamp(min=1e-12)[:, None], colour)


def ranked_observations(points: torch.Tensor, normals: torch.Tensor, candidates: torch.Tensor, images: torch.Tensor,
                        views: ViewDepth) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per candidate rank (columns of (M, K), -1 = none): the points whose candidate of that rank
    sees them, as (point index, view, confidence, colour sampled bilinearly at the projection)."""
    for rank in range(candidates.shape[1]):
        view = candidates[:, rank]
        idx = torch.nonzero(view >= 0).squeeze(1)
        if len(idx) == 0:  # a rank can be empty with later ones not (a label taken out of its candidates)
            continue
        view = view[idx]
        conf, px, py = visibility(points[idx], normals[idx], views, view)
        ok = conf > 0
        view = view[ok]
        yield idx[ok], view, conf[ok], sample_bilinear(images, view, px[ok], py[ok])


def texel_average(points: torch.Tensor, normals: torch.Tensor, candidates: torch.Tensor,
                  images: torch.Tensor, views: ViewDepth) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence-weighted average colour (M, 3) over the candidate views (M, K) that see each
    texel, and the total weight (M,) (0 = unseen)."""
    m = len(points)
    total = torch.zeros((m, images.shape[-1]), dtype=torch.float32)
    weight = torch.zeros(m, dtype=torch.float32)
    for idx, _, conf, colour in ranked_observations(points, normals, candidates, images, views):
        total[idx] += conf[:, None] * colour
        weight[idx] += conf
    return total / weight.clamp(min=1e-12)[:, None], weight
