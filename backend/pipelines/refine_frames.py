"""Refine's frames: the orbit cameras around the source view, renders of a mesh or of Gaussians
from them, the source view (given, or the view most like the first photo), the inpainter, the
progressive painting of the frames (refine_progressive.py) and the sheet that shows them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import InputError
from ..progress import Progress
from .refine_types import BACKGROUND, Params, Rendered

if TYPE_CHECKING:
    import numpy as np

    from ..assets.cameras import Camera

AUTO_CANDIDATES = 12  # azimuths tried by source_view "auto"


def refine_cameras(source_c2w: "np.ndarray", frames: int, size: int) -> tuple[list["Camera"], list[list[int]]]:
    """Horizontal and vertical orbits around the source view (frame 0 of both, stored once)."""
    from ..assets.cameras import orbit

    horizontal = orbit("horizontal", frames, size, frame0_c2w=source_c2w)
    vertical = orbit("vertical", frames, size, frame0_c2w=source_c2w)
    cams = horizontal + vertical[1:]
    return cams, [list(range(frames)), [0] + list(range(frames, 2 * frames - 1))]


def render_mesh(mesh, texture: "np.ndarray", cameras: Sequence["Camera"]) -> tuple["np.ndarray", "np.ndarray", list]:  # type: ignore[no-untyped-def]
    """Images (N, H, W, 3) of the textured mesh (nearest-texel-free bilinear lookups, unlit, white
    background), masks and ViewGeometry per camera."""
    import numpy as np

    from ..assets.material import downsample_texture, sample_texture
    from ..render.gbuffer import render_gbuffers
    from ..track.geometry import mesh_view_geometry

    tex = downsample_texture(texture, 4 * max(cameras[0].width, cameras[0].height))
    images, masks, views = [], [], []
    for start in range(0, len(cameras), 8):
        chunk = list(cameras[start:start + 8])
        gb = render_gbuffers(mesh, chunk)
        for v in mesh_view_geometry(gb, chunk):
            rgb = np.empty(v.mask.shape + (3,), np.float32)
            rgb[:] = BACKGROUND
            uv = (mesh.uvs[mesh.faces[v.tri_id[v.mask]]] * v.bary[v.mask][:, :, None]).sum(1)
            rgb[v.mask] = sample_texture(tex, uv)
            images.append(rgb)
            masks.append(v.mask)
            views.append(v)
    return np.stack(images), np.stack(masks), views


def render_gaussians(gaussians, cameras: Sequence["Camera"], device: str) -> tuple["np.ndarray", "np.ndarray", "np.ndarray", list]:  # type: ignore[no-untyped-def]
    """Images, coverage masks (alpha > 0.5), alphas and ViewGeometry (depth / alpha) of Gaussians."""
    import numpy as np
    import torch

    from ..splats.fit import pick_device, pick_rasterizer, render_fn
    from ..track.geometry import depth_view_geometry, estimate_normals

    dev = pick_device(device)
    render = render_fn(pick_rasterizer("auto", dev))
    g = gaussians.to(dev)
    bg = torch.tensor(BACKGROUND, dtype=torch.float32, device=dev)
    images, masks, alphas, views = [], [], [], []
    with torch.no_grad():
        for cam in cameras:
            out = render(g, cam, bg)
            alpha = out.alpha.cpu().numpy()
            mask = alpha > 0.5
            depth = out.depth.cpu().numpy() / np.maximum(alpha, 1e-6)
            view = depth_view_geometry(cam, depth, mask)
            views.append(estimate_normals(view))
            images.append(out.color.cpu().numpy())
            masks.append(mask)
            alphas.append(alpha)
    return np.stack(images).astype(np.float32), np.stack(masks), np.stack(alphas).astype(np.float32), views


def choose_source_view(subject: Path, render_fn_: Any, frames: int) -> tuple["np.ndarray", dict]:
    """The camera-to-world of the horizontal-orbit view (AUTO_CANDIDATES azimuths from the front)
    whose render looks most like the subject photo: both cropped to their subject, 32 px, mean
    colour difference over the union of the two silhouettes."""
    import numpy as np

    from ..assets.cameras import orbit
    from .reconstruct import load_subject_image

    photo, alpha = load_subject_image(subject, 128)
    target = _crop(photo, alpha > 0.5)
    cams = orbit("horizontal", AUTO_CANDIDATES, 96)
    images, masks = render_fn_(cams)
    scores = []
    for img, mask in zip(images, masks):
        if not mask.any():
            scores.append(float("inf"))
            continue
        scores.append(float(np.abs(_crop(img, mask) - target).mean()))
    best = int(np.argmin(scores))
    return cams[best].c2w, {"source_view": "auto", "azimuth_deg": round(360.0 * best / AUTO_CANDIDATES, 2),
                            "scores": [round(s, 4) for s in scores]}


def _crop(image: "np.ndarray", mask: "np.ndarray", side: int = 32) -> "np.ndarray":
    import cv2
    import numpy as np

    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[..., None], image, 1.0)[y0:y1, x0:x1].astype(np.float32)
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)


def source_c2w(inputs: dict[str, Path], params: Params, norm, render_fn_: Any,  # type: ignore[no-untyped-def]
               subjects: list[Path]) -> tuple["np.ndarray", dict]:
    """The source camera (normalized frame) from `cameras`, `source_view` N, or "auto"."""
    import numpy as np

    from ..assets.cameras import orbit

    if inputs.get("cameras") is not None:
        path = Path(inputs["cameras"])
        try:
            meta = json.loads(path.read_text())
            c2w = np.asarray(meta["frames"][0]["transform_matrix"], dtype=np.float64)
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            raise InputError(f"{path.name}: not a transforms.json with a frame holding a transform_matrix") from None
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0, 0, 0, 1]])
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise InputError(f"{path.name}: the first frame's transform_matrix is not a finite 4x4 matrix")
        c2w = c2w.copy()
        rot = c2w[:3, :3]
        c2w[:3, :3] = rot / np.cbrt(np.linalg.det(rot))
        c2w[:3, 3] = (c2w[:3, 3] - norm.center) * norm.scale
        return c2w, {"source_view": path.name}
    if params.source_view != "auto":
        index = int(params.source_view)
        return orbit("horizontal", params.frames, 8)[index].c2w, {"source_view": index}
    return choose_source_view(subjects[0], render_fn_, params.frames)


def make_inpainter(params: Params, subjects: list[Path], progress: Progress):  # type: ignore[no-untyped-def]
    """The chosen inpainter; sd-inpaint with the subject LoRA (trained once per subject and settings,
    cached in sd_inpaint.lora_cache_dir()) unless `train_lora` is off."""
    from ..models.inpaint import load_inpainter

    if params.inpainter == "opencv":
        return load_inpainter("opencv", method=params.opencv_method)
    lora = None
    if params.train_lora:
        import importlib

        from ..assets.images import read_image

        sd = importlib.import_module("backend.models.sd_inpaint")
        images = [_on_background(read_image(p)) for p in subjects]
        lora = sd.train_subject_lora(images, params.model, sd.lora_cache_dir(), steps=params.lora_steps, seed=params.seed,
                                     device=params.device, progress=lambda f: progress(f, "training the subject LoRA"))
    return load_inpainter("sd-inpaint", model=params.model, strength=params.strength, lora=lora, seed=params.seed,
                          device=params.device)


def _on_background(image: "np.ndarray") -> "np.ndarray":
    """RGB of a photo, a transparent one composited over the render background (as the frames are)."""
    import numpy as np

    if image.shape[2] < 4:
        return image[..., :3]
    alpha = image[..., 3:4]
    return (image[..., :3] * alpha + (1.0 - alpha) * np.asarray(BACKGROUND, dtype=np.float32)).astype(np.float32)


def refine_frames(rendered: Rendered, params: Params, inpainter, tolerance: float, progress: Progress):  # type: ignore[no-untyped-def]
    from .refine_progressive import progressive_inpaint
    from .refine_tracking import make_correspond

    correspond = make_correspond(params, rendered, tolerance)
    return progressive_inpaint(rendered.images, rendered.masks, rendered.cameras, 0, params.anchors, correspond,
                               inpainter, params.prompt, params.dilate, BACKGROUND, progress=progress)


def make_consistency(params: Params):  # type: ignore[no-untyped-def]
    """The consistency stage run on the painted frames before the rebake/refit: None for "none"."""
    from ..models.mv_consistency import load_consistency

    if params.consistency == "none":
        return None
    return load_consistency(params.consistency, model=params.consistency_model, strength=params.consistency_strength,
                            seed=params.seed, device=params.device)


def make_consistent(refined, params: Params, progress: Progress) -> dict:  # type: ignore[no-untyped-def]
    """`refined` (refine_progressive.Refined) with its frames through the consistency stage, in
    place: only the pixels no finished frame saw (its unseen masks) may change. Returns the report."""
    stage = make_consistency(params)
    if stage is None:
        return {"stage": "none"}
    progress(0.0, "multi-view consistency")
    refined.images = stage.refine(refined.images, refined.unseen, 0, params.prompt,
                                  progress=lambda f: progress(f, "multi-view consistency"))
    return {"stage": stage.name, "model": params.consistency_model, "strength": params.consistency_strength,
            "grids": len(stage.calls)}


def frames_sheet(rendered: Rendered, refined, path: Path, count: int = 8) -> Path:  # type: ignore[no-untyped-def]
    """Rows: input renders, unseen masks (red over the render), refined frames, for `count`
    frames of the horizontal orbit."""
    import numpy as np

    from ..assets.images import write_png

    cycle = rendered.orbits[0]
    pick = [cycle[int(i)] for i in np.linspace(0, len(cycle), count, endpoint=False)]
    before = np.concatenate([rendered.images[i] for i in pick], 1)
    tint = np.concatenate([np.where(refined.unseen[i][..., None], [1.0, 0.1, 0.1], rendered.images[i] * 0.6 + 0.4)
                           for i in pick], 1)
    after = np.concatenate([refined.images[i] for i in pick], 1)
    return write_png(path, np.concatenate([before, tint, after], 0).astype(np.float32))
