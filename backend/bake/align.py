"""Aligning the views to the surface before view selection (generated videos drift by pixels).

A view set from a video model disagrees with the geometry by a smooth warp of a few pixels per
frame and by a per-frame colour gain/offset. Selecting one sharp view per surface patch then puts
every patch a few pixels off, and seams between views show the colour steps. So, before
selection:

1. estimate the texture from all views (confidence-weighted average of each texel's best views:
   blurry, but the per-frame warps average out, so it sits on the surface),
2. render each view's *expected* image from that estimate, with the view's own observations
   left out, through the view's own UV G-buffer,
3. measure the observed frame's misalignment against it with OpenCV's DIS optical flow (frames
   under FLOW_MIN_SIDE upsampled first, so its patches stay small on 256^2 views), smoothed
   by normalized convolution over the pixels where the estimate has texture (flow in flat regions
   is noise, and the misalignment of a frame is smooth),
4. resample the frame onto the geometry (cv2.remap) and fit a per-frame, per-channel gain and
   offset against the estimate on band-limited colours (TexRecon-like photometric correction),
5. optionally repeat once from an estimate made of the aligned frames (sharper, so a finer flow).

Every later stage (selection, colour sampling, seam levelling) reads the aligned frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..progress import Progress, no_progress
from .colour import ranked_observations
from .fill import gutter_fill
from .uv_raster import Texels
from .visibility import ViewDepth

ESTIMATE_VIEWS = 8  # views averaged per texel into the estimate (the best by confidence)
FLOW_MIN_SIDE = 512  # frames smaller than this are upsampled (integer factor) for the optical flow
SMOOTH_FRACTION = 1 / 48  # flow smoothing sigma as a fraction of the frame's larger side
_MIN_GAIN, _MAX_GAIN = 0.5, 2.0


@dataclass
class ViewAlignment:
    """What alignment did to each view: mean flow (N, 2) px, per-channel gain and offset (N, C)."""

    shift: np.ndarray
    gain: np.ndarray
    offset: np.ndarray


@dataclass
class Estimate:
    """A texture estimate made from every `stride`-th texel of a T x T texture, kept as per-view
    contributions so each view can be compared against the estimate *without itself* (a view
    in its own reference pulls the reference towards its own misalignment, and its neighbours
    would then follow it). Coarse texel (R, C) holds texel (stride R, stride C), so its centre sits
    (stride - 1) / 2 texels of the full texture up and left of the coarse grid's own centre."""

    texture: torch.Tensor  # (T', T', C) float32: the all-view estimate, gutter-filled
    seen: torch.Tensor  # (T', T') bool
    total: torch.Tensor  # (T'^2, C) float32 confidence-weighted colour sums
    weight: torch.Tensor  # (T'^2,) float32 confidence sums
    pair_texel: torch.Tensor  # (P,) flat coarse texel of each (texel, view) observation, grouped by view
    pair_colour: torch.Tensor  # (P, C) confidence x colour
    pair_weight: torch.Tensor  # (P,) confidence
    view_start: np.ndarray  # (N + 1,) observations of view i: view_start[i]:view_start[i + 1]
    stride: int
    size: int  # T

    def grid(self, uv: torch.Tensor) -> torch.Tensor:
        """grid_sample coordinates (align_corners=False) of full-texture UVs (..., 2)."""
        half = (self.stride - 1) / 2 / self.size
        return torch.stack([(uv[..., 0] + half) * 2 - 1, 1 - 2 * (uv[..., 1] - half)], -1)

    def without(self, view: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The estimate (T', T', C) and its seen mask with `view`'s observations left out."""
        sl = slice(int(self.view_start[view]), int(self.view_start[view + 1]))
        idx = self.pair_texel[sl]
        if len(idx) == 0:
            return self.texture, self.seen
        total = self.total[idx] - self.pair_colour[sl]
        weight = self.weight[idx] - self.pair_weight[sl]
        ok = weight > 1e-3
        tex = self.texture.reshape(-1, self.texture.shape[-1]).clone()
        seen = self.seen.reshape(-1).clone()
        tex[idx[ok]] = total[ok] / weight[ok, None]
        seen[idx[~ok]] = False
        return tex.reshape(self.texture.shape), seen.reshape(self.seen.shape)


def estimate_texture(texels: Texels, texel_voxel: np.ndarray, candidates: torch.Tensor, images: torch.Tensor,
                     views: ViewDepth, stride: int = 2) -> Estimate:
    """Confidence-weighted average texture over each texel's best views, from every `stride`-th
    texel row and column (see Estimate)."""
    size = -(-texels.size // stride)
    keep = np.nonzero((texels.rows % stride == 0) & (texels.cols % stride == 0))[0]
    flat = torch.as_tensor((texels.rows[keep] // stride) * size + texels.cols[keep] // stride)
    points = views.local(texels.position[keep])
    normals = torch.as_tensor(texels.normal[keep], dtype=torch.float32)
    cand = candidates[torch.as_tensor(texel_voxel[keep])][:, :ESTIMATE_VIEWS]
    c = images.shape[-1]
    texel_ids, view_ids, colours, confs = [], [], [], []
    for idx, view, conf, colour in ranked_observations(points, normals, cand, images, views):
        texel_ids.append(flat[idx])
        view_ids.append(view)
        confs.append(conf)
        colours.append(conf[:, None] * colour)
    pair_texel = torch.cat(texel_ids) if texel_ids else torch.zeros(0, dtype=torch.long)
    pair_view = torch.cat(view_ids) if view_ids else torch.zeros(0, dtype=torch.long)
    pair_weight = torch.cat(confs) if confs else torch.zeros(0)
    pair_colour = torch.cat(colours) if colours else torch.zeros((0, c))
    order = torch.argsort(pair_view, stable=True)
    pair_texel, pair_view, pair_weight, pair_colour = pair_texel[order], pair_view[order], pair_weight[order], pair_colour[order]
    view_start = np.searchsorted(pair_view.numpy(), np.arange(len(views) + 1))
    total = torch.zeros((size * size, c)).index_add_(0, pair_texel, pair_colour)
    weight = torch.zeros(size * size).index_add_(0, pair_texel, pair_weight)
    filled = (weight > 0).reshape(size, size)
    tex = (total / weight.clamp(min=1e-12)[:, None]).reshape(size, size, c).numpy()
    texture = torch.as_tensor(gutter_fill(tex, filled.numpy()))
    return Estimate(texture, filled, total, weight, pair_texel, pair_colour, pair_weight, view_start, stride,
                    texels.size)


def expected_image(estimate: Estimate, uv: torch.Tensor, leave_out: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The view's image (H, W, C) float32 rendered from the estimate (without view `leave_out`)
    through its UV map (H, W, 2) (NaN = empty), and where it is defined (H, W) bool (covered and
    the estimate seen there)."""
    texture, seen = (estimate.texture, estimate.seen) if leave_out is None else estimate.without(leave_out)
    covered = torch.isfinite(uv).all(-1)
    grid = estimate.grid(torch.nan_to_num(uv, nan=0.0))[None].float()
    planes = torch.cat([texture.permute(2, 0, 1), seen.float()[None]])[None]
    out = torch.nn.functional.grid_sample(planes, grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)[0]
    defined = covered & (out[-1] > 0.99)
    return out[:-1].permute(1, 2, 0).numpy(), defined.numpy()


def _grey(img: np.ndarray) -> np.ndarray:
    import cv2

    g = cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2GRAY) if img.shape[-1] == 3 else img[..., 0]
    return np.round(np.clip(g, 0, 1) * 255).astype(np.uint8)


def view_flow(expected: np.ndarray, observed: np.ndarray, defined: np.ndarray, max_shift: float,
              flow_engine=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Smooth flow (H, W, 2) with expected(x) ~ observed(x + flow(x)), measured where the
    expected image is defined and has texture, extended elsewhere by normalized convolution."""
    import cv2

    h, w = defined.shape
    e = np.where(defined[..., None], expected, observed)  # outside: identical, so no flow is read there
    dis = flow_engine or cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    up = max(1, int(np.ceil(FLOW_MIN_SIDE / max(h, w))))
    if up > 1:  # small frames: DIS's 8 px patches would span too much of the picture, so upsample first
        size = (w * up, h * up)
        big = [cv2.resize(np.ascontiguousarray(a, dtype=np.float32), size, interpolation=cv2.INTER_CUBIC)
               for a in (e, observed)]
        flow = cv2.resize(dis.calc(_grey(big[0]), _grey(big[1]), None), (w, h), interpolation=cv2.INTER_AREA) / up
    else:
        flow = dis.calc(_grey(e), _grey(observed), None)
    # trust: inside the defined region (eroded past the flow's patch size) where there is texture
    inner = cv2.erode(defined.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    ge = _grey(expected).astype(np.float32) / 255
    gx, gy = cv2.Sobel(ge, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(ge, cv2.CV_32F, 0, 1, ksize=3)
    texture = cv2.GaussianBlur(gx * gx + gy * gy, (0, 0), 2.0)
    weight = (texture * inner * (np.abs(flow).max(-1) < max_shift)).astype(np.float32)
    if weight.sum() <= 1e-6:
        return np.zeros((h, w, 2), dtype=np.float32)
    # normalized convolution, at a quarter of the resolution (the result is smooth at that scale)
    sigma = max(h, w) * SMOOTH_FRACTION
    small = (max(1, w // 4), max(1, h // 4))
    planes = cv2.resize(np.dstack([flow * weight[..., None], weight]), small, interpolation=cv2.INTER_AREA)
    planes = cv2.GaussianBlur(planes, (0, 0), sigma * small[0] / w)
    mean = (flow * weight[..., None]).sum((0, 1)) / weight.sum()
    eps = 1e-3 * float(planes[..., 2].max())  # where no texture is near, fall back to the frame's mean flow
    smooth = (planes[..., :2] + eps * mean) / (planes[..., 2:] + eps)
    out = cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, -max_shift, max_shift).astype(np.float32)


def warp(observed: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """observed resampled at x + flow(x) (bilinear, borders replicated)."""
    import cv2

    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(observed, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def colour_correction(observed: np.ndarray, expected: np.ndarray, defined: np.ndarray,
                      sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gain a and offset b with observed ~ a * expected + b, fitted by least squares
    on band-limited colours (both blurred by `sigma` px, so residual misregistration and the
    estimate's softness do not bias it) over the defined pixels, with one pass of outlier trimming."""
    import cv2

    inner = cv2.erode(defined.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    c = observed.shape[-1]
    gain, offset = np.ones(c, np.float32), np.zeros(c, np.float32)
    if inner.sum() < 256:
        return gain, offset
    inner[1::2] = False  # every other pixel of every other row: plenty for 2 x C numbers
    inner[:, 1::2] = False
    o = cv2.GaussianBlur(observed, (0, 0), sigma)[inner]
    e = cv2.GaussianBlur(np.ascontiguousarray(expected), (0, 0), sigma)[inner]
    for ch in range(c):
        x, y = e[:, ch].astype(np.float64), o[:, ch].astype(np.float64)
        keep = np.ones(len(x), dtype=bool)
        for trim in range(2):
            if x[keep].std() < 1e-3:  # flat channel: offset only
                a, b = 1.0, float(np.median(y[keep] - x[keep]))
            else:
                a, b = np.polyfit(x[keep], y[keep], 1)
            if trim == 1:
                break
            r = y - (a * x + b)
            centre = np.median(r[keep])
            mad = np.median(np.abs(r[keep] - centre)) + 1e-6
            trimmed = np.abs(r - centre) < 3 * 1.4826 * mad
            if trimmed.sum() < 64:  # exact fits (flat colours, no noise) have a zero MAD: keep every pixel
                break
            keep = trimmed
        gain[ch] = float(np.clip(a, _MIN_GAIN, _MAX_GAIN))
        offset[ch] = float(b)
    return gain, offset


def align_views(images: torch.Tensor, uv_maps: torch.Tensor, texels: Texels, texel_voxel: np.ndarray,
                candidates: torch.Tensor, views: ViewDepth, passes: int = 2, max_shift: float = 8.0,
                colour: bool = True, progress: Progress = no_progress) -> tuple[torch.Tensor, ViewAlignment]:
    """The views (N, H, W, C) resampled onto the geometry and colour-corrected against an
    estimate of the texture (see the module docstring); each pass starts from the original
    frames, with the estimate made from the previous pass's aligned frames."""
    import cv2

    n = images.shape[0]
    observed = images.numpy()
    current = images
    shift = np.zeros((n, 2), np.float32)
    gain = np.ones((n, images.shape[-1]), np.float32)
    offset = np.zeros((n, images.shape[-1]), np.float32)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for p in range(passes):
        estimate = estimate_texture(texels, texel_voxel, candidates, current, views)
        out = np.empty_like(observed)
        for i in range(n):
            expected, defined = expected_image(estimate, uv_maps[i], leave_out=i)
            defined &= views.valid[i].numpy()
            flow = view_flow(expected, observed[i], defined, max_shift, dis)
            aligned = warp(observed[i], flow)
            if colour:
                gain[i], offset[i] = colour_correction(aligned, expected, defined)
                aligned = (aligned - offset[i]) / gain[i]
            out[i] = aligned
            shift[i] = flow[defined].mean(0) if defined.any() else 0.0
            progress((p + (i + 1) / n) / passes, "aligning views")
        current = torch.as_tensor(out)
    return current, ViewAlignment(shift, gain, offset)
