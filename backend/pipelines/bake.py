"""Bake a view set (posed images) onto the mesh's own UV map: textured GLB, texture PNG, report.

TextureOptimizer on images the artist already has: the mesh's UVs, vertex order, triangles and
node transforms are kept (a UV map is made with xatlas only when the mesh has none).
Inputs: `mesh` (GLB/glTF/OBJ/PLY) and `views`, a view-set folder with transforms.json or a .zip
of one (as the service uploads it). Results: OUT.glb (or OUT/baked.glb), and beside it in
OUT_files/ (or OUT/): texture.png and report.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bake.params import METHODS, BakeParams
from ..errors import InputError
from ..progress import Progress
from . import add_views_frame_argument, output_paths
from .baked_glb import load_bake_target, uv_map_name, write_baked_glb

NAME = "bake"
INPUTS = {"mesh": "the mesh to texture (GLB/glTF/OBJ/PLY), with its UV map",
          "views": "the view set: a folder with transforms.json and images, or a .zip of it"}
OPTIONAL_INPUTS: dict[str, str] = {}

Params = BakeParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help=INPUTS["mesh"])
    parser.add_argument("views", help=INPUTS["views"])
    parser.add_argument("--out", required=True, help="OUT.glb (side results in OUT_files/) or a folder")
    parser.add_argument("--method", choices=METHODS, help="view selection (default mrf; optimize = average, then the texture fit)")
    parser.add_argument("--texture-size", dest="texture_size", type=int, help="texture side in texels (default 2048)")
    parser.add_argument("--voxel-res", dest="voxel_res", type=int, help="surface voxels across the mesh (default 256)")
    parser.add_argument("--uv-map", dest="uv_map", help="UV map to bake onto: TEXCOORD_n or n (default: the first)")
    parser.add_argument("--top-k", dest="top_k", type=int, help="views kept per voxel (default 30)")
    parser.add_argument("--detail-weight", dest="detail_weight", type=float,
                        help="mrf/greedy: cost of a frame's blur relative to the sharpest frame (default 0.5; 0 = Ink3D's unary)")
    parser.add_argument("--consistency-weight", dest="consistency_weight", type=float,
                        help="mrf/greedy: cost of a view's disagreement with the other views' colour of a voxel "
                             "(default 0: off; see bench/RESULTS.md)")
    parser.add_argument("--resolution-weight", dest="resolution_weight", type=float,
                        help="mrf/greedy: cost of a view that samples a patch more coarsely than its closest view "
                             "(default 1; 0 = Ink3D's unary)")
    parser.add_argument("--soft-selection", dest="soft_selection", type=float,
                        help="mrf/greedy: blend into each texel the views whose unary cost is within about this of "
                             "its label's (default 0.1; 0 = the label's view alone)")
    parser.add_argument("--sharpen", type=float,
                        help="unsharp-mask amount of the views colours are read from (default 1; 0 = off)")
    parser.add_argument("--fit-steps", dest="fit_steps", type=int,
                        help="mrf/greedy/optimize: steps of the texture fit that makes renders of the texture match the "
                             "views through each one's pixel footprint, blur and residual warp (default 300; 0 = off)")
    parser.add_argument("--align-passes", dest="align_passes", type=int,
                        help="view alignment rounds: estimate, flow, warp (default 2)")
    parser.add_argument("--mrf-iterations", dest="mrf_iterations", type=int,
                        help="alpha-expansion cycles (default 1; -1 = until convergence)")
    parser.add_argument("--lock-reference", dest="lock_reference", action="store_true", default=None,
                        help="voxels seen within --lock-angle of the reference view keep that view")
    parser.add_argument("--reference-view", dest="reference_view", type=int, help="reference frame index (default 0)")
    parser.add_argument("--no-seam-levelling", dest="seam_levelling", action="store_false", default=None,
                        help="skip the global seam colour levelling")
    parser.add_argument("--no-seam-blend", dest="seam_blend", action="store_false", default=None,
                        help="skip feathering colours across view seams (one voxel each side) after levelling")
    parser.add_argument("--no-align", dest="align", action="store_false", default=None,
                        help="skip aligning each view (optical flow + colour gain/offset) to the surface before selection")
    parser.add_argument("--rasterizer", choices=["auto", "moderngl", "torch", "nvdiffrast"], help="G-buffer rasterizer")
    add_views_frame_argument(parser)
    parser.add_argument("--allow-outside-paths", action="store_true",
                        help="follow paths in transforms.json that lead outside the view set's folder (absolute,"
                             " '..', symlinks); refused by default and always refused by the service")


def views_in_mesh_frame(mesh, views, views_frame: str, rasterizer: str = "auto"):  # type: ignore[no-untyped-def]
    """The view set with its cameras in the mesh's frame, and the FrameChoice that says how."""
    from dataclasses import replace

    from ..render.views_frame import resolve_views_frame

    if views.images is None:
        raise InputError("the view set has no images to bake")
    cameras, frame = resolve_views_frame(mesh, views.cameras, views.images, views.masks, views_frame, rasterizer)
    return replace(views, cameras=cameras), frame


def run(inputs: dict[str, Path], params: BakeParams, out_dir: Path, progress: Progress) -> dict[str, Path]:
    from ..assets.images import write_png
    from ..assets.viewset import read_viewset_input
    from ..bake.baker import bake

    mesh_path, views_path = Path(inputs["mesh"]), Path(inputs["views"])
    glb_path, side = output_paths(out_dir, ".glb", "baked.glb")
    if glb_path.resolve() == mesh_path.resolve():
        raise InputError(f"{glb_path}: the output would overwrite the input mesh")
    progress(0.0, "loading mesh")
    target = load_bake_target(mesh_path, params.uv_map)
    mesh = target.mesh
    progress(0.01, "reading views")
    views = read_viewset_input(views_path, glb_path.parent)  # a zip is unpacked beside the result
    progress(0.02, "checking the cameras' frame")
    views, frame = views_in_mesh_frame(mesh, views, params.views_frame, params.rasterizer)
    progress(0.04, frame.summary())
    from ..progress import sub_progress
    from ..render.gbuffer import rasterizer_report

    result = bake(mesh, views, params, sub_progress(progress, 0.05, 0.95))
    progress(0.96, "writing GLB")
    side.mkdir(parents=True, exist_ok=True)
    write_baked_glb(target, result, glb_path)
    texture_path = write_png(side / "texture.png", result.texture)
    report = {"views_frame": frame.report(), **result.report}
    report["uv_map"] = uv_map_name(target, result)
    report["vertices_in"], report["vertices_out"] = mesh.num_vertices, result.mesh.num_vertices
    report.update(rasterizer_report(params.rasterizer))
    report_path = side / "report.json"
    report_path.write_text(json.dumps(report, indent=2, default=str))
    progress(1.0, "done")
    return {"glb": glb_path, "texture": texture_path, "report": report_path}
