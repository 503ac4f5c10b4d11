"""Refine 3D Gaussians: render, track and paint the frames (refine_frames.py), refit from the refined frames.

The Gaussians are normalized like a mesh (the box of their centres, 0.5-99.5 percentile, centred,
largest side 1), rendered with the project's splat rasterizer (depth / alpha gives the surface
the tracker reprojects through), and refit to the refined frames starting from the input's own
parameters, without densification so every Gaussian keeps its identity. Mask-aware: the refined
frames equal the input renders wherever a finished frame saw the surface, and the Gaussians the
source view sees (centre in front of, or within the depth tolerance of, the source's surface)
get their input parameters back after the fit, so the source view does not drift.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..progress import Progress, sub_progress
from .refine_frames import (frames_sheet, make_consistent, make_inpainter, refine_cameras, refine_frames,
                            render_gaussians, source_c2w)
from .refine_types import Params, Rendered

if TYPE_CHECKING:
    from ..assets.cameras import Camera
    from ..splats.model import Gaussians
    from ..track.geometry import ViewGeometry


def normalization(gaussians: "Gaussians"):  # type: ignore[no-untyped-def]
    from ..assets.mesh import Normalization

    means = gaussians.means.detach().cpu().numpy().astype(np.float64)
    lo, hi = np.percentile(means, 0.5, axis=0), np.percentile(means, 99.5, axis=0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise InputError("the Gaussians have zero extent")
    return Normalization(center=(lo + hi) / 2, scale=1.0 / extent)


def source_visible(gaussians: "Gaussians", source: "ViewGeometry", tolerance: float) -> np.ndarray:
    """(N,) bool: Gaussians whose centre projects onto the source's coverage no deeper than its
    surface there plus `tolerance`."""
    cam = source.camera
    pix, depth = cam.project(gaussians.means.detach().cpu().numpy().astype(np.float64))
    col, row = np.floor(pix[:, 0]).astype(np.int64), np.floor(pix[:, 1]).astype(np.int64)
    inside = (depth > 0) & (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height)
    out = np.zeros(len(depth), dtype=bool)
    idx = np.nonzero(inside)[0]
    r, c = row[idx], col[idx]
    out[idx] = source.mask[r, c] & (depth[idx] <= source.depth[r, c] + tolerance)
    return out


def refit(gaussians: "Gaussians", cameras: list["Camera"], images: np.ndarray, alphas: np.ndarray,
          keep: np.ndarray, params: Params, progress: Progress) -> tuple["Gaussians", dict]:
    import torch

    from ..splats.fit import FitConfig, FitViews, fit

    degree = int(round(np.sqrt(gaussians.sh.shape[1]))) - 1
    config = FitConfig(iterations=params.iterations, sh_degree=degree, sh_increase_every=max(params.iterations // 4, 1),
                       densify=False, device=params.device, seed=params.seed)
    views = FitViews(cameras, torch.from_numpy(images), torch.from_numpy(alphas), (1.0, 1.0, 1.0))
    result = fit(gaussians, views, config, progress, stage="refitting Gaussians")
    out = result.gaussians
    k = torch.from_numpy(keep)
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        getattr(out, name)[k] = getattr(gaussians, name).detach().to(getattr(out, name).dtype)[k]
    return out, {"iterations": result.iterations, "seconds": round(result.seconds, 2), "rasterizer": result.rasterizer,
                 "losses": result.losses, "kept_source_visible": int(keep.sum()), "gaussians": len(out)}


def refine_gaussians(inputs: dict[str, Path], subjects: list[Path], params: Params, main: Path, side: Path,
                     progress: Progress) -> tuple[dict[str, Path], dict]:
    from ..splats.ply import read_ply, write_ply
    from ..track.geometry import DEPTH_TOLERANCE

    progress(0.0, "loading the Gaussians")
    original = read_ply(inputs["asset"])
    norm = normalization(original)
    gaussians = original.transformed(norm.scale, -norm.center * norm.scale)

    def render_at(cams: list["Camera"]) -> tuple[np.ndarray, np.ndarray]:
        images, masks, _, _ = render_gaussians(gaussians, cams, params.device)
        return images, masks

    c2w, source_info = source_c2w(inputs, params, norm, render_at, subjects)
    cameras, orbits = refine_cameras(c2w, params.frames, params.size)
    progress(0.03, "rendering views")
    images, masks, alphas, views = render_gaussians(gaussians, cameras, params.device)
    if not masks[0].any():
        raise InputError("the source view sees nothing of the Gaussians: check the source view's camera")
    rendered = Rendered(cameras, images, masks, views, orbits)
    inpainter = make_inpainter(params, subjects, sub_progress(progress, 0.1, 0.2))
    refined = refine_frames(rendered, params, inpainter, DEPTH_TOLERANCE, sub_progress(progress, 0.2, 0.4))
    consistency = make_consistent(refined, params, sub_progress(progress, 0.4, 0.45))
    keep = source_visible(gaussians, views[0], DEPTH_TOLERANCE)
    fitted, fit_report = refit(gaussians, cameras, refined.images, alphas, keep, params, sub_progress(progress, 0.45, 0.97))
    progress(0.97, "writing PLY")
    write_ply(fitted.transformed(1.0 / norm.scale, norm.center), main)
    sheet = frames_sheet(rendered, refined, side / "frames.png")
    report = {"source": source_info, "inpainter": inpainter.name, "tracker": params.tracker, "refit": fit_report,
              "progressive": refined.report, "consistency": consistency}
    return {"gaussians": main, "frames": sheet}, report
