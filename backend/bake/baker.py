"""bake(mesh, views, params, progress) -> BakeResult: TextureOptimizer onto the mesh's own UVs.

Stages: texels of the UV layout -> surface voxels -> per-view depth and visibility -> view
alignment (align.py) and, beside it in a thread, view selection per voxel (mrf | greedy; it reads
no image; unary: confidence, frame detail, per-voxel resolution) -> colour per texel at its exact
projection in the chosen view, read after an unsharp mask and blended with the views about as
good there (soft selection; `average` and `optimize`: all views) -> seam levelling -> fill of
unseen surface -> gutter -> texture fit (fit.py: the texture, each frame's blur and residual warp
fitted so renders match the aligned views; mrf, greedy, optimize; `average` is the plain baseline).
Works in whatever frame the mesh and the cameras share (no normalization needed).
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..assets.surface_voxels import VoxelGraph, bfs_fill, build_voxels
from ..errors import InputError
from ..progress import Progress, no_progress, sub_progress
from . import selection
from .colour import blend_views, sharpen, texel_average, texel_colours
from .fill import gutter_fill
from .params import DEFAULT_FIT_STEPS, BakeParams
from .seams import blend_strips, level_offsets, seam_differences
from .uv_atlas import make_uv_map
from .uv_raster import Texels, texel_samples
from .visibility import ViewDepth, camera_tensors, rasterize_views, valid_pixels

if TYPE_CHECKING:
    from ..assets.viewset import ViewSet

_TEXEL_CHUNK = 1 << 20
_BLEND_REACH = 10.0  # soft selection: voxels' views costing more than this x soft_selection over the label's are not read
_BLEND_VIEWS = 8  # soft selection: views blended per voxel at most, besides the label's


@dataclass
class BakeResult:
    texture: np.ndarray  # (T, T, 3) float32 in [0, 1], row 0 = top (v = 1)
    mesh: Mesh  # the mesh the texture is on: the input, or the input with an xatlas UV map
    vmapping: np.ndarray | None  # xatlas: new vertex -> input vertex; None when the input's UVs were used
    report: dict = field(default_factory=dict)
    fill_kind: np.ndarray | None = None  # (T, T) int8 per texel: surface_fill.SEEN, SYMMETRY, SYNTHESIS, LEFT (BFS); -1 none

    @property
    def uvs(self) -> np.ndarray:
        return self.mesh.uvs  # type: ignore[return-value]


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._t, 3)
        self._t = now


def check_views(views: "ViewSet") -> None:
    """The view set a bake can use: images present, one camera per image of the camera's size."""
    if views.images is None:
        raise InputError("the view set has no images to bake")
    n, h, w = views.images.shape[:3]
    if len(views.cameras) != n:
        raise InputError(f"the view set has {len(views.cameras)} cameras for {n} images")
    for i, cam in enumerate(views.cameras):
        if (cam.width, cam.height) != (w, h):
            name = views.names[i] if views.names else f"frame {i}"
            raise InputError(f"{name}: image is {w}x{h} but its camera is {cam.width}x{cam.height}")
    if views.masks is not None and tuple(views.masks.shape) != (n, h, w):
        raise InputError(f"the view set's masks are {tuple(views.masks.shape)}, expected {(n, h, w)}")


def _frame_name(views: "ViewSet", i: int) -> str:
    return f"{views.names[i]} (frame {i})" if views.names and i < len(views.names) else f"frame {i}"


def bake(mesh: Mesh, views: "ViewSet", params: BakeParams | None = None,
         progress: Progress = no_progress) -> BakeResult:
    params = params or BakeParams()
    timer = _Timer()
    check_views(views)
    if params.lock_reference and not 0 <= params.reference_view < len(views.cameras):
        raise InputError(f"reference_view {params.reference_view} is not a frame of the view set")
    vmapping = None
    if mesh.uvs is None:
        progress(0.0, "making a UV map (xatlas)")
        atlas = make_uv_map(mesh, params.texture_size)
        mesh, vmapping = atlas.mesh, atlas.vmapping
        timer.lap("uv_map")
    size = params.texture_size
    texels = texel_samples(mesh, size)
    if len(texels) == 0:
        raise InputError("the UV map covers no texel of the texture (UVs outside [0, 1] or all charts degenerate)")
    timer.lap("uv_raster")
    progress(0.02, "voxelizing surface")
    graph, texel_voxel = build_voxels(mesh, texels.position, texels.normal, params.voxel_res)
    timer.lap("voxels")

    extent = float((mesh.positions.max(0) - mesh.positions.min(0)).max())
    tolerance = params.depth_tolerance * extent
    depth, uv_maps = rasterize_views(mesh, views.cameras, params.rasterizer, sub_progress(progress, 0.03, 0.25),
                                     uv=params.align)
    masks = None if views.masks is None else torch.as_tensor(np.asarray(views.masks, dtype=bool))
    valid = valid_pixels(depth, masks, params.edge_margin, jump=4 * tolerance)
    for i in range(len(views.cameras)):
        if not bool((depth[i] > 0).any()):
            raise InputError(f"{_frame_name(views, i)}: the camera sees none of the mesh (check its pose)")
    origin = (mesh.positions.min(0).astype(np.float64) + mesh.positions.max(0)) / 2
    w2c, intr, eye = camera_tensors(views.cameras, origin)
    vd = ViewDepth(w2c, intr, eye, depth, valid, tolerance, origin)
    images = torch.as_tensor(np.asarray(views.images, dtype=np.float32))
    timer.lap("depth")

    report: dict = {"method": params.method, "texture_size": size, "voxel_res": params.voxel_res,
                    "voxels": len(graph), "view_count": len(views.cameras), "covered_texels": len(texels),
                    "coverage": len(texels) / size**2, "new_uv_map": vmapping is not None}
    conf, vcolour = selection.voxel_observations(graph, vd, images, sub_progress(progress, 0.25, 0.33))
    candidates = selection.top_k(conf, params.top_k)
    if not bool((candidates[:, 0] >= 0).any()):
        raise InputError("no view sees any of the mesh's surface (all depth tests failed): "
                         "check that the cameras and the mesh share one coordinate frame")
    timer.lap("visibility")
    # mrf / greedy labels read no image: they are chosen in a thread while the views are aligned
    pool = labels_job = None
    view_cost = site_cost = None
    if params.method in ("mrf", "greedy"):
        if params.detail_weight > 0:
            detail = selection.frame_detail(images, valid)
            view_cost = selection.detail_costs(detail, params.detail_weight)
            report["frame_detail"] = [None if not np.isfinite(d) else round(float(d), 4) for d in detail]
            timer.lap("frame_detail")
        if params.consistency_weight > 0:
            site_cost = params.consistency_weight * selection.consistency_costs(graph, vd, images, conf,
                                                                                candidates).numpy()
            report["consistency_cost_mean"] = round(float(site_cost[candidates.numpy() >= 0].mean()), 4)
            timer.lap("consistency")
        if params.resolution_weight > 0:
            res_cost = params.resolution_weight * selection.resolution_costs(graph, vd, candidates).numpy()
            site_cost = res_cost if site_cost is None else site_cost + res_cost
            timer.lap("resolution")
        pool = ThreadPoolExecutor(1, thread_name_prefix="orbitex-view-selection")
        labels_job = pool.submit(selection.select_labels, graph, conf, vcolour, candidates, view_cost, params,
                                 site_cost)
    try:
        if params.align:
            images = _align(images, uv_maps, texels, texel_voxel, candidates, vd, params, report,  # type: ignore[arg-type]
                            sub_progress(progress, 0.33, 0.45))
            timer.lap("align")
        labels = None
        if labels_job is not None:
            progress(0.45, "selecting views")
            labels, info = labels_job.result()
            report.update(info)
            timer.lap("view_selection")  # what the selection added after the alignment
        if params.sharpen > 0:
            report["sharpen"] = params.sharpen
        if labels is not None and params.soft_selection > 0:
            report["soft_selection"] = params.soft_selection
        extra = None if labels is None else torch.as_tensor(
            selection.candidate_extra_costs(candidates, view_cost, site_cost), dtype=torch.float32)
        colour, seen, chosen = _sample(graph, texels, texel_voxel, vd, sharpen(images, params.sharpen), candidates,
                                       labels, extra, conf, vcolour, params, report, timer,
                                       sub_progress(progress, 0.45, 0.75))
    finally:
        if pool is not None:  # on an error or a cancel, do not wait for a running alpha-expansion
            pool.shutdown(wait=False, cancel_futures=True)
    if not seen.any():
        raise InputError("no view sees any of the mesh's surface (all depth tests failed): "
                         "check that the cameras and the mesh share one coordinate frame")
    progress(0.75, "filling unseen surface")
    colour, kind, report["fill"] = _fill(mesh, views, graph, texels, texel_voxel, colour, seen, params)
    texture = np.zeros((size, size, colour.shape[1]), dtype=np.float32)
    texture[texels.rows, texels.cols] = colour
    covered = np.zeros((size, size), dtype=bool)
    covered[texels.rows, texels.cols] = True
    texture = np.clip(gutter_fill(texture, covered), 0.0, 1.0)
    fill_kind = np.full((size, size), -1, dtype=np.int8)
    fill_kind[texels.rows, texels.cols] = kind
    timer.lap("fill")
    fit_steps = DEFAULT_FIT_STEPS if params.fit_steps is None else params.fit_steps
    if fit_steps > 0 and params.method != "average" and not params.lock_reference:
        from .fit import fit_texture

        fit = fit_texture(texture, mesh, views.cameras, images, vd.valid, fit_steps, params.rasterizer,
                          sub_progress(progress, 0.78, 0.99))
        texture, report["fit"] = fit.texture, fit.report
        timer.lap("fit")
    progress(1.0, "baked")

    names = list(views.names) if views.names else [f"frame {i}" for i in range(len(views.cameras))]
    hist = np.bincount(chosen[chosen >= 0], minlength=len(names)) if chosen is not None else None
    report.update({
        "seen_fraction": float(seen.mean()),
        "unseen_fraction": float(1.0 - seen.mean()),
        "label_histogram": {names[i]: int(c) for i, c in enumerate(hist) if c} if hist is not None else None,
        "seconds": timer.seconds,
        "seconds_total": round(sum(timer.seconds.values()), 3),
    })
    return BakeResult(texture, mesh, vmapping, report, fill_kind)


def _align(images: torch.Tensor, uv_maps: torch.Tensor, texels: Texels, texel_voxel: np.ndarray,
           candidates: torch.Tensor, vd: ViewDepth, params: BakeParams, report: dict, progress: Progress) -> torch.Tensor:
    from .align import align_views

    aligned, alignment = align_views(images, uv_maps, texels, texel_voxel, candidates, vd, params.align_passes,
                                     params.align_max_shift, progress=progress)
    shift = np.linalg.norm(alignment.shift, axis=1)
    report["alignment"] = {"mean_shift_px": round(float(shift.mean()), 3), "max_shift_px": round(float(shift.max()), 3),
                           "gain_range": [round(float(alignment.gain.min()), 4), round(float(alignment.gain.max()), 4)],
                           "offset_range": [round(float(alignment.offset.min()), 4),
                                            round(float(alignment.offset.max()), 4)],
                           "shift_px": np.round(alignment.shift, 3).tolist()}
    return aligned


def _sample(graph: VoxelGraph, texels: Texels, texel_voxel: np.ndarray, vd: ViewDepth, images: torch.Tensor,
            candidates: torch.Tensor, labels: np.ndarray | None, extra: torch.Tensor | None, conf: torch.Tensor,
            vcolour: torch.Tensor, params: BakeParams, report: dict, timer: _Timer,
            progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Colour per texel: its voxel's label first, then its other top-K views (`average`: all of
    them; with `soft_selection`, the views about as good as the label's blended in). `extra` (V, K),
    given with `labels`: the selection's unary terms past Ink3D's per voxel and candidate; `conf`
    (V, N) the voxels'."""
    if labels is not None:
        assert extra is not None
        ranked = torch.cat([torch.as_tensor(labels)[:, None], candidates], 1)
        same = ranked[:, 1:] == ranked[:, :1]
        ranked[:, 1:][same] = -1
        # the label's own terms where it is a candidate (0 where it is not)
        extra = torch.cat([(extra * same).sum(1, keepdim=True), extra], 1)
    else:
        ranked = candidates
    blend = blend_extra = None
    if extra is not None and params.soft_selection > 0:
        # views to blend: those within the weight's reach of the label's cost at the voxel (slack for
        # the texels' own angles), so the per-texel pass skips the many that would weigh nothing
        # (and at most the _BLEND_VIEWS cheapest of them: a dense orbit has dozens of near-equal frames)
        vcost = torch.where(ranked >= 0, 2 - conf.gather(1, ranked.clamp(min=0)) + extra, torch.full((), math.inf))
        reach = vcost[:, :1] + _BLEND_REACH * params.soft_selection
        vcost[:, 0] = math.inf  # the label is the chosen view already
        near, cols = torch.topk(vcost, min(_BLEND_VIEWS, vcost.shape[1]), dim=1, largest=False)
        blend = torch.where(near <= reach, ranked.gather(1, cols), -1)
        blend_extra = extra.gather(1, cols)
        if params.lock_reference:  # voxels locked to the reference view keep it alone
            blend[selection.locked_voxels(conf, params.reference_view, params.lock_angle)] = -1
    points = vd.local(texels.position)
    normals = torch.as_tensor(texels.normal, dtype=torch.float32)
    tv = torch.as_tensor(texel_voxel)
    colour = torch.zeros((len(texels), images.shape[-1]), dtype=torch.float32)
    chosen = torch.full((len(texels),), -1, dtype=torch.long)
    seen = torch.zeros(len(texels), dtype=torch.bool)
    chunks = list(range(0, len(texels), _TEXEL_CHUNK))
    for n, start in enumerate(chunks):
        sl = slice(start, start + _TEXEL_CHUNK)
        cand = ranked[tv[sl]]
        if labels is None:
            colour[sl], weight = texel_average(points[sl], normals[sl], cand, images, vd)
            seen[sl] = weight > 0
        else:
            ex = extra[tv[sl]]  # type: ignore[index]
            colour[sl], chosen[sl], cost = texel_colours(points[sl], normals[sl], cand, images, vd, ex)
            if blend is not None:
                colour[sl] = blend_views(points[sl], normals[sl], blend[tv[sl]], blend_extra[tv[sl]], images, vd,  # type: ignore[index]
                                         colour[sl], chosen[sl], cost, params.soft_selection)
            seen[sl] = chosen[sl] >= 0
        progress(0.8 * (n + 1) / len(chunks), "sampling colours")
    timer.lap("colour")
    colour_np, seen_np, chosen_np = colour.numpy(), seen.numpy(), chosen.numpy()
    if labels is not None:
        report["texels_off_voxel_label"] = int(((chosen_np != labels[texel_voxel]) & seen_np).sum())
    if (params.seam_levelling or params.seam_blend) and labels is not None:
        offsets = np.zeros((len(graph), colour_np.shape[1]), dtype=np.float32)
        if params.seam_levelling:
            progress(0.85, "levelling seams")
            seam_edges, seam_diff = seam_differences(graph, labels, images, vd, points, normals, texel_voxel,
                                                     voxel_colour=vcolour.numpy())
            offsets = level_offsets(graph, labels, seam_edges, seam_diff)
            same = seen_np & (chosen_np == labels[texel_voxel])
            colour_np[same] += offsets[texel_voxel[same]]
            report["seam_edges"] = int(len(seam_edges))
            report["seam_mean_difference"] = float(np.abs(seam_diff).mean()) if len(seam_diff) else 0.0
            timer.lap("seam_levelling")
        if params.seam_blend:
            progress(0.95, "blending seam strips")
            report["seam_blended_texels"] = blend_strips(graph, labels, offsets, colour_np, chosen_np, texel_voxel,
                                                         texels.position, images, vd, points, normals)
            timer.lap("seam_blend")
    return colour_np, seen_np, (chosen_np if labels is not None else None)


def _fill(mesh: Mesh, views: "ViewSet", graph: VoxelGraph, texels: Texels, texel_voxel: np.ndarray,
          colour: np.ndarray, seen: np.ndarray, params: BakeParams) -> tuple[np.ndarray, np.ndarray, dict]:
    """Unseen texels: symmetry transfer and exemplar synthesis (`fill="synthesis"`, surface_fill.py),
    then what is still open takes its voxel's mean filled colour, or the BFS-nearest filled voxel's."""
    from ..assets.surface_fill import LEFT, SEEN, fill_unseen

    filled = seen
    kind = np.where(seen, SEEN, LEFT).astype(np.int8)
    report: dict = {"method": params.fill}
    if params.fill == "synthesis" and not seen.all():
        from ..assets.mesh_symmetry import detect_symmetry

        start = time.perf_counter()
        symmetry = detect_symmetry(mesh)
        up = np.sum([cam.c2w[:3, 1] for cam in views.cameras], axis=0)
        colour, kind, report = fill_unseen(texels.position, texels.normal, colour, seen, symmetry, up)
        report["seconds"] = round(time.perf_counter() - start, 3)
        report["method"] = params.fill
        filled = kind != LEFT
    else:
        report.update({"symmetry_fraction": 0.0, "synthesis_fraction": 0.0, "bfs_fraction": float((~seen).mean())})
    n = len(graph)
    count = np.bincount(texel_voxel[filled], minlength=n).astype(np.float64)
    sums = np.stack([np.bincount(texel_voxel[filled], colour[filled, c], minlength=n) for c in range(colour.shape[1])], 1)
    vox_seen = count > 0
    vox_colour = sums / np.maximum(count, 1)[:, None]
    bfs, _ = bfs_fill(graph, vox_seen, vox_colour)
    out = colour.copy()
    out[~filled] = bfs[texel_voxel[~filled]]
    return out.astype(np.float32), kind, report
