"""Reconstruct from a view set: 3D Gaussians fitted to posed images the user already has.

The view set (folder or .zip, transforms.json) is read, its cameras brought into the mesh's frame
when a mesh is given (`views_frame`: auto decides by silhouette IoU / photo-consistency and refuses
cameras that do not see the mesh, backend/render/views_frame.py), and every frame resized to
`size` along its longer side. The scene is normalized the way a mesh is (the mesh's box; without a
mesh, the point nearest every camera's optical axis, scaled so the cameras sit at the orbit rig's
radius), Gaussians start on the mesh's surface (texture colours when it has one) or in a ball, and
are fitted with every eighth view held out (early stop, reported). The PLY is in the cameras'
frame: the mesh file's coordinates, or as the transforms.json has them (converted from Blender's
world when `views_frame` is blender).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..progress import Progress, sub_progress

if TYPE_CHECKING:
    from ..assets.cameras import Camera
    from .reconstruct_fit import Params

HELDOUT_EVERY = 8


def from_views(views_path: Path, mesh_path: Path | None, params: "Params", ply: Path, side: Path,
               progress: Progress) -> dict:
    import torch

    from ..assets.viewset import read_viewset_input
    from ..render.views_frame import cameras_in_frame, resolve_views_frame
    from ..splats.fit import FitViews, fit, psnr, render_views
    from ..splats.ply import write_ply
    from .reconstruct_fit import BACKGROUND, fit_config, initial_gaussians, load_mesh_and_texture, write_preview

    progress(0.0, "reading views")
    views = read_viewset_input(views_path, side)
    if views.images is None:
        raise InputError("the view set has no images to fit Gaussians to")
    if len(views) < 2:
        raise InputError("a view set needs at least two views to fit Gaussians to")
    frame_report: dict
    if mesh_path is not None:
        from ..assets.material import load_textured_mesh

        raw, _ = load_textured_mesh(mesh_path)
        progress(0.01, "checking the cameras' frame")
        cameras, choice = resolve_views_frame(raw, views.cameras, views.images, views.masks, params.views_frame)
        frame_report = choice.report()
        mesh, norm, texture = load_mesh_and_texture(mesh_path)
        centre, scale = np.asarray(norm.center, dtype=np.float64), float(norm.scale)
    else:
        # nothing to check the frame against: as asked, and auto keeps the cameras as written
        frame = "gltf" if params.views_frame == "auto" else params.views_frame
        cameras = cameras_in_frame(views.cameras, frame)
        frame_report = {"views_frame": frame, "requested": params.views_frame,
                        "decided_by": "nothing: no mesh to check the cameras against (as written unless asked)"}
        mesh = texture = None
        centre, scale = _camera_centre(cameras)
    cams, images, masks = _fit_views(cameras, views.images, views.masks, centre, scale, params.size)
    held = np.arange(len(cams)) % HELDOUT_EVERY == HELDOUT_EVERY // 2 if len(cams) >= HELDOUT_EVERY else None
    train = np.ones(len(cams), bool) if held is None else ~held

    def subset(pick: np.ndarray) -> FitViews:
        idx = np.nonzero(pick)[0]
        return FitViews([cams[i] for i in idx], torch.from_numpy(images[idx]),
                        None if masks is None else torch.from_numpy(masks[idx]), BACKGROUND)

    init = initial_gaussians(mesh, texture, params)
    training = subset(train)
    heldout = None if held is None else subset(held)
    result = fit(init, training, fit_config(params, params.iterations), sub_progress(progress, 0.05, 0.97),
                 heldout=heldout)
    rendered, _ = render_views(result.gaussians, training.cameras, BACKGROUND, device=params.device)
    report = {"source": "view_set", "view_count": len(cams), "view_size": [cams[0].width, cams[0].height],
              "gaussians": len(result.gaussians), "iterations": result.iterations,
              "stopped_early": result.stopped_early, "fit_seconds": round(result.seconds, 2),
              "training_psnr_db": round(psnr(rendered, training.images), 2), "losses": result.losses,
              "rasterizer": result.rasterizer, "densification": result.edits, "views_frame": frame_report,
              "frame": "the mesh file's coordinates" if mesh is not None else "the view set's cameras' frame"}
    if heldout is not None:
        held_rendered, _ = render_views(result.gaussians, heldout.cameras, BACKGROUND, device=params.device)
        report.update(heldout_psnr_db=round(psnr(held_rendered, heldout.images), 2), heldout_views=len(heldout.cameras))
    write_ply(result.gaussians.transformed(1.0 / scale, centre), ply)
    write_preview(rendered, side / "preview.png")
    progress(1.0, "done")
    return report


def _camera_centre(cameras: list["Camera"]) -> tuple[np.ndarray, float]:
    """The point nearest every camera's optical axis (least squares) and the scale that puts the
    cameras at the orbit rig's radius from it (the median distance)."""
    from ..assets.cameras import ORBIT_RADIUS

    a, b = np.zeros((3, 3)), np.zeros(3)
    for cam in cameras:
        d = cam.forward
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ cam.position
    if np.linalg.matrix_rank(a) < 3:  # parallel axes (a flat sweep): the cameras' centroid, pushed forward
        centre = np.mean([c.position + c.forward for c in cameras], axis=0)
    else:
        centre = np.linalg.solve(a, b)
    distance = float(np.median([np.linalg.norm(c.position - centre) for c in cameras]))
    if not distance > 0:
        raise InputError("the view set's cameras all sit at one point: no scene to reconstruct")
    return centre, ORBIT_RADIUS / distance


def _fit_views(cameras: list["Camera"], images: np.ndarray, masks: np.ndarray | None, centre: np.ndarray,
               scale: float, size: int) -> tuple[list["Camera"], np.ndarray, np.ndarray | None]:
    """Cameras in the normalized frame at `size` along the longer side; images (masked ones over
    the fit's white background) and masks resized to them."""
    import cv2

    from ..assets.cameras import Camera
    from .reconstruct_fit import BACKGROUND

    w, h = cameras[0].width, cameras[0].height
    f = size / max(w, h)
    new = (max(1, round(w * f)), max(1, round(h * f)))
    out_cams = []
    for cam in cameras:
        c2w = np.array(cam.c2w, dtype=np.float64)
        c2w[:3, :3] /= np.linalg.norm(c2w[:3, :3], axis=0, keepdims=True)
        c2w[:3, 3] = (c2w[:3, 3] - centre) * scale
        out_cams.append(Camera(c2w, cam.fx, cam.fy, cam.cx, cam.cy, w, h).resized(*new))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    rgb = np.stack([cv2.resize(np.ascontiguousarray(i, dtype=np.float32), new, interpolation=interp) for i in images])
    if masks is None:
        return out_cams, rgb, None
    cover = np.stack([cv2.resize(m.astype(np.float32), new, interpolation=interp) for m in masks]).clip(0, 1)
    rgb = rgb * cover[..., None] + (1 - cover[..., None]) * np.asarray(BACKGROUND, np.float32)
    return out_cams, rgb.astype(np.float32), cover.astype(np.float32)
