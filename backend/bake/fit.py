"""Texture fit: a baked texture refined so that its renders match the (aligned) views.

Reading colours from the views, however well chosen, caps a texel at what one 256² frame holds:
each pixel is the integral of the texture over its footprint, blurred by the frame's optics and
shifted by what alignment left. This stage inverts that forward model, per view:

    view ≈ blur_σᵢ( warp_dᵢ( box_s( texture sampled at the view's s×s-supersampled UVs ) ) )

with the texture, each frame's Gaussian blur σᵢ and each frame's smooth residual displacement dᵢ
(a 4×4 control grid, bicubic, in pixels) fitted jointly by Adam on a Charbonnier loss at the
frame's valid pixels, two frames per step. Many frames with different footprints and sampling
phases then constrain the texture past one frame's resolution (multi-frame super-resolution); the
blur keeps soft frames from blurring it and the displacement keeps residual misregistration from
smearing edges. What is fitted is a correction of the bake's colours (texels no valid pixel sees
keep them, but for the one-texel reach of its bilinear upsampling), at half the texture's
resolution when a pixel spans two texels or more: single-texel detail is then beyond every view,
and a full-resolution correction fills it with grain that no render at the views' size shows but
a close-up does (flat colours). Torch only; CUDA when present.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..assets.cameras import Camera
from ..assets.mesh import Mesh
from ..progress import Progress, no_progress
from .visibility import rasterize_views

_FRAMES_PER_STEP = 2
_MAX_SUPERSAMPLE = 4
_SAMPLE_BUDGET = 48 << 20  # subsamples kept for all frames at most (12 bytes each: UV grid + hit)
_WARP_GRID = 4  # control points per side of a frame's residual displacement
_LR_TEXTURE, _LR_BLUR, _LR_WARP = 0.01, 0.05, 0.02
_LR_END = 0.05  # cosine decay to this fraction: a constant rate leaves the texels jittering by about it
_BLUR_START = 0.5  # px, each frame's blur before the fit
_BLUR_RADIUS = 3  # px, the Gaussian kernel's half width
_CHARBONNIER = 1e-3


@dataclass
class FitResult:
    texture: np.ndarray  # (T, T, C) float32 in [0, 1]
    report: dict


@dataclass
class _Frame:
    index: int
    grid: torch.Tensor  # (1, s·h, s·w, 2) grid_sample coordinates of the crop's subsamples
    hit: torch.Tensor  # (1, 1, s·h, s·w) float: subsample on the mesh
    observed: torch.Tensor  # (1, C, h, w) the view's crop
    valid: torch.Tensor  # (h, w) bool: pixels compared


def supersample_factor(texture_size: int, view_size: int, crop_pixels: int) -> int:
    """Subsamples per pixel side: about one per texel along the frame (at most 4), fewer when all
    frames' supersampled crops would exceed the memory budget."""
    s = int(np.clip(round(texture_size / max(view_size, 1)), 1, _MAX_SUPERSAMPLE))
    while s > 1 and crop_pixels * s * s > _SAMPLE_BUDGET:
        s -= 1
    return s


def _crops(valid: torch.Tensor) -> list[tuple[int, int, int, int, int] | None]:
    """Per frame: (index, y0, y1, x0, x1) of its valid pixels' box, padded for the blur; None if none."""
    h, w = valid.shape[1:]
    pad = _BLUR_RADIUS + 1
    out: list[tuple[int, int, int, int, int] | None] = []
    for i in range(len(valid)):
        ys, xs = torch.nonzero(valid[i], as_tuple=True)
        out.append(None if len(ys) == 0 else (i, max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, h),
                                              max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, w)))
    return out


def _frames(mesh: Mesh, cameras: Sequence[Camera], images: torch.Tensor, valid: torch.Tensor,
            crops: list[tuple[int, int, int, int, int]], s: int, rasterizer: str, device: torch.device) -> list[_Frame]:
    frames = []
    for i, y0, y1, x0, x1 in crops:
        cam = cameras[i]
        _, uv = rasterize_views(mesh, [cam.resized(cam.width * s, cam.height * s)], rasterizer, uv=True)
        uv = uv[0, y0 * s:y1 * s, x0 * s:x1 * s]  # type: ignore[index]
        hit = torch.isfinite(uv).all(-1)
        grid = torch.stack([uv[..., 0] * 2 - 1, 1 - 2 * uv[..., 1]], -1).nan_to_num(0.0).float()
        frames.append(_Frame(i, grid[None].to(device), hit.float()[None, None].to(device),
                             images[i, y0:y1, x0:x1].permute(2, 0, 1)[None].float().to(device),
                             valid[i, y0:y1, x0:x1].to(device)))
    return frames


def _gaussian(image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    x = torch.arange(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-0.5 * (x / sigma.clamp(min=0.05)) ** 2)
    k = k / k.sum()
    c, r = image.shape[1], _BLUR_RADIUS
    image = torch.nn.functional.conv2d(torch.nn.functional.pad(image, (r, r, 0, 0), mode="replicate"),
                                       k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(image, (0, 0, r, r), mode="replicate"),
                                      k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _render(texture: torch.Tensor, frame: _Frame, s: int, sigma: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """The frame's crop as the forward model predicts it (observed values off the mesh)."""
    sub = torch.nn.functional.grid_sample(texture, frame.grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)
    hit = frame.hit
    hh, ww = sub.shape[-2:]
    d = torch.nn.functional.interpolate(disp[None], size=(hh, ww), mode="bicubic", align_corners=True)[0]
    ys = torch.linspace(-1 + 1 / hh, 1 - 1 / hh, hh, device=sub.device)
    xs = torch.linspace(-1 + 1 / ww, 1 - 1 / ww, ww, device=sub.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    shifted = torch.stack([gx + d[0] * 2 * s / ww, gy + d[1] * 2 * s / hh], -1)[None]  # d: pixels of the view
    sub = torch.nn.functional.grid_sample(sub, shifted, mode="bilinear", padding_mode="border", align_corners=False)
    hit = torch.nn.functional.grid_sample(hit, shifted, mode="nearest", padding_mode="zeros", align_corners=False)
    colour = torch.nn.functional.avg_pool2d(sub * hit, s)
    cover = torch.nn.functional.avg_pool2d(hit, s)
    full = torch.where(cover > 0.999, colour / cover.clamp(min=1e-6), frame.observed)
    return _gaussian(full, sigma)


def _loss(pred: torch.Tensor, frame: _Frame) -> torch.Tensor:
    d = (pred - frame.observed)[:, :, frame.valid]
    return torch.sqrt(d * d + _CHARBONNIER**2).mean()


def fit_texture(texture: np.ndarray, mesh: Mesh, cameras: Sequence[Camera], images: torch.Tensor,
                valid: torch.Tensor, steps: int, rasterizer: str = "auto", progress: Progress = no_progress,
                seed: int = 0) -> FitResult:
    """Refine `texture` (T, T, C) on `mesh`'s UVs against `images` (N, H, W, C) at `valid` (N, H, W).
    If the fit ends with a larger loss than it started (it diverged), the input texture is returned
    and the report says so."""
    start = time.perf_counter()
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    size = texture.shape[0]
    crops = [c for c in _crops(valid) if c is not None]
    s = supersample_factor(size, max(valid.shape[1:]), sum((y1 - y0) * (x1 - x0) for _, y0, y1, x0, x1 in crops))
    progress(0.0, f"texture fit: rendering {len(crops)} views at {s}x{s} subsamples")
    frames = _frames(mesh, cameras, images, valid, crops, s, rasterizer, device)
    report: dict = {"steps": steps, "supersample": s, "frames": len(frames)}
    if not frames:
        report["skipped"] = "no valid pixels"
        return FitResult(texture, report)
    base = torch.as_tensor(texture, dtype=torch.float32).permute(2, 0, 1)[None].to(device)
    coarse = 2 if size >= 2 * max(valid.shape[1:]) else 1  # texels per pixel, whatever the memory allowed s
    delta = torch.zeros((1, base.shape[1], max(size // coarse, 1), max(size // coarse, 1)), device=device,
                        requires_grad=True)
    report["correction_size"] = delta.shape[-1]

    def corrected() -> torch.Tensor:
        up = delta if coarse == 1 else torch.nn.functional.interpolate(delta, size=base.shape[-2:], mode="bilinear",
                                                                        align_corners=False)
        return (base + up).clamp(0, 1)

    n = len(cameras)
    log_sigma = torch.full((n,), math.log(_BLUR_START), device=device, requires_grad=True)
    disp = torch.zeros((n, 2, _WARP_GRID, _WARP_GRID), device=device, requires_grad=True)
    opt = torch.optim.Adam([{"params": [delta], "lr": _LR_TEXTURE}, {"params": [log_sigma], "lr": _LR_BLUR},
                            {"params": [disp], "lr": _LR_WARP}])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: _LR_END + (1 - _LR_END) * 0.5 * (1 + math.cos(math.pi * i / max(steps, 1))))
    gen = torch.Generator().manual_seed(seed)

    def total_loss() -> float:
        with torch.no_grad():
            tex = corrected()
            return float(np.mean([_loss(_render(tex, f, s, log_sigma[f.index].exp(), disp[f.index]), f).item()
                                  for f in frames]))

    before = total_loss()
    for step in range(steps):
        order = torch.randperm(len(frames), generator=gen)[:_FRAMES_PER_STEP].tolist()
        tex = corrected()
        loss = torch.stack([_loss(_render(tex, frames[j], s, log_sigma[frames[j].index].exp(),
                                          disp[frames[j].index]), frames[j]) for j in order]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress((step + 1) / steps, "texture fit")
    after = total_loss()
    blur = log_sigma.detach().exp()[[f.index for f in frames]].cpu().numpy()
    shift = disp.detach().abs().amax((1, 2, 3))[[f.index for f in frames]].cpu().numpy()
    report.update({"loss_before": round(before, 5), "loss_after": round(after, 5),
                   "blur_px": [round(float(blur.min()), 3), round(float(np.median(blur)), 3), round(float(blur.max()), 3)],
                   "max_residual_shift_px": round(float(shift.max()), 3),
                   "seconds": round(time.perf_counter() - start, 3)})
    if not after < before:
        report["kept_input"] = "the fit did not lower the views' loss"
        return FitResult(texture, report)
    with torch.no_grad():
        return FitResult(corrected()[0].permute(1, 2, 0).cpu().numpy().astype(np.float32), report)
