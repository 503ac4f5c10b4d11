"""Refine a textured mesh: render, track and paint the frames (refine_frames.py), rebake onto its own UVs.

The rebake is the bake pipeline's TextureOptimizer (MRF view selection) over the refined frames
with the source view locked where it sees the surface; texels whose surface point the source view
sees (depth test and facing, as the tracker decides) then take the input texture's own values,
so what the source showed is not resampled at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..progress import Progress, sub_progress
from .refine_frames import (frames_sheet, make_consistent, make_inpainter, refine_cameras, refine_frames, render_mesh,
                            source_c2w)
from .refine_types import Params, Rendered

if TYPE_CHECKING:
    from ..assets.mesh import Mesh
    from ..assets.cameras import Camera
    from ..track.geometry import ViewGeometry


def load_textured(path: Path, uv_map: str | None = None):  # type: ignore[no-untyped-def]
    """(bake target, its base-colour texture): the texture must live on the bake target's UV map."""
    from ..assets.material import load_base_color
    from .baked_glb import load_bake_target

    target = load_bake_target(path, uv_map)
    texture = load_base_color(path)
    if texture is None or target.mesh.uvs is None:
        raise InputError(f"{path.name}: the mesh has no base-colour texture on a UV map, so there is nothing to refine; "
                         "texture it first (python -m backend texture MESH IMAGE, or bake)")
    return target, texture


def source_seen_texels(mesh: "Mesh", size: int, source: "ViewGeometry", tolerance: float) -> np.ndarray:
    """(size, size) bool: texels whose surface point the source view sees."""
    from ..bake.uv_raster import texel_samples
    from ..track.geometry import reproject

    texels = texel_samples(mesh, size)
    points = texels.position.reshape(-1, 1, 3)
    corr = reproject(points, np.ones((len(texels), 1), dtype=bool), source, tolerance, texels.normal.reshape(-1, 1, 3))
    seen = np.zeros((size, size), dtype=bool)
    seen[texels.rows[corr.seen[:, 0]], texels.cols[corr.seen[:, 0]]] = True
    return seen


def rebake(mesh: "Mesh", texture: np.ndarray, rendered: Rendered, images: np.ndarray, params: Params,
           tolerance: float, progress: Progress) -> tuple[np.ndarray, dict]:
    """The refined frames baked onto the mesh's UVs (MRF, source locked), with the source-seen texels
    of the input texture kept exactly. Returns the texture at the input's size and the bake report."""
    import cv2

    from ..assets.viewset import ViewSet
    from ..bake.baker import bake

    h, w = texture.shape[:2]
    bake_params = params.rebake(max(h, w))
    side = bake_params.texture_size
    views = ViewSet(list(rendered.cameras), images, rendered.masks, [f"frame_{i:03d}" for i in range(len(images))])
    result = bake(mesh, views, bake_params, progress)
    seen = source_seen_texels(mesh, side, rendered.views[0], tolerance)
    baked = result.texture
    if (side, side) != (h, w):
        baked = cv2.resize(baked, (w, h), interpolation=cv2.INTER_AREA if side > max(h, w) else cv2.INTER_LINEAR)
        seen = cv2.resize(seen.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    out = np.where(seen[..., None], texture, baked).astype(np.float32)
    report = {k: result.report[k] for k in ("voxels", "coverage", "seen_fraction", "seconds_total") if k in result.report}
    report["source_seen_texels"] = round(float(seen.mean()), 4)
    return out, report


def refine_mesh(inputs: dict[str, Path], subjects: list[Path], params: Params, main: Path, side: Path,
                progress: Progress) -> tuple[dict[str, Path], dict]:
    from ..assets.images import write_png
    from ..assets.mesh import normalize
    from ..bake.baker import BakeResult
    from ..track.geometry import DEPTH_TOLERANCE
    from .baked_glb import uv_map_name, write_baked_glb

    progress(0.0, "loading the asset")
    target, texture = load_textured(inputs["asset"], params.bake.uv_map)
    mesh, norm = normalize(target.mesh)

    def render_at(cams: list["Camera"]) -> tuple[np.ndarray, np.ndarray]:
        images, masks, _ = render_mesh(mesh, texture, cams)
        return images, masks

    c2w, source_info = source_c2w(inputs, params, norm, render_at, subjects)
    cameras, orbits = refine_cameras(c2w, params.frames, params.size)
    progress(0.03, "rendering views")
    images, masks, views = render_mesh(mesh, texture, cameras)
    if not masks[0].any():
        raise InputError("the source view sees nothing of the asset: check the source view's camera")
    rendered = Rendered(cameras, images, masks, views, orbits)
    inpainter = make_inpainter(params, subjects, sub_progress(progress, 0.1, 0.25))
    refined = refine_frames(rendered, params, inpainter, DEPTH_TOLERANCE, sub_progress(progress, 0.25, 0.5))
    consistency = make_consistent(refined, params, sub_progress(progress, 0.5, 0.6))
    new_texture, bake_report = rebake(mesh, texture, rendered, refined.images, params, DEPTH_TOLERANCE,
                                      sub_progress(progress, 0.6, 0.95))
    progress(0.96, "writing GLB")
    write_baked_glb(target, BakeResult(new_texture, target.mesh, None), main)
    texture_path = write_png(side / "texture.png", new_texture)
    sheet = frames_sheet(rendered, refined, side / "frames.png")
    report = {"source": source_info, "inpainter": inpainter.name, "tracker": params.tracker,
              "uv_map": uv_map_name(target, BakeResult(new_texture, target.mesh, None)),
              "bake": bake_report, "progressive": refined.report, "consistency": consistency}
    return {"glb": main, "texture": texture_path, "frames": sheet}, report
