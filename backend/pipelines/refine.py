"""Refine (TIRE): keep what the source view shows of an asset, repaint what it never saw, from photos of the subject.

Track -> inpaint -> resplat/rebake. The asset is normalized (box centred, largest side 1) and
rendered from an orbit around the source view (a horizontal and a vertical orbit of `frames` views
each, sharing frame 0 = the source); each frame's pixels are tracked back to the source and to
the frames finished before it (`tracker`: exact depth-tested reprojection through the rendered
geometry, or DIS optical flow chained along the orbit, or CoTracker3 when its weights are
installed); the frames are painted outward in stages (anchors 20, 90, 180 degrees); with
`consistency` mv-sd the painted frames are then drawn into agreement with each other and the source
(Stable Diffusion img2img over grids of views, seen pixels held; backend/models/mv_consistency.py);
and the refined frames become the asset again:
  textured mesh (GLB/glTF/OBJ)  rebaked onto its own UV map (the bake's MRF view selection, the source
                                view locked where it sees the surface); texels the source view sees keep
                                the input texture exactly. Result: OUT.glb, the input glTF as it was
                                (nodes, skins, animations untouched) with the new base-colour texture.
  3DGS PLY                      refit from the refined frames starting from the input Gaussians (no
                                densification); Gaussians the source view sees keep their input
                                parameters. Result: OUT.ply.
  animated asset                a skinned / morph-target glTF, or a folder (or .zip) of per-frame meshes
                                of one topology: see refine_animated.py (texture refined once from every
                                animation frame; OUT.glb, or OUT.ply + a per-frame PLY sequence).

Subject images (1-8 photos of the subject): the weight-free path uses the first to find the source
view (`source_view` "auto": the orbit view whose render looks most like it); sd-inpaint trains a
subject LoRA on all of them (`train_lora`) and paints with it.

Inputs (service roles; upload each file under its role's form field):
  asset        the asset: .glb/.gltf/.obj textured mesh, 3DGS .ply, animated .glb, or a .zip of per-frame meshes
  subject      the first subject photo (PNG/JPG)
  subject_1 .. subject_7   more subject photos (optional)
  cameras      optional transforms.json: its first frame's camera_matrix is the source view (the asset
               file's frame), overriding `source_view`
The CLI: python -m backend refine ASSET --subject IMG [IMG ...] --out OUT(.glb|.ply)
    [--source-view auto|N|transforms.json] [--inpainter opencv|sd-inpaint] [--anchors 20,90,180]
    [--strength 0.3] [--frames 61] [--size 512] [--train-lora/--no-train-lora] [--tracker geometry|flow|cotracker]
    [--consistency none|mv-sd] [--texture-size N] [--voxel-res N] [--uv-map NAME]  (the last three: params.bake)
Side results in OUT_files/ (or the --out folder): report.json, frames.png (input renders, unseen
masks and refined frames of a few views), texture.png (meshes), frames/NNN.ply + frames.json (4D Gaussians).
This module is the dispatcher (inputs, CLI, run); below it: refine_mesh / refine_gaussians / refine_animated
per asset kind, refine_frames (cameras, renders, inpainter) and refine_tracking, refine_types (Params).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ..errors import InputError
from ..progress import Progress
from . import output_paths
from .refine_types import CONSISTENCY, Params

NAME = "refine"
MAX_SUBJECTS = 8
SUBJECT_ROLES = ["subject"] + [f"subject_{i}" for i in range(1, MAX_SUBJECTS)]
INPUTS = {"asset": "the asset: textured GLB/glTF/OBJ, 3DGS PLY, animated glTF, or a .zip of per-frame meshes",
          "subject": "a photo of the subject (PNG/JPG)"}
OPTIONAL_INPUTS = {**{role: "another photo of the subject" for role in SUBJECT_ROLES[1:]},
                   "cameras": "transforms.json whose first frame is the source view (in the asset file's frame)"}
MIN_SUBJECT_SIDE = 8


class _Subjects(argparse.Action):
    """--subject IMG [IMG ...] -> the roles subject, subject_1, ..."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        if len(values) > MAX_SUBJECTS:
            parser.error(f"at most {MAX_SUBJECTS} subject images")
        for role, value in zip(SUBJECT_ROLES, values):
            setattr(namespace, role, value)


class _SourceView(argparse.Action):
    """--source-view auto|N|transforms.json: a .json file is the `cameras` input."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        setattr(namespace, "cameras" if str(values).lower().endswith(".json") else "source_view", values)


def _anchor_list(text: str) -> list[float]:
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"anchors are comma-separated degrees (20,90,180), not {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("asset", help=INPUTS["asset"])
    parser.add_argument("--subject", nargs="+", action=_Subjects, required=True, metavar="IMG",
                        help=f"1-{MAX_SUBJECTS} photos of the subject")
    parser.add_argument("--out", required=True, help="OUT.glb / OUT.ply (side results in OUT_files/) or a folder")
    parser.add_argument("--source-view", action=_SourceView, metavar="auto|N|transforms.json",
                        help="the view the asset is right from (default auto: the view most like the first photo)")
    parser.add_argument("--inpainter", choices=["opencv", "sd-inpaint"], help="default opencv (weight-free)")
    parser.add_argument("--opencv-method", dest="opencv_method", choices=["telea", "shiftmap"],
                        help="opencv inpainter: telea (diffusion from the border, default) or shiftmap (patches copied in)")
    parser.add_argument("--anchors", type=_anchor_list, help="stage limits in degrees (default 20,90,180)")
    parser.add_argument("--tracker", choices=["geometry", "flow", "cotracker"], help="default geometry")
    parser.add_argument("--train-lora", dest="train_lora", action=argparse.BooleanOptionalAction, default=None,
                        help="sd-inpaint: train the subject LoRA (cached per subject; default on)")
    parser.add_argument("--consistency", choices=list(CONSISTENCY),
                        help="before the rebake/refit: none (default, the refit alone) or mv-sd (Stable Diffusion "
                             "img2img over grids of the refined views; needs weights)")
    # flags of the nested rebake options: dest "bake.NAME" fills params.bake (backend/cli.py)
    parser.add_argument("--texture-size", dest="bake.texture_size", type=int,
                        help="largest side the rebake bakes at (default 2048; the result keeps the input texture's size)")
    parser.add_argument("--voxel-res", dest="bake.voxel_res", type=int, help="rebake surface voxels (default 128)")
    parser.add_argument("--uv-map", dest="bake.uv_map", help="the UV map the texture lives on (default: the first)")
    defaults = Params()
    for name, kind, text in (("strength", float, "sd-inpaint denoising strength"), ("frames", int, "views per orbit"),
                             ("size", int, "frame size in pixels"), ("lora-steps", int, "LoRA training steps"),
                             ("model", str, "sd-inpaint model"), ("prompt", str, "inpainting prompt"),
                             ("dilate", int, "unseen-mask dilation in pixels"),
                             ("iterations", int, "Gaussian refit iterations"),
                             ("consistency-model", str, "mv-sd model"),
                             ("consistency-strength", float, "mv-sd img2img strength"),
                             ("time-frames", int, "animation frames sampled (animated assets)"),
                             ("seed", int, "random seed"), ("device", str, "auto, cpu or cuda")):
        attr = name.replace("-", "_")
        parser.add_argument(f"--{name}", dest=attr, type=kind, default=None,
                            help=f"{text} (default {getattr(defaults, attr)!r})")


# ----------------------------------------------------------------------------- inputs

def subject_paths(inputs: dict[str, Path]) -> list[Path]:
    """The subject photos in role order; InputError when there is none or one is unusable."""
    paths = [Path(inputs[role]) for role in SUBJECT_ROLES if inputs.get(role) is not None]
    if not paths:
        raise InputError("refine needs at least one subject image (--subject IMG, service role 'subject')")
    import numpy as np

    from ..assets.images import read_image

    for path in paths:
        if not path.is_file() or path.stat().st_size == 0:
            raise InputError(f"{path.name}: the subject image is empty or missing")
        image = read_image(path)
        if min(image.shape[:2]) < MIN_SUBJECT_SIDE:
            raise InputError(f"{path.name}: the subject image is {image.shape[1]}x{image.shape[0]} pixels; "
                             f"it needs at least {MIN_SUBJECT_SIDE} on each side")
        if image.shape[2] == 4 and float(image[..., 3].max()) <= 0.0:
            raise InputError(f"{path.name}: the subject image is fully transparent")
        if float(np.ptp(image[..., :3].reshape(-1, 3), axis=0).max()) == 0.0:
            raise InputError(f"{path.name}: the subject image is one flat colour; it shows no subject")
    return paths


def asset_kind(path: Path) -> str:
    """"mesh", "gaussians" or "animated" (a folder/.zip of per-frame meshes, or an animated glTF)."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zip":
        return "animated"
    if not path.is_file():
        raise InputError(f"{path}: no such asset file")
    if suffix == ".ply":
        with open(path, "rb") as f:
            header = f.read(4096).split(b"end_header")[0]
        return "gaussians" if b"f_dc_0" in header else "mesh"
    if suffix in (".glb", ".gltf"):
        from .refine_animated import is_animated_gltf

        return "animated" if is_animated_gltf(path) else "mesh"
    if suffix == ".obj":
        return "mesh"
    raise InputError(f"{path.name}: unsupported asset {suffix!r}; give a textured GLB/glTF/OBJ, a 3DGS PLY, "
                     "an animated glTF, or a .zip of per-frame meshes")


def check_models(params: Params) -> None:
    """Fail before any work when the chosen inpainter or tracker cannot run (every missing model named at once)."""
    from ..errors import MissingWeightsError
    from ..models.inpaint import require_inpainter

    checks = [lambda: require_inpainter(params.inpainter, params.model)]
    if params.consistency != "none":
        from ..models.mv_consistency import require_weights

        checks.append(lambda: require_weights(params.consistency_model))
    if params.tracker == "cotracker":
        from .refine_tracking import cotracker_module

        checks.append(lambda: cotracker_module().require_weights())
    problems = []
    for check in checks:
        try:
            check()
        except MissingWeightsError as exc:
            problems.append(str(exc))
    if problems:
        raise MissingWeightsError(" ".join(problems))


# ----------------------------------------------------------------------------- run

def _outputs(out: Path, kind: str, asset: Path) -> tuple[Path, Path]:
    suffixes = (".ply",) if kind == "gaussians" else (".glb", ".ply") if kind == "animated" else (".glb",)
    if out.suffix.lower() in (".glb", ".gltf", ".ply", ".obj") and out.suffix.lower() not in suffixes:
        raise InputError(f"--out {out.name}: a {kind} asset refines into {' or '.join(suffixes)}")
    main, side = output_paths(out, suffixes, "refined.ply" if kind == "gaussians" else "refined.glb")
    if main.suffix.lower() not in suffixes:
        raise InputError(f"--out {main.name}: a {kind} asset refines into {' or '.join(suffixes)}")
    if main.resolve() == asset.resolve():
        raise InputError(f"--out {main} would overwrite the asset")
    return main, side


def run(inputs: dict[str, Path], params: Params, out_dir: Path, progress: Progress) -> dict[str, Path]:
    inputs = {k: Path(v) for k, v in inputs.items() if v is not None}
    if "asset" not in inputs:
        raise InputError("refine needs the asset to refine (a textured mesh, 3DGS PLY or animated asset)")
    subjects = subject_paths(inputs)
    kind = asset_kind(inputs["asset"])
    main, side = _outputs(Path(out_dir), kind, inputs["asset"])
    check_models(params)
    side.mkdir(parents=True, exist_ok=True)
    main.parent.mkdir(parents=True, exist_ok=True)
    if kind == "mesh":
        from .refine_mesh import refine_mesh

        results, report = refine_mesh(inputs, subjects, params, main, side, progress)
    elif kind == "gaussians":
        from .refine_gaussians import refine_gaussians

        results, report = refine_gaussians(inputs, subjects, params, main, side, progress)
    else:
        from .refine_animated import refine_animated

        results, report = refine_animated(inputs, subjects, params, main, side, progress)
    report_path = side / "report.json"
    report_path.write_text(json.dumps({"params": asdict(params), "asset": kind, **report}, indent=2, default=str) + "\n")
    progress(1.0, "done")
    return {**results, "report": report_path}
